"""MobileVLAH5Dataset: robot HDF5 episodes -> upstream RoboVLMs' batch contract, 2-DOF actions.

Each item is one window: `window_size` frames and the `window_size + chunk - 1` actions whose
10-step chunks are the labels. The collater yields what `BaseTrainer`-style `_process_batch`
reads: `rgb` (B, W, 3, S, S), `text`, `text_mask`, `action` (B, W + C - 1, 2),
`action_chunck` (B, W, C, 2), `chunck_mask` (B, W, C), `data_source`.

Files are checked when the dataset is built (`skip_invalid` leaves bad ones out, else one error
lists them all); the split comes from `split_file` or the seeded `val_ratio` split; an item reads
only its window's frames, or memory-mapped pre-resized frames with `cache_dir`. A file that fails
later, in a DataLoader worker, is named in the error, or (`skip_invalid`) logged and replaced by
the next readable window.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset, get_worker_info

from robovlms_mobile.data.augment import AugmentSettings, augment_window
from robovlms_mobile.data.cache import FrameCache
from robovlms_mobile.data.episode import ACTION_AXES, Episode, EpisodeError, read_frames_stored
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE, encode_prompts, validate_template
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.split import SPLITS, split_episodes
from robovlms_mobile.data.split_file import read_split_file, relative_names, select_split
from robovlms_mobile.data.transforms import normalise_frames, resize_frames

# Tokenisation happens in the collater inside DataLoader workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_SOURCE = "mobile_vla_action"
DEFAULT_MAX_SPEED = 1.15
READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError)  # what h5py raises on a bad file
log = logging.getLogger("robovlms_mobile.data")


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
                  pattern: str = "*.h5", skip_invalid: bool = False) -> list[Episode]:
    """Load and check every episode file; raises InvalidEpisodesError listing all bad ones.

    With `skip_invalid`, bad files are left out instead, with one warning giving their count and problems.
    """
    return scan(data_dir, min_length=min_length, max_speed=max_speed, pattern=pattern, skip_invalid=skip_invalid)[1]


def scan(data_dir: str | Path | Sequence[str | Path], *, min_length: int, max_speed: float, pattern: str = "*.h5",
         skip_invalid: bool = False) -> tuple[list[Path], list[Episode], list[EpisodeError]]:
    """(every file found, the valid episodes, the errors of the others); see `scan_episodes`."""
    paths = find_episode_files(data_dir, pattern)
    checks = check_files(paths, min_length=min_length, max_speed=max_speed)
    errors = [c.error() for c in checks if c.errors]
    if errors and not skip_invalid:
        raise InvalidEpisodesError(errors)
    if errors:
        log.warning("skip_invalid: skipping %d invalid episode file(s) of %d:\n%s", len(errors), len(paths),
                    "\n".join(f"  {e}" for e in errors))
    return paths, [c.episode for c in checks if c.episode is not None], errors


def select_episodes(data_dir: str | Path | Sequence[str | Path], *, split: str, min_length: int, max_speed: float,
                    pattern: str = "*.h5", skip_invalid: bool = False, split_file: str | None = None,
                    val_ratio: float = 0.1, split_seed: int = 0) -> tuple[list[Episode], list[EpisodeError]]:
    """The checked episodes of one split (from `split_file`, else the seeded val_ratio split) and the skipped files."""
    found, episodes, invalid = scan(data_dir, min_length=min_length, max_speed=max_speed, pattern=pattern,
                                    skip_invalid=skip_invalid)
    if split_file:
        roots = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
        chosen = select_split(read_split_file(split_file), split, episodes, relative_names([e.path for e in episodes], roots),
                              set(relative_names(found, roots)), source=split_file)
    else:
        indices = split_episodes([e.path.name for e in episodes], [e.side for e in episodes], val_ratio=val_ratio, seed=split_seed)[split]
        chosen = [episodes[i] for i in indices]
    if not chosen:
        raise ValueError(f"split {split!r} of {data_dir} is empty ({len(episodes)} valid episodes, "
                         + (f"split_file={split_file})" if split_file else f"val_ratio={val_ratio})"))
    return chosen, invalid


def stack_rgb(samples: Sequence[dict[str, Any]]) -> torch.Tensor:
    """(B, W, 3, S, S) float32 from items' `rgb` (normalised) or `frames` (uint8, normalised here, in place)."""
    if "rgb" in samples[0]:
        return torch.stack([s["rgb"] for s in samples])
    frames = torch.stack([torch.as_tensor(s["frames"]) for s in samples])  # (B, W, S, S, 3) uint8
    b, w, h, w2, c = frames.shape
    out = _batch_tensor((b, w, c, h, w2))
    normalise_frames(rearrange(frames, "b w h w2 c -> (b w) h w2 c"), out=out.view(b * w, c, h, w2))
    return out


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float32 tensor; inside a DataLoader worker, in shared memory (as default_collate does) so it is sent without a copy."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    proto = torch.empty(0, dtype=torch.float32)
    return proto.new(proto._typed_storage()._new_shared(math.prod(shape))).view(shape)


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
        skip_invalid: bool = False,
        split_file: str | None = None,
        cache_dir: str | None = None,
        is_training: bool = True,
        **kwargs: Any,  # the rest of upstream GRDataModule's kwargs (image_fn, discrete, ...)
    ):
        if split is None:
            split = "train" if is_training else "val"
        allowed = (*SPLITS, "test") if split_file else SPLITS
        if split not in allowed:
            hint = "" if split_file else " ('test' needs a split_file)"
            raise ValueError(f"dataset key 'split': {split!r}; expected one of {allowed}{hint}")
        if max_speed <= 0:
            raise ValueError(f"dataset key 'max_speed' must be > 0, got {max_speed}")
        self.tokenizer = tokenizer
        self.window_size, self.chunk = int(window_size), int(fwd_pred_next_n)
        self.image_size = int(image_size)
        self.max_speed = float(max_speed)
        self.prompt_template = validate_template(prompt_template)
        self.split = split
        self.skip_invalid = bool(skip_invalid)
        self.augment = AugmentSettings.from_kwargs(kwargs) if split == "train" else AugmentSettings()  # data/augment.py

        self.episodes, self.invalid_files = select_episodes(
            data_dir, split=split, min_length=self.window_size + self.chunk, max_speed=self.max_speed, pattern=pattern,
            skip_invalid=self.skip_invalid, split_file=split_file, val_ratio=val_ratio, split_seed=split_seed)
        span = self.window_size + self.chunk
        self.index = [(e, start) for e, ep in enumerate(self.episodes) for start in range(ep.num_frames - span + 1)]
        self.cache = None
        if cache_dir:
            self.cache = FrameCache(cache_dir, self.image_size)
            self.cache.build(self.episodes)
        self.skipped_windows = 0  # windows substituted because their file failed mid-epoch (this process)
        self._bad: dict[Path, str] = {}  # files that failed in this process -> problem
        self._reported: set[Path] = set()
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

    def _frames(self, episode: Episode, start: int) -> np.ndarray:
        """Resized uint8 RGB frames (W, S, S, 3) of one window: from the cache, else only these frames from the file."""
        stop = start + self.window_size
        if self.cache is not None:
            return self.cache.frames(episode, start, stop)
        try:
            frames, bgr = read_frames_stored(self._file(episode.path), episode, start, stop)
            if frames.shape != (self.window_size, *episode.frame_shape):
                raise ValueError(f"read frames of shape {frames.shape}, expected {(self.window_size, *episode.frame_shape)}")
        except READ_ERRORS:
            f = self._files.pop(episode.path, None)
            if f is not None:
                f.close()
            raise
        return resize_frames(frames, self.image_size, bgr=bgr).numpy()

    def _item(self, i: int) -> dict[str, Any]:
        e, start = self.index[i]
        episode = self.episodes[e]
        if episode.path in self._bad:
            raise EpisodeError(episode.path, self._bad[episode.path])
        try:
            frames = self._frames(episode, start)
        except READ_ERRORS as exc:
            problem = f"failed to read frames {start}:{start + self.window_size} after the dataset was built ({type(exc).__name__}: {exc})"
            self._bad[episode.path] = problem
            raise EpisodeError(episode.path, problem) from None
        actions = torch.from_numpy(episode.actions[start : start + self.window_size + self.chunk - 1] / self.max_speed)
        instruction = episode.instruction
        if self.augment.active:  # mirror / random shift / colour jitter (training split only)
            frames, actions, instruction = augment_window(frames, actions, instruction, self.augment)
        return {
            "frames": frames,  # (W, S, S, 3) uint8 RGB, resized
            "actions": actions,  # (W + C - 1, 2)
            "instruction": instruction,
            "episode": episode.path.name,
            "skipped": None,
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One window with normalised frames: `rgb` (W, 3, S, S) float32, `actions` (W + C - 1, 2)."""
        item = self._window(i)
        item["rgb"] = normalise_frames(item.pop("frames"))
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """What a DataLoader fetches per batch: windows with uint8 `frames`, normalised by `collater` into the batch.

        A float32 window is 4x the bytes of its uint8 frames; normalising once, straight into the
        batch tensor (in shared memory inside a worker), keeps a cached window cheap to deliver.
        """
        return [self._window(i) for i in indices]

    def _window(self, i: int) -> dict[str, Any]:
        try:
            return self._item(i)
        except EpisodeError as exc:
            if not self.skip_invalid:
                raise
            first = exc
        # skip_invalid: the next window (in index order) whose file still reads; the same for every worker
        for k in range(1, len(self.index)):
            j = (i + k) % len(self.index)
            if self.episodes[self.index[j][0]].path in self._bad:
                continue
            try:
                item = self._item(j)
            except EpisodeError as exc:
                self._reported.add(exc.path)
                log.warning("skip_invalid: %s", exc)
                continue
            self.skipped_windows += 1
            level = logging.DEBUG if first.path in self._reported else logging.WARNING  # once per file and process
            self._reported.add(first.path)
            log.log(level, "skip_invalid: window %d replaced by window %d (%d window(s) skipped in process %d): %s",
                    i, j, self.skipped_windows, os.getpid(), first)
            item["skipped"] = str(first)
            return item
        raise InvalidEpisodesError([first])

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack a batch into upstream's contract (see module docstring)."""
        if self.tokenizer is None:
            raise RuntimeError("MobileVLAH5Dataset needs a tokenizer to collate (upstream passes the model's)")
        actions = torch.stack([s["actions"] for s in samples])  # (B, W + C - 1, 2)
        chunks = rearrange(actions.unfold(1, self.chunk, 1), "b w d c -> b w c d")  # (B, W, C, 2)
        instructions = [s["instruction"] for s in samples]
        text, text_mask = encode_prompts(self.tokenizer, instructions, self.prompt_template)
        return {
            "rgb": stack_rgb(samples),  # (B, W, 3, S, S) float32
            "text": text,
            "text_mask": text_mask,
            "action": actions,
            "action_chunck": chunks,
            "chunck_mask": torch.ones(chunks.shape[:3], dtype=torch.bool),
            "raw_text": instructions,
            "episode": [s["episode"] for s in samples],
            "skipped": [s["skipped"] for s in samples if s.get("skipped")],  # bad windows replaced in this batch
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
