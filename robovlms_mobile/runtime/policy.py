"""MobileVLAPolicy: camera frame + instruction -> un-normalised velocities, one episode window at a time.

With history_type "post" (the only one the plugin trains) every frame goes through Kosmos-2 on
its own and only the LSTM head looks across the window. So streaming inference runs the VLM on
the newest frame only and the head re-runs its LSTM over the last `window_size` action-token
features from a zero state, which is what the training forward computes at the same position
of a window (tests/runtime/test_policy.py checks it). Each `EpisodeState` owns its feature
window, tokenised prompt and chunk strategy; the model is shared and calls are serialised.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
from robovlms_mobile.data.prompt import encode_prompts, format_prompt
from robovlms_mobile.data.transforms import preprocess_frames
from robovlms_mobile.runtime.chunking import ChunkStrategy, StrategySpec
from robovlms_mobile.runtime.precision import precision_of
from robovlms_mobile.task import ACTION_AXES, check_instruction

__all__ = ["EpisodeState", "MobileVLAPolicy", "TickResult", "check_frame"]


@dataclass
class EpisodeState:
    """What one episode carries between ticks: head feature window, prompt, chunk strategy."""

    history: deque  # the head's stream: last window_size action-token features, each (1, 1, n * D)
    strategy: ChunkStrategy
    instruction: str | None = None
    text: tuple[torch.Tensor, torch.Tensor] | None = None  # (input_ids (1, L), attention_mask (1, L))
    chunk: np.ndarray | None = None  # newest model chunk (n, 2), m/s
    tick: int = 0
    queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        """Start over: empty window, fresh strategy, no prompt."""
        self.history.clear()
        self.strategy.reset()
        self.instruction, self.text, self.chunk = None, None, None
        self.tick = self.queries = 0


@dataclass(frozen=True)
class TickResult:
    """One control tick: the velocity to execute (m/s) and where it came from."""

    velocity: np.ndarray  # (2,) [linear_x, linear_y]
    chunk: np.ndarray  # (n, 2), the newest model chunk
    queried: bool  # whether this tick ran the model
    model_ms: float  # time in the model (0 when the chunk was reused)
    tick: int  # index of this tick in the episode
    window: int  # frames in the head's window after this tick
    committed_used: int = 0  # committed actions the head was told on this tick's query


class MobileVLAPolicy:
    """Frames + instruction -> (chunk, 2) velocities in m/s, through a trained plugin checkpoint."""

    def __init__(self, module: Any, *, max_speed: float, prompt_template: str, strategy: StrategySpec | None = None,
                 source: str = "<module>", metadata: CheckpointMetadata | None = None):
        self.module = module
        self.metadata = metadata
        self.model = module.model
        self.configs = module.configs
        self.max_speed = float(max_speed)
        self.prompt_template = prompt_template
        self.strategy = strategy or StrategySpec()
        self.source = source
        self.tokenizer = self.model.tokenizer
        self.window_size = int(self.configs["window_size"])
        self.chunk_size = int(self.configs["fwd_pred_next_n"])
        self.image_size = int(self.configs["image_size"])
        self.axes = list(ACTION_AXES)
        self.strategy.build(self.chunk_size)  # fail now on a bad strategy, not at the first tick
        self.head = self.model.act_head
        # one lock per model, not per policy: policies sharing a module share its head's history slot
        if not hasattr(module, "_mobile_vla_inference_lock"):
            module._mobile_vla_inference_lock = threading.Lock()
        self._lock = module._mobile_vla_inference_lock
        self._default = self.new_episode()

    @classmethod
    def from_checkpoint(cls, path: str | Path, base_model_dir: str | Path | None = None, *,
                        strategy: StrategySpec | None = None, device: str = "cpu", dtype: str = "fp32") -> "MobileVLAPolicy":
        """Load a plugin checkpoint through the one guarded loader; the backbone comes from `base_model_dir`.

        `dtype`: the inference precision, fp32, bf16 or int8 (CPU only): see `runtime/precision.py`.
        """
        from robovlms_mobile.runtime.loader import load_for_inference

        module, meta = load_for_inference(path, base_model_dir, device=device, dtype=dtype)
        return cls(module, max_speed=meta.max_speed, prompt_template=meta.prompt_template, strategy=strategy,
                   source=str(path), metadata=meta)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.module.device

    @property
    def dtype(self) -> str:
        """The model's inference precision: fp32, bf16 or int8."""
        return precision_of(self.module)

    def new_episode(self, history_frames: int | None = None) -> EpisodeState:
        """Fresh per-episode state (window of at most `history_frames` frames, default the window; prompt; strategy)."""
        return EpisodeState(history=self.head.new_stream(history_frames), strategy=self.strategy.build(self.chunk_size))

    def reset(self, episode: EpisodeState | None = None) -> None:
        """Start a new episode (the built-in one when `episode` is None)."""
        (episode or self._default).clear()

    def prompt(self, instruction: str) -> str:
        """The exact text the model reads, in the training template."""
        return format_prompt(instruction, self.prompt_template)

    @property
    def committed_steps(self) -> int:
        """How many committed actions the head can be told (act_head.committed_steps; 0: none)."""
        return int(getattr(self.head, "committed_steps", 0))

    def predict(self, frame_rgb: np.ndarray, instruction: str, episode: EpisodeState | None = None,
                committed: np.ndarray | None = None) -> np.ndarray:
        """One model query on the newest frame -> (chunk, 2) velocities in m/s; the frame joins the window.

        Unlike `step`, an empty instruction is allowed (the blank-instruction ablation reads the bare template).
        `committed`: (k, 2) m/s actions that run from this frame on whatever the answer is (asynchronous
        execution); a head trained with `committed_steps` conditions on the first of them.
        """
        episode = episode or self._default
        with episode.lock:
            return self._query(episode, frame_rgb, self._check_instruction(instruction, allow_empty=True), committed)[0]

    def step(self, frame_rgb: np.ndarray, instruction: str, episode: EpisodeState | None = None, *,
             allow_empty: bool = False, committed: np.ndarray | None = None) -> TickResult:
        """One control tick: query the model if the chunk strategy asks for it, return this tick's velocity.

        `allow_empty`: accept "" (the blank-instruction ablation reads the bare template); clients never send it.
        `committed`: as in `predict`, used when this tick queries.
        """
        episode = episode or self._default
        with episode.lock:
            instruction = self._check_instruction(instruction, allow_empty=allow_empty)
            if instruction != episode.instruction:
                episode.clear()  # training never mixes instructions within a window
            queried, model_ms, used = episode.strategy.needs_query(), 0.0, 0
            if queried:
                prefix = self._prefix(committed)  # checked before the model runs
                used = 0 if prefix is None else len(prefix)
                chunk, model_ms = self._query(episode, frame_rgb, instruction, committed)
                episode.strategy.update(chunk)
            else:
                check_frame(frame_rgb)
            velocity = episode.strategy.action()
            episode.tick += 1
            return TickResult(velocity=velocity, chunk=episode.chunk, queried=queried, model_ms=model_ms,
                              tick=episode.tick - 1, window=len(episode.history), committed_used=used)

    # ---- internals -----------------------------------------------------------------------
    def _check_instruction(self, instruction: str, allow_empty: bool = False) -> str:
        return check_instruction(instruction, allow_empty=allow_empty)

    def _prefix(self, committed: np.ndarray | None) -> torch.Tensor | None:
        """Committed actions (k, 2) m/s -> the head's normalised prefix (<= committed_steps, 2), or None."""
        if committed is None or not self.committed_steps:
            return None
        actions = np.asarray(committed, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != len(self.axes) or not np.isfinite(actions).all():
            raise ValueError(f"committed actions must be finite (k, {len(self.axes)}) m/s, got shape {actions.shape}")
        if not len(actions):
            return None
        scaled = np.clip(actions[: self.committed_steps] / self.max_speed, -1.0, 1.0)
        return torch.as_tensor(scaled, dtype=torch.float32, device=self.device)

    def _query(self, episode: EpisodeState, frame_rgb: np.ndarray, instruction: str,
               committed: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Run the model on one (checked) instruction and frame inside `episode`; returns ((n, 2) m/s, ms)."""
        frame = check_frame(frame_rgb)
        prefix = self._prefix(committed)
        start = time.perf_counter()
        if episode.text is None or episode.instruction != instruction:
            if episode.instruction is not None:
                episode.history.clear()
            episode.instruction = instruction
            episode.text = encode_prompts(self.tokenizer, [instruction], self.prompt_template)
        ids, mask = (t.to(self.device) for t in episode.text)
        pixels = preprocess_frames(frame[None], self.image_size).to(self.device)  # (1, 3, S, S)
        vision_x = rearrange(pixels, "(b t) c h w -> b t c h w", b=1)  # (1, 1, 3, S, S)
        # streaming only for this call: the same module may also run whole windows (training, offline eval)
        with self._lock, torch.inference_mode(), self.head.streaming(episode.history), self.head.committed(prefix):
            # the head appends this frame to the window
            velocities, _ = self.model.forward_continuous(vision_x, ids, attention_mask=mask, mode="inference")
        chunk = velocities[0, -1].float().cpu().numpy().astype(np.float64) * self.max_speed  # (n, 2) m/s
        episode.chunk = chunk
        episode.queries += 1
        return chunk, (time.perf_counter() - start) * 1e3

    def describe(self) -> dict[str, Any]:
        """What a client needs to know about this policy (JSON-friendly)."""
        return {"checkpoint": Path(self.source).name, "window_size": self.window_size, "chunk_size": self.chunk_size,
                "image_size": self.image_size, "axes": self.axes, "max_speed": self.max_speed,
                "prompt_template": self.prompt_template, "strategy": self.strategy.describe(), "device": str(self.device),
                "dtype": self.dtype, "committed_steps": self.committed_steps,
                "instructions": list(self.metadata.instructions) if self.metadata and self.metadata.instructions else None}


def check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame, or ValueError saying what is wrong."""
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if min(frame.shape[:2]) < 1:
        raise ValueError(f"frame is empty: {frame.shape}")
    return frame
