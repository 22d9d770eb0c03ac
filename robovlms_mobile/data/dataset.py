"""MobileVLAH5Dataset: robot HDF5 episodes -> upstream RoboVLMs' batch contract, 2-DOF actions.

Each item is one window: `window_size` frames and the `window_size + chunk - 1` actions whose
10-step chunks are the labels. The collater yields what `BaseTrainer`-style `_process_batch`
reads: `rgb` (B, W, 3, S, S), `text`, `text_mask`, `action` (B, W + C - 1, 2),
`action_chunck` (B, W, C, 2), `chunck_mask` (B, W, C), `data_source`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from robovlms_mobile.data.episode import ACTION_AXES, Episode, EpisodeError, load_episode, read_frames_rgb
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE, encode_prompts, validate_template
from robovlms_mobile.data.split import SPLITS, split_episodes
from robovlms_mobile.data.transforms import preprocess_frames

# Tokenisation happens in the collater inside DataLoader workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_SOURCE = "mobile_vla_action"
DEFAULT_MAX_SPEED = 1.15


class InvalidEpisodesError(ValueError):
    """One or more episode files failed the checks; the message lists every one."""

    def __init__(self, errors: Sequence[EpisodeError]):
        self.errors = list(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} invalid episode file(s):\n{lines}")


def find_episode_files(data_dir: str | Path | Sequence[str | Path], pattern: str = "*.h5") -> list[Path]:
    """All episode files under one or more directories (recursive), sorted."""
    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"data_dir {str(d)!r} is not a directory")
        files.extend(p for p in d.rglob(pattern) if p.is_file())
    if not files:
        raise FileNotFoundError(f"no episode files matching {pattern!r} under {[str(d) for d in dirs]}")
    return sorted(set(files))


def scan_episodes(data_dir: str | Path | Sequence[str | Path], *, min_length: int, max_speed: float,
                  pattern: str = "*.h5") -> list[Episode]:
    """Load and check every episode file; raises InvalidEpisodesError listing all bad ones."""
    episodes, errors = [], []
    for path in find_episode_files(data_dir, pattern):
        try:
            episodes.append(load_episode(path, min_length=min_length, max_speed=max_speed))
        except EpisodeError as exc:
            errors.append(exc)
    if errors:
        raise InvalidEpisodesError(errors)
    return episodes


class MobileVLAH5Dataset(Dataset):
    """Windows of robot episodes with [linear_x, linear_y] velocity chunks scaled to [-1, 1]."""

    def __init__(
        self,
        data_dir: str | Sequence[str],
        tokenizer: Any = None,
        window_size: int = 8,
        fwd_pred_next_n: int = 10,
        image_size: int = 224,
        split: str | None = None,
        val_ratio: float = 0.1,
        split_seed: int = 0,
        max_speed: float = DEFAULT_MAX_SPEED,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        pattern: str = "*.h5",
        is_training: bool = True,
        **kwargs: Any,  # the rest of upstream GRDataModule's kwargs (image_fn, discrete, ...)
    ):
        if split is None:
            split = "train" if is_training else "val"
        if split not in SPLITS:
            raise ValueError(f"dataset key 'split': {split!r}; expected one of {SPLITS}")
        if max_speed <= 0:
            raise ValueError(f"dataset key 'max_speed' must be > 0, got {max_speed}")
        self.tokenizer = tokenizer
        self.window_size, self.chunk = int(window_size), int(fwd_pred_next_n)
        self.image_size = int(image_size)
        self.max_speed = float(max_speed)
        self.prompt_template = validate_template(prompt_template)
        self.split = split

        episodes = scan_episodes(data_dir, min_length=self.window_size + self.chunk, max_speed=self.max_speed, pattern=pattern)
        chosen = split_episodes([e.path.name for e in episodes], [e.side for e in episodes], val_ratio=val_ratio, seed=split_seed)[split]
        if not chosen:
            raise ValueError(f"split {split!r} of {data_dir} is empty ({len(episodes)} episodes, val_ratio={val_ratio})")
        self.episodes: list[Episode] = [episodes[i] for i in chosen]
        span = self.window_size + self.chunk
        self.index = [(e, start) for e, ep in enumerate(self.episodes) for start in range(ep.num_frames - span + 1)]
        self._files: dict[Path, h5py.File] = {}
        self._pid = os.getpid()

    @property
    def action_scale(self) -> dict[str, Any]:
        """How labels were normalised: divide by max_speed; multiply model outputs back."""
        return {"max_speed": self.max_speed, "axes": list(ACTION_AXES)}

    def __len__(self) -> int:
        return len(self.index)

    def _file(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # forked DataLoader worker: never reuse the parent's handles
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = h5py.File(path, "r")
        return f

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, start = self.index[i]
        episode = self.episodes[e]
        frames = read_frames_rgb(self._file(episode.path), episode, start, start + self.window_size)
        actions = episode.actions[start : start + self.window_size + self.chunk - 1] / self.max_speed
        return {
            "rgb": preprocess_frames(frames, self.image_size),  # (W, 3, S, S)
            "actions": torch.from_numpy(actions),  # (W + C - 1, 2)
            "instruction": episode.instruction,
            "episode": episode.path.name,
        }

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack a batch into upstream's contract (see module docstring)."""
        if self.tokenizer is None:
            raise RuntimeError("MobileVLAH5Dataset needs a tokenizer to collate (upstream passes the model's)")
        actions = torch.stack([s["actions"] for s in samples])  # (B, W + C - 1, 2)
        chunks = rearrange(actions.unfold(1, self.chunk, 1), "b w d c -> b w c d")  # (B, W, C, 2)
        instructions = [s["instruction"] for s in samples]
        text, text_mask = encode_prompts(self.tokenizer, instructions, self.prompt_template)
        return {
            "rgb": torch.stack([s["rgb"] for s in samples]),
            "text": text,
            "text_mask": text_mask,
            "action": actions,
            "action_chunck": chunks,
            "chunck_mask": torch.ones(chunks.shape[:3], dtype=torch.bool),
            "raw_text": instructions,
            "episode": [s["episode"] for s in samples],
            "data_source": DATA_SOURCE,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def __del__(self) -> None:
        for f in getattr(self, "_files", {}).values():
            try:
                f.close()
            except Exception:
                pass
