"""Frame preprocessing shared by training and inference: resize + CLIP normalisation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_frames(frames_rgb: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """RGB uint8 (n, H, W, 3) -> normalised float32 (n, 3, S, S), bicubic + antialias like upstream's PIL path."""
    x = torch.as_tensor(np.ascontiguousarray(frames_rgb))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (n, H, W, 3) RGB, got {tuple(x.shape)}")
    x = rearrange(x, "n h w c -> n c h w").float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
    x = x.clamp_(0, 255).div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
