"""Typed checkpoint metadata; the stored config is read as untrusted input, through a whitelist.

`CheckpointMetadata.from_checkpoint` is the only place a checkpoint's `mobile_vla` entry is read.
From the stored config only the keys below are taken, each type- and range-checked; every
other key is dropped, and keys in `tokenizer` / `vlm` this loader does not know are refused (they
decide what is loaded). Paths in it never decide what is deleted, written or imported: the one
path used is the backbone folder, when the user gives no `--base-model-dir`, and that folder is
only read after `check_model_folder` (local, no `auto_map`). `plugin_entry` writes the same entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robovlms_mobile.checkpoint.format import FORMAT_VERSION, PLUGIN_KEY, CheckpointError, json_safe
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE, MAX_TEXT_LEN, validate_template
from robovlms_mobile.errors import clip
from robovlms_mobile.model.lora import LORA_TARGETS
from robovlms_mobile.task import ACTION_AXES, ACTION_DIM, MAX_INSTRUCTION_CHARS, MAX_SPEED, STEP_S, check_instruction
from robovlms_mobile.upstream import HEAD_TYPE, TRAINER_TYPE

BACKBONES = {"RoboKosMos": "kosmos", "RoboResNet": "resnet"}  # robovlm_name -> upstream's `model` key
MAX_WINDOW = MAX_CHUNK = 64
MAX_INSTRUCTIONS = 1024  # instructions recorded per checkpoint
MAX_SPEED_LIMIT = 10.0  # m/s: no ground robot of this kind; a larger stored scale is refused
SECTION_KEYS = {  # keys of these sections this loader reads; anything else in them is refused
    "tokenizer": {"type", "pretrained_model_name_or_path", "tokenizer_type", "max_text_len", "additional_special_tokens",
                  "use_local_files"},
    "vlm": {"type", "name", "pretrained_model_name_or_path"},
}
TRAIN_SETUP_FLAGS = {  # flag -> the value inference requires (None: either)
    "predict_action": True, "predict_forward": False, "predict_forward_hand": False, "predict_caption": False,
    "train_vision": None, "freeze_backbone": None, "freeze_resampler": None, "train_text_embedding": None,
    "gradient_checkpointing": None, "lora_enable": None,
}
_MISSING = object()


class _Stored:
    """Typed, range-checked reads from an untrusted nested dict; errors name the file and the key."""

    def __init__(self, data: Any, source: str, where: str = ""):
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: stored {where or 'metadata'} is {type(data).__name__}; expected an object")
        self.data, self.source, self.where = data, source, where

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, value: Any, expected: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: stored '{self._key(key)}' = {clip(value)}; expected {expected}")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise CheckpointError(f"{self.source}: stored metadata has no '{self._key(key)}'")
            return default
        return self.data[key]

    def section(self, key: str, default: Any = _MISSING) -> _Stored:
        return _Stored(self.get(key, default), self.source, self._key(key))

    def integer(self, key: str, lo: int, hi: int, default: Any = _MISSING) -> int:
        value = self.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(key, value, f"an integer in [{lo}, {hi}]")
        return value

    def number(self, key: str, lo: float, hi: float, default: Any = _MISSING, *, open_lo: bool = False) -> float:
        value = self.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (lo < value if open_lo else lo <= value) or value > hi:
            raise self.fail(key, value, f"a finite number in {'(' if open_lo else '['}{lo}, {hi}]")
        return float(value)

    def choice(self, key: str, allowed: tuple, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if isinstance(value, bool) or value not in allowed:
            raise self.fail(key, value, f"one of {list(allowed)}")
        return value

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def text(self, key: str, max_chars: int, default: Any = _MISSING) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or len(value) > max_chars:
            raise self.fail(key, value, f"a string of at most {max_chars} characters")
        return value

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(str(k) for k in self.data if k not in allowed)
        if unknown:
            raise CheckpointError(f"{self.source}: stored key '{self._key(unknown[0])}' is not one this loader reads "
                                  f"(allowed: {sorted(allowed)}); refusing the checkpoint")


def _inference_skeleton() -> dict[str, Any]:
    """Everything upstream's constructor reads that a checkpoint never decides."""
    return {
        "trainer_type": TRAINER_TYPE, "seq_len": 1, "use_hand_rgb": False, "use_vision_resampler": False,
        "fwd_head": None, "arm_gripper_loss_ratio": 0.0, "cap_loss_ratio": 0.0, "fwd_loss_ratio": 0.0,
        "model_load_path": None, "model_load_source": "torch", "resume": None, "batch_size": 1, "num_workers": 0,
        "learning_rate": 1e-4, "min_lr_scale": 1.0, "weight_decay": 0.0, "optimizer": "adamw", "scheduler": "constant",
        "trainer": {"max_steps": -1, "max_epochs": 1, "precision": "32"}, "train_dataset": {}, "val_dataset": {},
    }


