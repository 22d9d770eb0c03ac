"""MobileVLAH5Dataset: robot HDF5 episodes -> upstream RoboVLMs' batch contract, 2-DOF actions.

Each item is one window: `window_size` frames and the `window_size + chunk - 1` actions whose
10-step chunks are the labels. The collater yields what `BaseTrainer`-style `_process_batch`
reads: `rgb` (B, W, 3, S, S) (uint8 frames when fetched by a DataLoader: the consumer normalises
them with `transforms.normalise_batch`, as MobileVLATrainer does), `text`, `text_mask`, `action` (B, W + C - 1, 2),
`action_chunck` (B, W, C, 2), `chunck_mask` (B, W, C), `data_source`. Episodes shorter than
window + chunk train too: the label steps they lack are zero and False in `chunck_mask`, so the
loss ignores them (`window_starts`; `require_full_chunks` refuses such episodes instead).

Files are checked when the dataset is built (`skip_invalid` leaves bad ones out, else one error
lists them all); the split comes from `split_file` or the seeded `val_ratio` split; an item reads
only its window's frames, or memory-mapped pre-resized frames with `cache_dir`. A file that fails
later, in a DataLoader worker, is named in the error, or (`skip_invalid`) logged and replaced by
the next readable window.

`frame_strides` (training split only; default [1]) is a training-time aid for asynchronous
execution: the executor queries every d-th frame, so at run time the head's window holds frames d
steps apart, a spacing consecutive windows never show it. A window drawn with stride s > 1 holds
the frames `last - s * (W - 1 - i)` (frame 0 repeated before the episode) and only its newest
position carries labels (the chunk after `last`), as only the newest position is executed.
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
from robovlms_mobile.data.episode import Episode, EpisodeError
from robovlms_mobile.data.format import min_episode_frames
from robovlms_mobile.data.frames import read_frames_stored
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE, encode_prompts, validate_template
from robovlms_mobile.data.scan import check_files, find_episode_files, group_keys
from robovlms_mobile.data.split import SPLITS, split_episodes
from robovlms_mobile.data.split_file import read_split_file, relative_names, select_split
from robovlms_mobile.data.transforms import normalise_frames, resize_frames
from robovlms_mobile.task import ACTION_AXES, MAX_SPEED

# Tokenisation happens in the collater inside DataLoader workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_SOURCE = "mobile_vla_action"
DEFAULT_MAX_SPEED = MAX_SPEED
READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError)  # what h5py raises on a bad file
log = logging.getLogger("robovlms_mobile.data")


class InvalidEpisodesError(ValueError):
    """One or more episode files failed the checks; the message lists every one."""

    def __init__(self, errors: Sequence[EpisodeError]):
        self.errors = list(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} invalid episode file(s):\n{lines}")


def window_starts(num_frames: int, window_size: int, chunk: int) -> list[int]:
    """Start frame of every window of one episode (the short-episode policy, docs/data.md).

    An episode of at least window + chunk frames gives one window per start whose labels are all
    in the file; a shorter one gives a single window at frame 0, its missing future steps masked
    (`chunck_mask`); one shorter than the window starts before frame 0: the first frame repeated
    in front, its steps before the episode masked too.
    """
    full = window_size + chunk
    if num_frames >= full:
        return list(range(num_frames - full + 1))
    return [min(0, num_frames - window_size)]


def scan(data_dir: str | Path | Sequence[str | Path], *, min_length: int, max_speed: float, pattern: str = "*.h5",
         skip_invalid: bool = False) -> tuple[list[Path], list[Episode], list[EpisodeError]]:
    """(every file found, the valid episodes, the errors of the others); raises InvalidEpisodesError listing
    every bad file, unless `skip_invalid` (then one warning gives their count and problems)."""
    paths = find_episode_files(data_dir, pattern)
    checks = check_files(paths, min_length=min_length, max_speed=max_speed)
    errors = [c.error() for c in checks if c.errors]
    if errors and not skip_invalid:
        raise InvalidEpisodesError(errors)
    duplicates = [c for c in checks if any(p.code == "duplicate" for p in c.problems)]
    if duplicates:
        log.warning("%d duplicate episode file(s) (same frames, actions and instruction as an earlier file) counted once: %s",
                    len(duplicates), ", ".join(str(c.path) for c in duplicates[:10]) + (" ..." if len(duplicates) > 10 else ""))
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
        indices = split_episodes([e.path.name for e in episodes], [e.side for e in episodes], val_ratio=val_ratio,
                                 seed=split_seed, groups=group_keys(episodes))[split]
        chosen = [episodes[i] for i in indices]
    if not chosen:
        raise ValueError(f"split {split!r} of {data_dir} is empty ({len(episodes)} valid episodes, "
                         + (f"split_file={split_file})" if split_file else f"val_ratio={val_ratio})"))
    return chosen, invalid


def stack_rgb(samples: Sequence[dict[str, Any]]) -> torch.Tensor:
    """A batch's `rgb` (B, W, 3, S, S): items' uint8 `frames` stacked as they are, or items' normalised float `rgb`.

    uint8 frames stay uint8 (a channels-first view of (B, W, S, S, 3) memory, no copy): the consumer
    normalises the batch once with `normalise_batch`, after moving it to its device.
    """
    if "rgb" in samples[0]:
        return torch.stack([s["rgb"] for s in samples])
    frames = _batch_tensor((len(samples), *np.shape(samples[0]["frames"])), torch.uint8)  # (B, W, S, S, 3)
    torch.stack([torch.as_tensor(s["frames"]) for s in samples], out=frames)
    return rearrange(frames, "b w h w2 c -> b w c h w2")  # a view


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor; inside a DataLoader worker, in shared memory (as default_collate does) so it is sent without a copy."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    proto = torch.empty(0, dtype=dtype)
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
        rgb_pad: int = -1,
        require_full_chunks: bool = False,
        frame_strides: Sequence[int] = (1,),
        episode_pattern: str | None = None,  # the original configs' name for `pattern`
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
        # mirror / random shift / colour jitter (data/augment.py): the training split only
        self.augment = (AugmentSettings.from_kwargs({**kwargs, "rgb_pad": max(int(rgb_pad), 0)})
                        if is_training and split == "train" else AugmentSettings())

        if not isinstance(require_full_chunks, bool):
            raise ValueError(f"dataset key 'require_full_chunks': expected true or false, got {require_full_chunks!r}")
        self.require_full_chunks = require_full_chunks
        if (isinstance(frame_strides, (str, bytes)) or not isinstance(frame_strides, Sequence) or not frame_strides
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in frame_strides)):
            raise ValueError(f"dataset key 'frame_strides': {frame_strides!r}; expected a non-empty list of integers in 1..64")
        # the spacing of frames in a window is a training aid: validation and evaluation windows stay consecutive
        self.frame_strides = tuple(frame_strides) if is_training and split == "train" else (1,)
        if episode_pattern is not None:
            pattern = episode_pattern
        self.episodes, self.invalid_files = select_episodes(
            data_dir, split=split, min_length=min_episode_frames(self.window_size, self.chunk, require_full_chunks),
            max_speed=self.max_speed, pattern=pattern, skip_invalid=self.skip_invalid, split_file=split_file,
            val_ratio=val_ratio, split_seed=split_seed)
        self.index = [(e, start) for e, ep in enumerate(self.episodes)
                      for start in window_starts(ep.num_frames, self.window_size, self.chunk)]
        short = sum(ep.num_frames < self.window_size + self.chunk for ep in self.episodes)
        if short:
            log.info("%d of %d episode(s) are shorter than window + chunk = %d: their missing future steps are masked "
                     "out of the loss (dataset key require_full_chunks: true refuses them)", short, len(self.episodes),
                     self.window_size + self.chunk)
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

    def _frames(self, episode: Episode, start: int, step: int = 1) -> np.ndarray:
        """Resized uint8 RGB frames (W, S, S, 3) at start, start + step, ...: from the cache, else only these frames
        from the file. Positions before frame 0 repeat frame 0.
        """
        before = -(start // step) if start < 0 else 0  # positions before frame 0
        first, stop = start + before * step, start + self.window_size * step - step + 1
        frames = self._read(episode, first, stop, step)
        if before:
            head = frames[:1] if first == 0 else self._read(episode, 0, 1, 1)
            frames = np.concatenate([np.repeat(head, before, 0), frames])
        return frames

    def _read(self, episode: Episode, first: int, stop: int, step: int) -> np.ndarray:
        """Resized frames first, first + step, ... < stop, all inside the episode."""
        if self.cache is not None:
            return self.cache.frames(episode, first, stop, step)
        expected = len(range(first, stop, step))
        try:
            stored, bgr = read_frames_stored(self._file(episode.path), episode, first, stop, min_size=self.image_size,
                                             step=step)
            if len(stored) != expected:
                raise ValueError(f"read {len(stored)} frames, expected {expected}")
        except READ_ERRORS:
            f = self._files.pop(episode.path, None)
            if f is not None:
                f.close()
            raise
        return resize_frames(stored, self.image_size, bgr=bgr).numpy()

    def _item(self, i: int) -> dict[str, Any]:
        e, start = self.index[i]
        episode = self.episodes[e]
        if episode.path in self._bad:
            raise EpisodeError(episode.path, self._bad[episode.path])
        strides = self.frame_strides
        stride = strides[0] if len(strides) == 1 else strides[int(torch.randint(len(strides), ()))]  # as augment: torch RNG
        last = start + self.window_size - 1
        first = last - stride * (self.window_size - 1)  # stride 1: `start`
        try:
            frames = self._frames(episode, first, stride)  # (W, S, S, 3): only the window's own frames are decoded
        except READ_ERRORS as exc:
            problem = f"failed to read frames {first}:{last + 1} after the dataset was built ({type(exc).__name__}: {exc})"
            self._bad[episode.path] = problem
            raise EpisodeError(episode.path, problem) from None
        if stride == 1:
            steps = np.arange(start, start + self.window_size + self.chunk - 1)
        else:  # frames `stride` apart; labels only at the newest position: steps -1 (masked) in front of its chunk
            steps = np.concatenate([np.full(self.window_size - 1, -1), last + np.arange(self.chunk)])
        present = (steps >= 0) & (steps < episode.num_frames)  # False: before the episode or after its end
        actions = np.zeros((len(steps), len(ACTION_AXES)), np.float32)
        actions[present] = episode.actions[steps[present]] / self.max_speed
        actions, instruction = torch.from_numpy(actions), episode.instruction
        if self.augment.active:
            frames, actions, instruction = augment_window(frames, actions, instruction, self.augment)
            frames = frames.numpy()  # items carry numpy uint8 frames either way
        return {
            "frames": frames,  # (W, S, S, 3) uint8 RGB, resized
            "actions": actions,  # (W + C - 1, 2), zero where not present
            "action_mask": torch.from_numpy(present),  # (W + C - 1,) bool
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
        """What a DataLoader fetches per batch: windows with uint8 `frames`, which `collater` stacks as a uint8 `rgb`.

        A float32 window is 4x the bytes of its uint8 frames: the DataLoader moves uint8 and the
        consumer (MobileVLATrainer._process_batch, offline evaluation) normalises with `normalise_batch`.
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
        chunk_mask = torch.stack([s["action_mask"] for s in samples]).unfold(1, self.chunk, 1)  # (B, W, C): label present
        instructions = [s["instruction"] for s in samples]
        text, text_mask = encode_prompts(self.tokenizer, instructions, self.prompt_template)
        return {
            "rgb": stack_rgb(samples),  # (B, W, 3, S, S) uint8 from __getitems__ (normalise_batch), float from items
            "text": text,
            "text_mask": text_mask,
            "action": actions,
            "action_chunck": chunks,
            "chunck_mask": chunk_mask,
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
