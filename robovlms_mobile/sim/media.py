"""Writing frames out: PNG files and animated GIFs (first-person view beside the top-down map)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from robovlms_mobile.outputs import writing
from robovlms_mobile.sim.render import render_map
from robovlms_mobile.sim.world import World


def save_pngs(frames: Sequence[np.ndarray], out_dir: str | Path, prefix: str = "frame") -> list[Path]:
    """Write (H, W, 3) uint8 RGB frames as `<prefix>_000.png`, ...; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        with writing(out_dir / f"{prefix}_{i:03d}.png") as path:
            Image.fromarray(np.asarray(frame, np.uint8)).save(path)
        paths.append(path)
    return paths


def side_by_side(frame: np.ndarray, world: World, trail: Sequence) -> np.ndarray:
    """The camera frame with the top-down map (trail so far) to its right, same height."""
    h = frame.shape[0]
    return np.concatenate([frame, render_map(world, trail, size=h)], axis=1)


def save_gif(frames: Sequence[np.ndarray], path: str | Path, frame_ms: int = 250) -> Path:
    """Write an animated GIF (the last frame held three times as long)."""
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [3 * frame_ms]
    with writing(path) as path:
        images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path