def _train_setup(stored: _Stored) -> dict[str, Any]:
    out: dict[str, Any] = {"precision": "32"}
    for key, required in TRAIN_SETUP_FLAGS.items():
        value = stored.flag(key, required if required is not None else False)
        if required is not None and value != required:
            raise stored.fail(key, value, f"{str(required).lower()} (the plugin trains the action head only)")
        out[key] = value
    if out["lora_enable"]:
        out["lora_r"] = stored.integer("lora_r", 1, 1024)
        out["lora_alpha"] = stored.number("lora_alpha", 0.0, 1e4, open_lo=True)
        out["lora_dropout"] = stored.number("lora_dropout", 0.0, 0.99, 0.0)
        out["lora_bias"] = stored.choice("lora_bias", ("none", "all", "lora_only"), "none")
        out["lora_targets"] = stored.choice("lora_targets", LORA_TARGETS, LORA_TARGETS[0])
    if "train_decoder_layers" in stored.data:
        out["train_decoder_layers"] = stored.integer("train_decoder_layers", -1, 1024)
    return out


def _act_head(stored: _Stored, window: int, chunk: int) -> dict[str, Any]:
    stored.choice("type", (HEAD_TYPE,))
    stored.choice("history_type", ("post",), "post")  # streaming inference needs per-frame VLM features
    stored.choice("action_space", ("continuous",), "continuous")
    stored.choice("action_dim", (ACTION_DIM,), ACTION_DIM)
    return {
        "type": HEAD_TYPE, "action_dim": ACTION_DIM, "action_space": "continuous", "history_type": "post",
        "with_history": stored.flag("with_history", True),
        "hidden_size": stored.integer("hidden_size", 1, 8192, 1024),
        "num_layers": stored.integer("num_layers", 1, 16, 4),
        "policy_rnn_dropout_p": stored.number("policy_rnn_dropout_p", 0.0, 0.99, 0.0),
        "down_sample": stored.choice("down_sample", ("none", "pooling"), "none"),
        "latent": stored.integer("latent", 1, 64, 1),
        "huber_delta": stored.number("huber_delta", 0.0, 100.0, 1.0, open_lo=True),
        "sideways_weight": stored.number("sideways_weight", 0.0, 100.0, 1.0, open_lo=True),
        "committed_steps": stored.integer("committed_steps", 0, max(chunk - 1, 0), 0),
        "window_size": window, "fwd_pred_next_n": chunk,  # what upstream passes the head (the top-level values)
    }


def _cnn_backbone(stored: _Stored) -> dict[str, Any]:
    from robovlms_mobile.model.baseline.model import ARCHS

    out = {"arch": stored.choice("arch", tuple(ARCHS), "resnet18"), "hidden_size": stored.integer("hidden_size", 1, 4096, 256),
           "input_size": stored.integer("input_size", 16, 1024, 112), "fusion_layers": stored.integer("fusion_layers", 1, 16, 1),
           "heads": stored.integer("heads", 1, 64, 4)}
    if out["hidden_size"] % out["heads"]:
        raise stored.fail("hidden_size", out["hidden_size"], f"a multiple of cnn_backbone.heads ({out['heads']})")
    return out


