"""The one adapter from `MobileVLAPolicy` to the `Policy` protocol (runtime/protocol.py), and ablations.

- `InProcessPolicy`: a MobileVLATrainer module in this process (trained checkpoint or untrained)
  through the runtime's streaming policy, with the checkpoint's prompt template and action scale;
  used by the evaluators and the ROS bridge alike.
- a policy server over HTTP: `robovlms_mobile.runtime.client.RemotePolicy` (native or original API).
- `BlankInstruction`: any policy with the instruction replaced by "" (ablation).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
from robovlms_mobile.runtime.chunking import StrategySpec
from robovlms_mobile.runtime.policy import MobileVLAPolicy, TickResult
from robovlms_mobile.runtime.protocol import Frame, Policy


def to_rgb(frame: Frame) -> np.ndarray:
    """RGB array as is; JPEG/PNG bytes (e.g. a ROS CompressedImage) decoded."""
    if isinstance(frame, (bytes, bytearray)):
        from PIL import Image

        with Image.open(io.BytesIO(bytes(frame)), formats=("JPEG", "PNG")) as img:
            return np.array(img.convert("RGB"))
    return frame


class InProcessPolicy:
    """A MobileVLATrainer module driven through the runtime's streaming `MobileVLAPolicy`.

    Only the newest frame goes through the VLM; the LSTM head keeps the episode's window. It
    re-plans every `chunk_steps` frames and executes that chunk's steps in between (`ChunkReuse`);
    as when serving, frames between re-plans do not enter the window.
    """

    def __init__(self, module: Any, meta: CheckpointMetadata, chunk_steps: int = 1, history_frames: int | None = None):
        if not 1 <= chunk_steps <= meta.chunk:
            raise ValueError(f"chunk_steps must be in [1, {meta.chunk}], got {chunk_steps}")
        self.chunk_steps = chunk_steps
        self._attach(MobileVLAPolicy(module.eval(), max_speed=meta.max_speed, prompt_template=meta.prompt_template,
                                     strategy=StrategySpec("reuse", reuse_steps=chunk_steps), metadata=meta),
                     history_frames)

    @classmethod
    def wrap(cls, runtime: MobileVLAPolicy) -> InProcessPolicy:
        """An already built `MobileVLAPolicy` (its own chunk strategy, e.g. from `ros-bridge` flags) as a `Policy`."""
        policy = cls.__new__(cls)
        policy.chunk_steps = None
        policy._attach(runtime)
        return policy

    def _attach(self, runtime: MobileVLAPolicy, history_frames: int | None = None) -> None:
        self.runtime, self.module, self.meta = runtime, runtime.module, runtime.metadata
        self.episode = runtime.new_episode(history_frames)  # frames the head's window keeps (default: the window)
        self.last: TickResult | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, base_model_dir: str | Path | None = None, chunk_steps: int = 1,
                        dtype: str = "fp32", history_frames: int | None = None) -> InProcessPolicy:
        """Load a plugin checkpoint through the one guarded loader (backbone from `base_model_dir` or the one it names)."""
        from robovlms_mobile.runtime.loader import load_for_inference

        module, meta = load_for_inference(path, base_model_dir, dtype=dtype)
        return cls(module, meta, chunk_steps, history_frames)

    @classmethod
    def untrained(cls, config: dict[str, Any], chunk_steps: int = 1) -> InProcessPolicy:
        """The same architecture with freshly initialised trainable weights (a reference point)."""
        from robovlms_mobile.runtime.loader import build_module

        return cls(build_module(config), CheckpointMetadata.from_config(config), chunk_steps)

    def reset(self) -> None:
        self.episode.clear()

    @property
    def committed_steps(self) -> int:
        """How many committed actions the checkpoint's head takes (0: it was trained without them)."""
        return self.runtime.committed_steps

    def predict_chunk(self, frame: Frame, instruction: str, committed: np.ndarray | None = None) -> np.ndarray:
        """One model query: (chunk, 2) velocities in m/s with `frame` as the newest frame of the window.

        The chunk source of asynchronous execution (eval/execution.py, ros/controller.py), as
        `RemotePolicy.predict_chunk` is over the wire; `committed` (k, 2) m/s: the actions that run
        from this frame on while the query is out.
        """
        return self.runtime.predict(to_rgb(frame), instruction, self.episode, committed)

    def act(self, frame: Frame, instruction: str) -> np.ndarray:
        """One control tick through the runtime's chunk strategy; `last` keeps its TickResult."""
        self.last = self.runtime.step(to_rgb(frame), instruction, self.episode, allow_empty=True)
        return self.last.velocity


class BlankInstruction:
    """Wraps a policy and gives it an empty instruction: what it does without language."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        return self.policy.act(frame_rgb, "")
