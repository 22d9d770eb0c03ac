"""Build a trained module from a plugin checkpoint (or an untrained one from a config)."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

from robovlms_mobile.checkpoint import load_checkpoint, plugin_info
from robovlms_mobile.data.dataset import DEFAULT_MAX_SPEED
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE


def with_base_model_dir(config: dict[str, Any], base_model_dir: str | Path | None) -> dict[str, Any]:
    """A copy of `config` whose backbone and tokenizer paths point at `base_model_dir` (None: unchanged)."""
    config = copy.deepcopy(config)
    if base_model_dir is None:
        return config
    d = str(Path(base_model_dir))
    if not (Path(d) / "config.json").is_file():
        raise FileNotFoundError(f"base model folder {d!r} has no config.json")
    config["model_path"], config["model_config"] = d, str(Path(d) / "config.json")
    config["vlm"]["pretrained_model_name_or_path"] = d
    config["tokenizer"]["pretrained_model_name_or_path"] = d
    return config


def inference_meta(config: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """max_speed, prompt template, window, chunk and image size: from checkpoint metadata, else the config."""
    data = config.get("train_dataset", {})
    info = info or {}
    return {
        "max_speed": float(info.get("action_scale", {}).get("max_speed", data.get("max_speed", DEFAULT_MAX_SPEED))),
        "template": info.get("prompt", {}).get("template", data.get("prompt_template", DEFAULT_PROMPT_TEMPLATE)),
        "window_size": int(config["window_size"]),
        "chunk": int(config["fwd_pred_next_n"]),
        "image_size": int(config.get("image_size", 224)),
    }


def build_module(config: dict[str, Any], ckpt_path: str | Path | None = None, *, quiet: bool = True) -> Any:
    """MobileVLATrainer from `config`, with the checkpoint's trained tensors when given; in eval mode."""
    from robovlms_mobile.registry import register

    register()
    from robovlms_mobile.trainer import MobileVLATrainer

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():  # upstream prints the whole config
        module = MobileVLATrainer.from_checkpoint(ckpt_path, configs=config)
    return module.eval()


def load_trained(ckpt_path: str | Path, base_model_dir: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """(module, meta) from a plugin checkpoint; `meta` as `inference_meta`, plus the config."""
    info = plugin_info(load_checkpoint(ckpt_path), ckpt_path)
    config = with_base_model_dir(info["config"], base_model_dir)
    module = build_module(config, ckpt_path)
    return module, {**inference_meta(config, info), "config": config}
