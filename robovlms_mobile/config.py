"""Experiment configs: upstream's JSON format (with `parent` inheritance), checked key by key.

Files are plain upstream RoboVLMs configs, so `main.py configs/mobile_vla_lora.json` reads them
unchanged. The sections the plugin owns (its dataset and action head, and the LoRA keys of
`train_setup`) are validated here, and every error names the offending key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from robovlms_mobile.data.prompt import validate_template

DATASET_TYPE = "MobileVLAH5Dataset"
HEAD_TYPE = "MobileVLALSTMDecoder"

DATASET_KEYS = {
    "type": str, "data_dir": (str, list), "split": (str, type(None)), "val_ratio": (int, float),
    "split_seed": int, "max_speed": (int, float), "prompt_template": str, "pattern": str, "model_name": str,
    "skip_invalid": bool, "split_file": (str, type(None)), "cache_dir": (str, type(None)),
    "mirror": (bool, int, float), "rgb_pad": int, "color_jitter": (int, float),  # data/augment.py
}
HEAD_KEYS = {
    "type": str, "action_dim": int, "hidden_size": int, "num_layers": int, "policy_rnn_dropout_p": (int, float),
    "down_sample": str, "latent": int, "fwd_pred_next_n": int, "window_size": int, "action_space": str,
    "with_history": bool, "history_type": str, "huber_delta": (int, float),
}
CNN_TYPE = "RoboResNet"
CNN_KEYS = {"arch": str, "hidden_size": int, "input_size": int, "fusion_layers": int, "heads": int}
LORA_KEYS = {"lora_enable": bool, "lora_r": int, "lora_alpha": (int, float), "lora_dropout": (int, float), "lora_bias": str}
REQUIRED_TOP = ("robovlm_name", "model", "window_size", "fwd_pred_next_n", "train_setup", "act_head", "vlm", "tokenizer", "trainer")


class ConfigError(ValueError):
    """A config value that is missing, unknown or of the wrong type; names the key."""


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into `base` (upstream main.py semantics)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(path: str | Path) -> dict[str, Any]:
    """Load a JSON config, merging its `parent` chain (resolved from the cwd, as upstream does, else beside the file)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    config: dict[str, Any] = {}
    parent = raw.get("parent")
    if parent:
        parent_path = Path(parent)
        if not parent_path.exists() and (path.parent / parent).exists():
            parent_path = path.parent / parent
        if not parent_path.exists():
            raise ConfigError(f"{path}: key 'parent': {parent!r} not found (from the cwd or beside the file)")
        deep_update(config, load_config(parent_path))
    return deep_update(config, raw)


def _check_section(section: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key, value in section.items():
        if key not in allowed:
            raise ConfigError(f"unknown key '{where}.{key}'; allowed: {sorted(allowed)}")
        if not isinstance(value, allowed[key]) or (isinstance(value, bool) and allowed[key] in (int, (int, float))):
            raise ConfigError(f"'{where}.{key}' = {value!r}: expected {_type_names(allowed[key])}")


def _type_names(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_cnn(configs: dict[str, Any]) -> None:
    from robovlms_mobile.baseline.model import ARCHS

    cnn = configs.get("cnn_backbone", {})
    if not isinstance(cnn, dict):
        raise ConfigError("'cnn_backbone' must be an object")
    _check_section(cnn, CNN_KEYS, "cnn_backbone")
    if cnn.get("arch", "resnet18") not in ARCHS:
        raise ConfigError(f"'cnn_backbone.arch' = {cnn['arch']!r}: expected one of {list(ARCHS)}")
    for key in ("hidden_size", "input_size", "fusion_layers", "heads"):
        if key in cnn and cnn[key] < 1:
            raise ConfigError(f"'cnn_backbone.{key}' = {cnn[key]}: expected a positive integer")
    if cnn.get("hidden_size", 256) % cnn.get("heads", 4):
        raise ConfigError("'cnn_backbone.hidden_size' must be divisible by 'cnn_backbone.heads'")
    if configs["train_setup"].get("lora_enable", False):
        raise ConfigError(f"'train_setup.lora_enable' must be false for {CNN_TYPE}: LoRA adapts Kosmos-2 only")


def validate_config(configs: dict[str, Any]) -> dict[str, Any]:
    """Check the plugin-owned parts of a full experiment config; returns it unchanged."""
    for key in REQUIRED_TOP:
        if key not in configs:
            raise ConfigError(f"missing required key '{key}'")
    for key in ("window_size", "fwd_pred_next_n"):
        if not isinstance(configs[key], int) or isinstance(configs[key], bool) or configs[key] < 1:
            raise ConfigError(f"'{key}' = {configs[key]!r}: expected a positive integer")
    head = configs["act_head"]
    if not isinstance(head, dict):
        raise ConfigError("'act_head' must be an object")
    if head.get("type") == HEAD_TYPE:
        _check_section(head, HEAD_KEYS, "act_head")
        if head.get("action_dim", 2) != 2:
            raise ConfigError(f"'act_head.action_dim' = {head['action_dim']}: {HEAD_TYPE} predicts [linear_x, linear_y], use 2")
        if head.get("action_space", "continuous") != "continuous":
            raise ConfigError("'act_head.action_space' must be 'continuous' for " + HEAD_TYPE)
    if configs["robovlm_name"] == CNN_TYPE:
        _check_cnn(configs)
    elif "cnn_backbone" in configs:
        raise ConfigError(f"'cnn_backbone' is only read when 'robovlm_name' is {CNN_TYPE!r} (got {configs['robovlm_name']!r})")
    if configs.get("sim_eval") is not None:  # closed loop during training (sim_eval_callback.py)
        from robovlms_mobile.sim_eval_callback import check_sim_eval

        try:
            check_sim_eval(configs["sim_eval"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    lora = {k: v for k, v in configs["train_setup"].items() if k.startswith("lora_")}
    _check_section(lora, LORA_KEYS, "train_setup")
    datasets = []
    for name in ("train_dataset", "val_dataset"):
        section = configs.get(name)
        if isinstance(section, dict) and section.get("type") == DATASET_TYPE:
            _check_section(section, DATASET_KEYS, name)
            if "data_dir" not in section:
                raise ConfigError(f"missing required key '{name}.data_dir'")
            if "prompt_template" in section:
                try:
                    validate_template(section["prompt_template"])
                except ValueError as exc:
                    raise ConfigError(f"'{name}.prompt_template': {exc}") from None
            if section.get("max_speed", 1.0) <= 0:
                raise ConfigError(f"'{name}.max_speed' must be > 0")
            datasets.append((name, section))
    if len(datasets) == 2:
        (a, sa), (b, sb) = datasets
        for key in ("max_speed", "prompt_template", "split_file"):  # one split file for both, or val could leak
            if sa.get(key) != sb.get(key):
                raise ConfigError(f"'{a}.{key}' ({sa.get(key)!r}) and '{b}.{key}' ({sb.get(key)!r}) must match")
    return configs
