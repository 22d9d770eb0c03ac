"""Load a plugin checkpoint for inference: weights_only tensors + the frozen backbone from a local folder.

The checkpoint is the untrusted artefact: it is read with `weights_only=True` (a pickled
payload is refused), and its stored config may not point the loader anywhere but a local
model folder. Upstream's model builder passes `trust_remote_code=True` and its tokenizer
builder deletes the tokenizer folder when the first load fails, so the folder is checked here
first: it must exist, hold `config.json`, load as a processor offline, and carry no `auto_map`
(custom code that `trust_remote_code` would run).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import torch

from robovlms_mobile.checkpoint import load_checkpoint, plugin_info
from robovlms_mobile.config import HEAD_TYPE, validate_config
from robovlms_mobile.data.episode import ACTION_AXES
from robovlms_mobile.data.prompt import validate_template

TRAINER_TYPE = "MobileVLATrainer"
CODE_BEARING_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


class BaseModelError(FileNotFoundError):
    """The frozen backbone folder is missing or unusable."""


def point_config_at(configs: dict[str, Any], base_model_dir: str | Path) -> dict[str, Any]:
    """A copy of `configs` whose four backbone paths name `base_model_dir`."""
    out = copy.deepcopy(configs)
    path = str(Path(base_model_dir).resolve())
    out["model_path"] = path
    out["model_config"] = str(Path(path) / "config.json")
    out["vlm"]["pretrained_model_name_or_path"] = path
    out["tokenizer"]["pretrained_model_name_or_path"] = path
    return out


def check_base_model_dir(path: str | Path) -> Path:
    """The folder exists, has config.json, no custom-code `auto_map`, and its processor loads offline."""
    from transformers import AutoProcessor

    path = Path(path)
    if not (path / "config.json").is_file():
        raise BaseModelError(f"base model folder {str(path)!r} has no config.json: pass the Kosmos-2 folder the "
                             f"checkpoint was trained on (--base-model-dir)")
    for name in CODE_BEARING_FILES:
        file = path / name
        if file.is_file():
            try:
                meta = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise BaseModelError(f"{file}: unreadable ({exc})") from None
            if isinstance(meta, dict) and "auto_map" in meta:
                raise BaseModelError(f"{file}: has 'auto_map' (custom model code); refusing to run code from a model folder")
    try:
        AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here must stop before upstream's rmtree fallback
        raise BaseModelError(f"base model folder {str(path)!r}: processor does not load ({type(exc).__name__}: {exc})") from None
    return path


def inference_config(info: dict[str, Any], base_model_dir: str | Path | None) -> dict[str, Any]:
    """The stored training config, checked and pointed at a verified local backbone folder."""
    configs = copy.deepcopy(info["config"])
    if configs.get("trainer_type") != TRAINER_TYPE:
        raise ValueError(f"checkpoint config has trainer_type {configs.get('trainer_type')!r}, expected {TRAINER_TYPE!r}")
    validate_config(configs)
    head = configs["act_head"]
    if head.get("type") != HEAD_TYPE or head.get("history_type", "post") != "post":
        raise ValueError(f"streaming inference needs act_head type {HEAD_TYPE!r} with history_type 'post', got "
                         f"{head.get('type')!r} / {head.get('history_type')!r}")
    folder = check_base_model_dir(base_model_dir if base_model_dir is not None else configs.get("model_path", ""))
    configs = point_config_at(configs, folder)
    configs["model_load_path"] = None  # upstream's from_checkpoint would torch.load it without weights_only
    configs["resume"] = None
    return configs


def load_for_inference(path: str | Path, base_model_dir: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """(MobileVLATrainer in eval mode on `device`, plugin metadata) from a plugin checkpoint."""
    from robovlms_mobile.registry import register
    from robovlms_mobile.trainer import MobileVLATrainer

    ckpt = load_checkpoint(path)
    info = plugin_info(ckpt, path)
    scale = info.get("action_scale", {})
    if list(scale.get("axes", [])) != list(ACTION_AXES) or not float(scale.get("max_speed", 0)) > 0:
        raise ValueError(f"{path}: action scale {scale!r} is not a positive max_speed over {list(ACTION_AXES)}")
    validate_template(info.get("prompt", {}).get("template", ""))
    configs = inference_config(info, base_model_dir)
    register()
    with contextlib.redirect_stdout(io.StringIO()):  # upstream prints every trainable parameter name
        module = MobileVLATrainer(configs)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    module.requires_grad_(False)
    module.eval().to(device)
    return module, info
