"""Training-time augmentation of one window: mirror, random shift (`rgb_pad`), colour jitter.

- mirror: flip every frame left-right, swap "left" and "right" in the instruction, negate
  linear_y (and angular_z when present). The task is symmetric, so the mirrored window is a valid
  demonstration of the other side; a policy can then only tell the sides apart by reading the
  instruction.
- random shift: each frame padded by `pad` pixels (edge replicated) and cropped back at a random
  offset, as upstream RoboVLMs' / DrQ's RandomShiftsAug (the original's `rgb_pad`).
- colour jitter: one brightness, contrast and saturation factor per window (the same for all its
  frames, so motion between frames is untouched), each in [1 - s, 1 + s].

All draws come from the `generator` passed in, so a seeded run is repeatable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from robovlms_mobile.data.shift import random_shift

_SIDE = re.compile(r"\b(left|right)\b")


@dataclass(frozen=True)
class AugmentSettings:
    """Which augmentations a training dataset applies (dataset keys `mirror`, `rgb_pad`, `color_jitter`)."""

    mirror: float = 0.0  # probability of mirroring a window
    rgb_pad: int = 0  # random-shift padding in pixels
    color_jitter: float = 0.0  # brightness / contrast / saturation strength

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> AugmentSettings:
        """Read and check the dataset keys; raises ValueError naming a bad one."""
        mirror = kwargs.get("mirror", 0.0)
        mirror = 0.5 if mirror is True else 0.0 if mirror is False else float(mirror)
        pad, jitter = kwargs.get("rgb_pad", 0), float(kwargs.get("color_jitter", 0.0))
        if not 0.0 <= mirror <= 1.0:
            raise ValueError(f"dataset key 'mirror': {mirror}; expected true/false or a probability in [0, 1]")
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ValueError(f"dataset key 'rgb_pad': {pad!r}; expected an integer >= 0 (pixels)")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"dataset key 'color_jitter': {jitter}; expected a strength in [0, 1)")
        return cls(mirror, pad, jitter)

    @property
    def active(self) -> bool:
        return self.mirror > 0 or self.rgb_pad > 0 or self.color_jitter > 0


def swap_sides(instruction: str) -> str:
    """"go around the box on the left" -> "go around the box on the right" (whole words only)."""
    return _SIDE.sub(lambda m: "right" if m.group(1) == "left" else "left", instruction)


def mirror_window(frames: torch.Tensor, actions: torch.Tensor, instruction: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Frames (n, H, W, 3) flipped left-right; actions (T, 2|3) with linear_y (and angular_z) negated; sides swapped."""
    actions = actions.clone()
    actions[:, 1:] = -actions[:, 1:]  # linear_y, and angular_z when the window carries it
    return frames.flip(2), actions, swap_sides(instruction)


def shift_window(frames: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`data.shift.random_shift` on channels-last frames (n, H, W, 3): each frame shifted by up to `pad` pixels."""
    if pad <= 0:
        return frames
    shifted = random_shift(rearrange(frames, "n h w c -> n c h w"), pad, generator)
    return rearrange(shifted, "n c h w -> n h w c")


def color_jitter(frames: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One brightness, contrast and saturation factor in [1 - s, 1 + s] for the whole window (n, H, W, 3) uint8."""
    if strength <= 0:
        return frames
    b, c, s = (1.0 + strength * (2 * torch.rand(3, generator=generator) - 1)).tolist()
    x = frames.float() * b
    grey = x.mean(dim=-1, keepdim=True)  # (n, H, W, 1)
    x = grey + (x - grey) * s
    x = x.mean() + (x - x.mean()) * c
    return x.clamp_(0, 255).round_().to(torch.uint8)


def augment_window(frames: Any, actions: torch.Tensor, instruction: str, settings: AugmentSettings,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Apply the configured augmentations to one window: (frames (n, H, W, 3) uint8, actions, instruction)."""
    frames = torch.as_tensor(frames)
    if settings.mirror > 0 and float(torch.rand((), generator=generator)) < settings.mirror:
        frames, actions, instruction = mirror_window(frames, actions, instruction)
    frames = shift_window(frames, settings.rgb_pad, generator)
    frames = color_jitter(frames, settings.color_jitter, generator)
    return frames.contiguous(), actions, instruction
