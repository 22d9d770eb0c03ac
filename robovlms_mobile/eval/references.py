"""Reference policies that can succeed, to set a trained policy's figures against.

- `NearestReplay`: open loop, camera used once: the recorded key presses of the training episode
  with the same instruction whose first frame is nearest (L2) to this episode's first frame.
  Where worlds differ only by centimetres this solves everything; on a benchmark that demands
  seeing it should not.
- `FrozenImage`: a policy that sees only the first frame of the episode, ever (its LSTM still
  advances): what it does from the instruction and the start view alone.
- `ForwardUntilBlocked`: privileged and blind: forward key presses until the next one would touch
  an object, then stop. It succeeds where the goal happens to lie straight ahead, clear.
- instruction blanked: `runtime.in_process.BlankInstruction`; untrained: `InProcessPolicy.untrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from robovlms_mobile.runtime.protocol import Policy
from robovlms_mobile.sim.expert import key_sequence
from robovlms_mobile.sim.world import LATTICE, SPEED, World

REFERENCES = ("replay", "forward", "image_frozen", "instruction_blanked", "untrained")


def read_training_episodes(data_dir: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(instruction, first frame (H, W, 3) RGB uint8, actions (T, 2)) of every V4 episode file in `data_dir`."""
    out = []
    for path in sorted(Path(data_dir).glob("*.h5")):
        with h5py.File(path, "r") as f:
            if "language_instruction" not in f or "images" not in f or "actions" not in f:
                continue
            text = f["language_instruction"][0]
            text = text.decode() if isinstance(text, bytes) else str(text)
            first = np.asarray(f["images"][0], np.uint8)[..., ::-1]  # BGR on disk
            out.append((text, first, np.asarray(f["actions"][:, :2], np.float64)))
    if not out:
        raise ValueError(f"{data_dir}: no V4 episode files with an instruction (the replay reference needs the training episodes)")
    return out


def training_keys(episodes: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, set[str]]:
    """instruction -> the set of key sequences of the training episodes."""
    keys: dict[str, set[str]] = {}
    for text, _, actions in episodes:
        keys.setdefault(text, set()).add(key_sequence(actions))
    return keys


class NearestReplay:
    """Replays the actions of the nearest training episode (same instruction, L2 on the first frame), open loop."""

    def __init__(self, episodes: list[tuple[str, np.ndarray, np.ndarray]]):
        self.episodes, self.actions, self.i = episodes, None, 0
        self._resized: dict[tuple[int, int], np.ndarray] = {}

    def _firsts(self, size: tuple[int, int]) -> np.ndarray:
        if size not in self._resized:
            self._resized[size] = np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.BILINEAR), np.float32)
                                            if f.shape[:2] != size else f.astype(np.float32) for _, f, _ in self.episodes])
        return self._resized[size]

    def reset(self) -> None:
        self.actions, self.i = None, 0

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        if self.actions is None:
            firsts = self._firsts(frame_rgb.shape[:2])
            dist = ((firsts - frame_rgb.astype(np.float32)) ** 2).reshape(len(firsts), -1).sum(1)
            same = np.array([text == instruction for text, _, _ in self.episodes])
            dist[~same] = np.inf
            self.actions = self.episodes[int(np.argmin(dist))][2] if same.any() else np.zeros((1, 2))
        a = self.actions[self.i] if self.i < len(self.actions) else np.zeros(2)
        self.i += 1
        return np.asarray(a, np.float64)


class FrozenImage:
    """Wraps a policy and shows it the episode's first frame at every step."""

    def __init__(self, policy: Policy):
        self.policy, self.first = policy, None

    def reset(self) -> None:
        self.first = None
        self.policy.reset()

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        if self.first is None:
            self.first = np.array(frame_rgb, copy=True)
        return self.policy.act(self.first, instruction)


class ForwardUntilBlocked:
    """Forward key presses until the next would touch an object (privileged geometry), then stop."""

    def __init__(self) -> None:
        self.world: World | None = None
        self.pos = np.zeros(2)

    def begin(self, world: World) -> None:
        self.world, self.pos = world, np.array(world.start, np.float64)

    def reset(self) -> None:
        self.world = None

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        if self.world is None:
            return np.zeros(2)
        xs = self.pos[0] + np.linspace(0.0, LATTICE, 9)
        if self.world.blocked(xs, np.full_like(xs, self.pos[1])).any():
            return np.zeros(2)
        self.pos = self.pos + (LATTICE, 0.0)
        return np.array([SPEED, 0.0])


def reference_policy(name: str, *, trained: Any = None, untrained: Any = None,
                     episodes: list | None = None) -> Policy:
    """The reference `name` (REFERENCES) built from the trained policy, an untrained one, or the training episodes."""
    from robovlms_mobile.runtime.in_process import BlankInstruction

    if name == "replay":
        return NearestReplay(episodes)
    if name == "forward":
        return ForwardUntilBlocked()
    if name == "image_frozen":
        return FrozenImage(trained)
    if name == "instruction_blanked":
        return BlankInstruction(trained)
    if name == "untrained":
        return untrained
    raise ValueError(f"reference {name!r}: expected one of {', '.join(REFERENCES)}")