def trusted_config(stored_config: Any, source: str, base_model_dir: str | Path | None) -> tuple[dict[str, Any], Path]:
    """(inference config built from whitelisted stored values, checked backbone folder)."""
    from robovlms_mobile.model.model_folder import TOKENIZER_TYPES, VLM_TYPES, check_model_folder

    stored = _Stored(stored_config, source, "config")
    trainer = stored.get("trainer_type", None)
    if trainer != TRAINER_TYPE:
        raise CheckpointError(f"{source}: stored trainer_type {clip(trainer)}; expected {TRAINER_TYPE!r} "
                              f"(a robovlms-mobile checkpoint)")
    name = stored.choice("robovlm_name", tuple(BACKBONES))
    stored.choice("model", (BACKBONES[name],), BACKBONES[name])
    window = stored.integer("window_size", 1, MAX_WINDOW)
    chunk = stored.integer("fwd_pred_next_n", 1, MAX_CHUNK)
    tok, vlm = stored.section("tokenizer"), stored.section("vlm")
    tok.only(SECTION_KEYS["tokenizer"])
    vlm.only(SECTION_KEYS["vlm"])
    tokens = tok.get("additional_special_tokens", None)
    if tokens not in (None, []):
        raise tok.fail("additional_special_tokens", tokens, "null (no extra tokens)")
    if base_model_dir is not None:
        folder = check_model_folder(base_model_dir)
    else:
        folder = check_model_folder(vlm.text("pretrained_model_name_or_path", 4096), origin=f"named by {source}; "
                                    f"pass --base-model-dir to choose it")
    path = str(folder.resolve())
    config = _inference_skeleton()
    config.update({
        "robovlm_name": name, "model": BACKBONES[name], "window_size": window, "fwd_pred_next_n": chunk,
        "image_size": stored.integer("image_size", 16, 1024, 224),
        "model_path": path, "model_config": str(Path(path) / "config.json"),
        "train_setup": _train_setup(stored.section("train_setup", {})),
        "act_head": _act_head(stored.section("act_head"), window, chunk),
        "tokenizer": {"type": tok.choice("type", TOKENIZER_TYPES), "pretrained_model_name_or_path": path,
                      "tokenizer_type": tok.choice("tokenizer_type", ("kosmos",), "kosmos"),
                      "max_text_len": tok.integer("max_text_len", 1, MAX_TEXT_LEN, MAX_TEXT_LEN),
                      "additional_special_tokens": None},
        "vlm": {"type": vlm.choice("type", VLM_TYPES), "name": vlm.choice("name", ("kosmos",), "kosmos"),
                "pretrained_model_name_or_path": path},
    })
    if name == "RoboResNet":
        config["cnn_backbone"] = _cnn_backbone(stored.section("cnn_backbone", {}))
    return config, folder


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint (or a training config) tells inference, typed and checked."""

    source: str  # the checkpoint file, or "<config>"
    format_version: int
    config: dict[str, Any]  # the config the module is built from (whitelisted for a checkpoint)
    max_speed: float  # m/s that the normalised output 1.0 stands for
    axes: tuple[str, ...]
    prompt_template: str
    window: int
    chunk: int
    image_size: int
    instructions: tuple[str, ...] | None = None  # seen in training, when the checkpoint records them
    trainable_parameters: int = 0
    model_dir: Path | None = field(default=None, compare=False)
    drive: dict[str, Any] | None = None  # what it was trained to drive: frame_size [H, W], worlds, step_s, train_data

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], path: str | Path, base_model_dir: str | Path | None) -> CheckpointMetadata:
        """Read and check the `mobile_vla` entry; the config is whitelisted and pointed at a checked folder."""
        source = str(path)
        if not isinstance(ckpt.get(PLUGIN_KEY), dict):
            raise CheckpointError(f"{source}: not a robovlms-mobile checkpoint (no '{PLUGIN_KEY}' entry)")
        info = _Stored(ckpt[PLUGIN_KEY], source, PLUGIN_KEY)
        version = info.get("format_version", None)
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise CheckpointError(f"{source}: checkpoint format {repr(version)[:40]}; this robovlms-mobile reads format "
                                  f"{FORMAT_VERSION}")
        config, folder = trusted_config(info.get("config"), source, base_model_dir)
        scale = info.section("action_scale")
        axes = scale.get("axes")
        if axes != list(ACTION_AXES):
            raise scale.fail("axes", axes, f"{list(ACTION_AXES)}")
        template = info.section("prompt").text("template", MAX_INSTRUCTION_CHARS)
        try:
            validate_template(template)
        except ValueError as exc:
            raise CheckpointError(f"{source}: stored '{PLUGIN_KEY}.prompt.template': {exc}") from None
        shape = info.section("shape", {})
        for key, value in (("window", config["window_size"]), ("chunk", config["fwd_pred_next_n"])):
            if key in shape.data and shape.get(key) != value:
                raise CheckpointError(f"{source}: stale checkpoint: recorded {key} {str(shape.get(key))[:20]} but its config "
                                      f"says {value}; expected them to agree")
        return cls(source=source, format_version=FORMAT_VERSION, config=config,
                   max_speed=scale.number("max_speed", 0.0, MAX_SPEED_LIMIT, open_lo=True), axes=tuple(ACTION_AXES),
                   prompt_template=template, window=config["window_size"], chunk=config["fwd_pred_next_n"],
                   image_size=config["image_size"], instructions=_instructions(info, source),
                   trainable_parameters=info.integer("trainable_parameters", 0, 2**62, 0), model_dir=folder,
                   drive=_drive(info))

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "<config>") -> CheckpointMetadata:
        """The same fields from a (trusted) training config: a module trained or built in this process."""
        data = config.get("train_dataset")
        data = data[0] if isinstance(data, list) else data or {}
        return cls(source=source, format_version=FORMAT_VERSION, config=config,
                   max_speed=float(data.get("max_speed", MAX_SPEED)), axes=tuple(ACTION_AXES),
                   prompt_template=data.get("prompt_template", DEFAULT_PROMPT_TEMPLATE),
                   window=int(config["window_size"]), chunk=int(config["fwd_pred_next_n"]),
                   image_size=int(config.get("image_size", 224)), drive=drive_of(config))

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (no config)."""
        return {"checkpoint": Path(self.source).name, "format_version": self.format_version, "max_speed": self.max_speed,
                "axes": list(self.axes), "prompt_template": self.prompt_template, "window": self.window,
                "chunk": self.chunk, "image_size": self.image_size,
                "instructions": list(self.instructions) if self.instructions is not None else None}


