"""Offline evaluation on episode files: errors in m/s, sign agreement, error per chunk step, and
instruction sensitivity (the same frames with the instruction's side swapped: does the output move?).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
from robovlms_mobile.data.episode import ACTION_AXES
from robovlms_mobile.data.prompt import encode_prompts
from robovlms_mobile.data.transforms import normalise_batch

_SIDE = re.compile(r"\b(left|right)\b")


def evaluation_windows(module: Any, meta: CheckpointMetadata, data_dir: str, *, split: str = "val", val_ratio: float = 0.1,
                       split_seed: int = 0) -> Any:
    """The windows of `data_dir` read as `module` was trained: its tokenizer, window, chunk, image size, scale, prompt."""
    from robovlms_mobile.data.dataset import MobileVLAH5Dataset

    return MobileVLAH5Dataset(data_dir, tokenizer=module.model.tokenizer, window_size=meta.window,
                              fwd_pred_next_n=meta.chunk, image_size=meta.image_size, split=split,
                              val_ratio=val_ratio, split_seed=split_seed, max_speed=meta.max_speed,
                              prompt_template=meta.prompt_template)


def validation_report(module: Any, meta: CheckpointMetadata) -> dict[str, Any]:
    """`offline_report` on the validation split that the module's own config trained against."""
    val = module.configs["val_dataset"]
    windows = evaluation_windows(module, meta, val["data_dir"], val_ratio=val.get("val_ratio", 0.1),
                                 split_seed=val.get("split_seed", 0))
    return offline_report(module, windows, meta)


def swap_side(instruction: str) -> str:
    """'... on the left ...' <-> '... on the right ...' (every occurrence)."""
    return _SIDE.sub(lambda m: "right" if m.group(1) == "left" else "left", instruction)


@torch.no_grad()
def _predict(module: Any, rgb: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = module.model.forward_continuous(rgb, text.to(rgb.device), attention_mask=mask.to(rgb.device), mode="inference")
    return (out[0] if isinstance(out, (tuple, list)) else out).float()  # (B, W, C, 2) in [-1, 1]


def offline_report(module: Any, dataset: Any, meta: CheckpointMetadata, *, batch_size: int = 8, progress: bool = False) -> dict[str, Any]:
    """Metrics over every window of `dataset` (a MobileVLAH5Dataset using the module's tokenizer)."""
    module.eval()
    max_speed, template = meta.max_speed, meta.prompt_template
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collater, num_workers=0)
    chunk = dataset.chunk
    abs_sum, sq_sum, agree = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    step_abs = torch.zeros(chunk, 2)
    sens_sum, lateral, flipped, n_swappable = torch.zeros(2), 0, 0, 0
    count = 0
    for batch in tqdm(loader, desc="offline eval", disable=not progress):
        rgb = normalise_batch(batch["rgb"][:, : meta.window].to(module.device))  # the collater's uint8 -> CLIP float
        labels = batch["action_chunck"].float().to(module.device)  # (B, W, C, 2)
        pred = _predict(module, rgb, batch["text"], batch["text_mask"])
        err = (pred - labels) * max_speed
        abs_sum += err.abs().flatten(0, 2).sum(0).cpu()
        sq_sum += err.pow(2).flatten(0, 2).sum(0).cpu()
        step_abs += err.abs().flatten(0, 1).sum(0).cpu()  # (C, 2)
        agree += (torch.sign(pred.round()) == torch.sign(labels)).flatten(0, 2).float().sum(0).cpu()
        count += labels.shape[0] * labels.shape[1] * labels.shape[2]

        swapped = [swap_side(s) for s in batch["raw_text"]]
        keep = torch.tensor([a != b for a, b in zip(swapped, batch["raw_text"])])
        if keep.any():
            text, mask = encode_prompts(module.model.tokenizer, swapped, template)
            pred_sw = _predict(module, rgb, text, mask)
            k = keep.to(pred.device)
            sens_sum += ((pred_sw - pred)[k].abs() * max_speed).flatten(0, 2).sum(0).cpu()
            n_swappable += int(k.sum()) * labels.shape[1] * labels.shape[2]
            # chunks whose label moves sideways: does the swap turn a correct lateral direction around?
            y_true, y_pred, y_sw = (t[k][..., 1].sum(-1) for t in (labels, pred, pred_sw))  # (b, W)
            moving = y_true != 0
            lateral += int(moving.sum())
            flipped += int((moving & (torch.sign(y_pred) == torch.sign(y_true)) & (torch.sign(y_sw) == -torch.sign(y_true))).sum())
    if count == 0:
        raise ValueError("offline_report: the dataset yielded no window")
    report: dict[str, Any] = {"windows": len(dataset), "chunk_predictions": count // chunk, "max_speed": max_speed}
    for i, axis in enumerate(ACTION_AXES):
        report[f"mae_{axis}"] = float(abs_sum[i] / count)
        report[f"rmse_{axis}"] = float((sq_sum[i] / count).sqrt())
        report[f"sign_agreement_{axis}"] = float(agree[i] / count)
        report[f"instruction_sensitivity_{axis}"] = float(sens_sum[i] / n_swappable) if n_swappable else None
    per_step = step_abs / (count / chunk)
    report["mae_per_chunk_step"] = {axis: [float(v) for v in per_step[:, i]] for i, axis in enumerate(ACTION_AXES)}
    report["lateral_flip_rate"] = flipped / lateral if lateral else None
    report["instruction_sensitivity_note"] = (
        "mean |output(swapped side) - output| in m/s over every chunk step; lateral_flip_rate: of the chunks whose label "
        "moves sideways, the fraction predicted with the right lateral sign that turns to the opposite sign when the "
        "instruction's side is swapped (0 = the instruction is ignored)")
    return report
