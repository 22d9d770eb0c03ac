"""Frame preprocessing shared by training and inference: resize + CLIP normalisation (per frame, or of a uint8 batch)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_frames(frames: np.ndarray | torch.Tensor, image_size: int, *, bgr: bool = False) -> torch.Tensor:
    """RGB (or BGR, `bgr=True`) (n, H, W, 3) -> RGB uint8 (n, S, S, 3), bicubic + antialias, rounded as upstream's PIL path.

    torch's uint8 kernel is used: it is ~25x faster than resizing in float32 on a 720x1280 frame,
    and its output is what the frame cache stores, so cached and uncached items are identical.
    BGR frames are swapped to RGB after resizing (per channel, so the same result): reversing the
    channels of full-size frames first costs more than the resize itself.
    """
    x = torch.as_tensor(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (n, H, W, 3) colour, got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        x = x.float().clamp(0, 255).round().to(torch.uint8)
    if x.shape[1:3] != (image_size, image_size):
        x = rearrange(x, "n h w c -> n c h w")  # a channels-last view: no copy
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
        x = rearrange(x, "n c h w -> n h w c")
    return (x.flip(-1) if bgr else x).contiguous()


_SCALE = 1.0 / (255.0 * torch.tensor(CLIP_STD).view(3, 1, 1))
_BIAS = torch.tensor(CLIP_MEAN).view(3, 1, 1) * 255.0 * _SCALE


def normalise_frames(frames_rgb: np.ndarray | torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 RGB (n, S, S, 3) -> CLIP-normalised float32 (n, 3, S, S): (x / 255 - mean) / std, into `out` if given."""
    x = rearrange(torch.as_tensor(np.asarray(frames_rgb)), "n h w c -> n c h w")  # a view
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32)
    return _normalise_into(x, out)


def normalise_batch(rgb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A batch's `rgb` as the model takes it: uint8 frames (..., 3, S, S), any strides and device, CLIP-normalised
    to contiguous float32 on that device; a float `rgb` (normalised already) is returned as is.

    The collater moves uint8 frames (a quarter of the bytes); whoever consumes the batch calls this
    once, after moving it to its device. The dtype says whether it was done, so it happens exactly once.
    `out`: a contiguous float32 tensor of the same shape and device to write into (a buffer reused
    across steps skips the page faults of a fresh one, most of the cost on CPU: benchmarks/loader.py).
    """
    if rgb.is_floating_point():
        return rgb
    if rgb.dtype != torch.uint8 or rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"batch 'rgb' must be uint8 (..., 3, S, S) frames or normalised float, got {rgb.dtype} {tuple(rgb.shape)}")
    if out is None:
        out = torch.empty(rgb.shape, dtype=torch.float32, device=rgb.device)
    elif out.shape != rgb.shape or out.dtype != torch.float32 or out.device != rgb.device or not out.is_contiguous():
        raise ValueError(f"normalise_batch out must be contiguous float32 {tuple(rgb.shape)} on {rgb.device}, "
                         f"got {out.dtype} {tuple(out.shape)} on {out.device}")
    return _normalise_into(rgb, out)


def _normalise_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, S, S) -> `out` float32: convert (+ transpose, for a channels-last view) in one pass, then two in-place passes.

    ~4x faster than `x.float() * scale` on CPU; the same operations on every device give the same
    values. Measured alternatives (benchmarks/loader.py, docs/realsize.md): one fused
    `torch.addcmul(-bias, x, scale)` is slower on CPU (its mixed-dtype path is not vectorised);
    the passes frame by frame (cache-resident) gain ~10% with one thread but are 2x slower with two
    threads on a loaded machine. Most of the CPU cost is the fresh output's page faults (`out`).
    """
    out.copy_(x)
    return out.mul_(_SCALE.to(out.device)).sub_(_BIAS.to(out.device))  # `.to`: no copy on the same device


def preprocess_frames(frames_rgb: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """RGB uint8 (n, H, W, 3) -> normalised float32 (n, 3, S, S): `resize_frames` then `normalise_frames`."""
    return normalise_frames(resize_frames(frames_rgb, image_size))