def _data_frame_size(data_dir: Any) -> list[int] | None:
    """[H, W] of the first episode file's frames in `data_dir`, or None."""
    import h5py

    try:
        first = next(iter(sorted(Path(str(data_dir)).glob("*.h5"))), None)
        if first is None:
            return None
        with h5py.File(first, "r") as f:
            shape = f["images"].shape
        return [int(shape[1]), int(shape[2])]
    except (OSError, KeyError, ValueError, IndexError):
        return None


def drive_of(config: dict[str, Any]) -> dict[str, Any]:
    """What a training config drives: the training frames' size, world distribution, control period, data folder."""
    data = config.get("train_dataset")
    data = data[0] if isinstance(data, list) else data or {}
    sim = config.get("sim_eval") or {}
    size = _data_frame_size(data.get("data_dir")) if data.get("data_dir") else None
    if size is None and isinstance(sim.get("frame_size"), list):
        size = [int(v) for v in sim["frame_size"]]
    return {"frame_size": size, "worlds": "iid", "step_s": STEP_S,
            "train_data": str(Path(str(data["data_dir"])).resolve()) if data.get("data_dir") else None}


def _drive(info: _Stored) -> dict[str, Any] | None:
    """The checked `drive` entry of a checkpoint (None for one written before it existed)."""
    if info.get("drive", None) is None:
        return None
    drive = info.section("drive")
    drive.only({"frame_size", "worlds", "step_s", "train_data"})
    size = drive.get("frame_size", None)
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in size)):
        raise drive.fail("frame_size", size, "[height, width], integers in [16, 4096], or null")
    data = drive.get("train_data", None)
    return {"frame_size": size, "worlds": drive.choice("worlds", ("iid", "ood"), "iid"),
            "step_s": drive.number("step_s", 0.0, 10.0, STEP_S, open_lo=True),
            "train_data": None if data is None else drive.text("train_data", 4096)}


def _instructions(info: _Stored, source: str) -> tuple[str, ...] | None:
    value = info.get("instructions", None)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_INSTRUCTIONS:
        raise info.fail("instructions", value, f"a list of at most {MAX_INSTRUCTIONS} strings")
    try:
        return tuple(check_instruction(v, where=f"{source}: stored '{PLUGIN_KEY}.instructions' entry") for v in value)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def plugin_entry(configs: dict[str, Any], trainable_parameters: int, instructions: list[str] | None) -> dict[str, Any]:
    """The `mobile_vla` entry `MobileVLATrainer` writes into every checkpoint."""
    meta = CheckpointMetadata.from_config(configs)
    entry = {
        "format_version": FORMAT_VERSION,
        "config": json_safe(configs),
        "action_scale": {"max_speed": meta.max_speed, "axes": list(ACTION_AXES)},
        "prompt": {"template": meta.prompt_template},
        "shape": {"window": meta.window, "chunk": meta.chunk},
        "trainable_parameters": int(trainable_parameters),
        "drive": meta.drive,
    }
    if instructions is not None:
        entry["instructions"] = sorted(set(instructions))[:MAX_INSTRUCTIONS]
    return entry
