"""Random-shift augmentation (`rgb_pad`): pad by `pad` pixels with the edge pixels, crop back at a random offset.

The same operation as upstream RoboVLMs' / DrQ's `RandomShiftsAug` (replicate padding, then an
integer shift in [0, 2 * pad] on each axis, drawn independently for every frame), written as one
gather with clamped indices: exact integer crops, any dtype (uint8 frames stay uint8), no padded copy.
"""

from __future__ import annotations

import torch
from einops import rearrange


def random_shift(frames: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each frame of (T, C, H, W) or (B, T, C, H, W) by up to +-pad pixels (edges replicated); same shape.

    pad <= 0 returns `frames` unchanged. Every frame gets its own offset, as upstream does.
    """
    if frames.dim() not in (4, 5):
        raise ValueError(f"random_shift: frames of shape {tuple(frames.shape)}; expected (T, C, H, W) or (B, T, C, H, W)")
    if pad <= 0:
        return frames
    lead = frames.shape[:-3]
    c, h, w = frames.shape[-3:]
    flat = frames.reshape(-1, c, h, w)  # (N, C, H, W)
    n = flat.shape[0]
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device="cpu").to(frames.device)  # (N, 2) y, x
    rows = (offsets[:, :1] - pad + torch.arange(h, device=frames.device)).clamp_(0, h - 1)  # (N, H)
    cols = (offsets[:, 1:] - pad + torch.arange(w, device=frames.device)).clamp_(0, w - 1)  # (N, W)
    index = torch.arange(n, device=frames.device)
    shifted = flat[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C): advanced dims first
    return rearrange(shifted, "n h w c -> n c h w").reshape(*lead, c, h, w)
