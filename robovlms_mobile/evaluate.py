"""Offline evaluation of a trained MobileVLATrainer on a dataloader: errors in real units."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from robovlms_mobile.data.episode import ACTION_AXES


@torch.no_grad()
def offline_metrics(module: Any, loader: Any, max_speed: float, progress: bool = False) -> dict[str, float]:
    """Per-axis MAE (m/s), sign agreement and Huber loss over every window and chunk step."""
    module.eval()
    abs_err, agree, losses, count = torch.zeros(2), torch.zeros(2), [], 0
    for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
        rgb, _, _, text, text_mask, *_ = module._process_batch(batch)
        labels = batch["action_chunck"].to(module.device)  # (B, W, C, 2) in [-1, 1]
        out = module.model.forward_continuous(rgb, text, attention_mask=text_mask, mode="inference")
        pred = (out[0] if isinstance(out, (tuple, list)) else out).to(labels.dtype)  # (B, W, C, 2)
        losses.append(float(torch.nn.functional.huber_loss(pred, labels)))
        abs_err += ((pred - labels).abs() * max_speed).flatten(0, 2).sum(0).cpu()
        agree += (torch.sign(pred.round()) == torch.sign(labels)).flatten(0, 2).float().sum(0).cpu()
        count += labels.shape[0] * labels.shape[1] * labels.shape[2]
    if count == 0:
        raise ValueError("offline_metrics: the dataloader yielded no batch")
    result = {"huber_loss": sum(losses) / len(losses)}
    for i, axis in enumerate(ACTION_AXES):
        result[f"mae_{axis}"] = float(abs_err[i] / count)
        result[f"sign_agreement_{axis}"] = float(agree[i] / count)
    return result
