"""The one checkpoint -> module path, for every consumer (runtime, serve, ROS, eval, demo, sweep).

`load_for_inference` reads the file once (`checkpoint.load_checkpoint`: weights_only, one-line
errors), turns its `mobile_vla` entry into a `CheckpointMetadata` (stored config whitelisted, the
backbone folder checked: `checkpoint_meta.py`), checks the weights against the recorded chunk,
builds `MobileVLATrainer` through the guarded backbone builders (`model/model_folder.py`: no
remote code, no upstream tokenizer fallback), loads the trained tensors strictly and converts the
module to the requested inference precision (`runtime/precision.py`).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import torch

from robovlms_mobile.checkpoint.format import CheckpointError, load_checkpoint
from robovlms_mobile.checkpoint.metadata import TRAINER_TYPE, CheckpointMetadata
from robovlms_mobile.model.model_folder import BaseModelError, check_model_folder
from robovlms_mobile.runtime.precision import apply_precision, check_dtype
from robovlms_mobile.task import ACTION_DIM

__all__ = ["BaseModelError", "CheckpointMetadata", "TRAINER_TYPE", "build_module", "check_model_folder",
           "check_head_weights", "load_for_inference"]

HEAD_OUTPUT = re.compile(r"(?:^|\.)act_head\.actions\.mlp\.(\d+)\.weight$")


def check_head_weights(state_dict: dict[str, torch.Tensor], meta: CheckpointMetadata) -> None:
    """The head's last layer predicts `meta.chunk` x 2 values; else the checkpoint's config is stale."""
    layers = sorted((int(m.group(1)), key) for key in state_dict if (m := HEAD_OUTPUT.search(key)))
    if not layers:
        raise CheckpointError(f"{meta.source}: no action-head weights (act_head.actions.*) in 'state_dict'")
    rows = state_dict[layers[-1][1]].shape[0]
    if rows != meta.chunk * ACTION_DIM:
        raise CheckpointError(f"{meta.source}: stale checkpoint: its config says chunk (fwd_pred_next_n) {meta.chunk}, but "
                              f"the head weights predict {rows} values ({rows / ACTION_DIM:g} steps x {ACTION_DIM} axes)")


def build_module(config: dict[str, Any], *, quiet: bool = True) -> Any:
    """MobileVLATrainer from a config (fresh trainable weights), in eval mode; upstream's prints silenced."""
    from robovlms_mobile.train.registry import register
    from robovlms_mobile.train.trainer import MobileVLATrainer

    register()
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        # validate=False: `config` is either an inference skeleton whitelisted by checkpoint_meta.trusted_config
        # or a training config the caller validated; neither is a training config to re-check here
        module = MobileVLATrainer(config, validate=False)
    return module.eval()


def load_for_inference(path: str | Path, base_model_dir: str | Path | None = None,
                       device: str | torch.device = "cpu", dtype: str = "fp32") -> tuple[Any, CheckpointMetadata]:
    """(MobileVLATrainer in eval mode on `device` in `dtype`, its CheckpointMetadata) from a plugin checkpoint.

    `base_model_dir`: the Kosmos-2 folder to read the frozen backbone and tokenizer from; without it
    the folder the checkpoint names is used, after the same checks. `dtype`: fp32 (as trained),
    bf16 or int8 (CPU only), see `runtime/precision.py`; checked before anything is read.
    """
    check_dtype(dtype, device)
    ckpt = load_checkpoint(path)
    meta = CheckpointMetadata.from_checkpoint(ckpt, path, base_model_dir)
    check_head_weights(ckpt["state_dict"], meta)
    module = build_module(meta.config)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    module.requires_grad_(False)
    module.eval().to(device)
    if dtype != "fp32":
        apply_precision(module, dtype, device)
    return module, meta
