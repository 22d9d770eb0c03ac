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


class OfflineMetrics:
    """Running sums of the offline metrics over batches of chunk predictions; `report()` turns them into figures.

    `add(pred, labels, pred_swapped, keep)`: predictions and labels (B, W, C, 2) in [-1, 1] (scaled by
    `max_speed` into m/s), the predictions for the side-swapped instruction and which rows had a side to swap (B,).
    """

    def __init__(self, chunk: int, max_speed: float):
        self.chunk, self.max_speed = chunk, max_speed
        self.abs_sum, self.sq_sum, self.agree = torch.zeros(2), torch.zeros(2), torch.zeros(2)
        self.step_abs = torch.zeros(chunk, 2)
        self.sens_sum, self.lateral, self.flipped, self.n_swappable, self.count = torch.zeros(2), 0, 0, 0, 0

    def add(self, pred: torch.Tensor, labels: torch.Tensor, pred_swapped: torch.Tensor | None = None,
            keep: torch.Tensor | None = None) -> None:
        """Accumulate one batch (see the class docstring)."""
        pred, labels = pred.float().cpu(), labels.float().cpu()
        err = (pred - labels) * self.max_speed
        self.abs_sum += err.abs().flatten(0, 2).sum(0)
        self.sq_sum += err.pow(2).flatten(0, 2).sum(0)
        self.step_abs += err.abs().flatten(0, 1).sum(0)  # (C, 2)
        self.agree += (torch.sign(pred.round()) == torch.sign(labels)).flatten(0, 2).float().sum(0)
        self.count += labels.shape[0] * labels.shape[1] * labels.shape[2]
        if pred_swapped is None or keep is None or not keep.any():
            return
        k = keep.cpu().bool()
        pred_sw = pred_swapped.float().cpu()
        self.sens_sum += ((pred_sw - pred)[k].abs() * self.max_speed).flatten(0, 2).sum(0)
        self.n_swappable += int(k.sum()) * labels.shape[1] * labels.shape[2]
        # chunks whose label moves sideways: does the swap turn a correct lateral direction around?
        y_true, y_pred, y_sw = (t[k][..., 1].sum(-1) for t in (labels, pred, pred_sw))  # (b, W)
        moving = y_true != 0
        self.lateral += int(moving.sum())
        self.flipped += int((moving & (torch.sign(y_pred) == torch.sign(y_true)) & (torch.sign(y_sw) == -torch.sign(y_true))).sum())

    def report(self) -> dict[str, Any]:
        """mae / rmse / sign agreement / instruction sensitivity per axis, mae per chunk step, lateral flip rate."""
        if self.count == 0:
            raise ValueError("offline_report: the dataset yielded no window")
        count = self.count
        report: dict[str, Any] = {"chunk_predictions": count // self.chunk, "max_speed": self.max_speed}
        for i, axis in enumerate(ACTION_AXES):
            report[f"mae_{axis}"] = float(self.abs_sum[i] / count)
            report[f"rmse_{axis}"] = float((self.sq_sum[i] / count).sqrt())
            report[f"sign_agreement_{axis}"] = float(self.agree[i] / count)
            report[f"instruction_sensitivity_{axis}"] = float(self.sens_sum[i] / self.n_swappable) if self.n_swappable else None
        per_step = self.step_abs / (count / self.chunk)
        report["mae_per_chunk_step"] = {axis: [float(v) for v in per_step[:, i]] for i, axis in enumerate(ACTION_AXES)}
        report["lateral_flip_rate"] = self.flipped / self.lateral if self.lateral else None
        report["instruction_sensitivity_note"] = (
            "mean |output(swapped side) - output| in m/s over every chunk step; lateral_flip_rate: of the chunks whose label "
            "moves sideways, the fraction predicted with the right lateral sign that turns to the opposite sign when the "
            "instruction's side is swapped (0 = the instruction is ignored)")
        return report


def offline_report(module: Any, dataset: Any, meta: CheckpointMetadata, *, batch_size: int = 8, progress: bool = False) -> dict[str, Any]:
    """Metrics over every window of `dataset` (a MobileVLAH5Dataset using the module's tokenizer)."""
    module.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collater, num_workers=0)
    metrics = OfflineMetrics(dataset.chunk, meta.max_speed)
    for batch in tqdm(loader, desc="offline eval", disable=not progress):
        rgb = normalise_batch(batch["rgb"][:, : meta.window].to(module.device))  # the collater's uint8 -> CLIP float
        labels = batch["action_chunck"].float()  # (B, W, C, 2)
        pred = _predict(module, rgb, batch["text"], batch["text_mask"])
        swapped = [swap_side(s) for s in batch["raw_text"]]
        keep = torch.tensor([a != b for a, b in zip(swapped, batch["raw_text"])])
        pred_sw = None
        if keep.any():
            text, mask = encode_prompts(module.model.tokenizer, swapped, meta.prompt_template)
            pred_sw = _predict(module, rgb, text, mask)
        metrics.add(pred, labels, pred_sw, keep)
    return {"windows": len(dataset), **metrics.report()}
