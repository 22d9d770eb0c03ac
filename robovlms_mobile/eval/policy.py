"""The `Policy` protocol the evaluators drive, and its implementations.

- `InProcessPolicy`: a MobileVLATrainer module in this process (trained checkpoint or untrained)
  through the runtime's streaming policy, with the checkpoint's prompt template and action scale.
- `HttpPolicy`: a policy server (`robovlms-mobile serve`) over HTTP.
- `BlankInstruction`: any policy with the instruction replaced by "" (ablation).
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from robovlms_mobile.checkpoint_meta import CheckpointMetadata
from robovlms_mobile.runtime.chunking import StrategySpec
from robovlms_mobile.runtime.policy import MobileVLAPolicy


@runtime_checkable
class Policy(Protocol):
    """A driving policy: one camera frame and the instruction in, one velocity command out."""

    def reset(self) -> None:
        """Start a new episode (forget frame history)."""

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame + instruction -> (2,) [linear_x, linear_y] in m/s."""


class InProcessPolicy:
    """A MobileVLATrainer module driven through the runtime's streaming `MobileVLAPolicy`.

    Only the newest frame goes through the VLM; the LSTM head keeps the episode's window. It
    re-plans every `chunk_steps` frames and executes that chunk's steps in between (`ChunkReuse`);
    as when serving, frames between re-plans do not enter the window.
    """

    def __init__(self, module: Any, meta: CheckpointMetadata, chunk_steps: int = 1):
        if not 1 <= chunk_steps <= meta.chunk:
            raise ValueError(f"chunk_steps must be in [1, {meta.chunk}], got {chunk_steps}")
        self.module, self.meta, self.chunk_steps = module.eval(), meta, chunk_steps
        self.runtime = MobileVLAPolicy(module, max_speed=meta.max_speed, prompt_template=meta.prompt_template,
                                       strategy=StrategySpec("reuse", reuse_steps=chunk_steps), metadata=meta)
        self.episode = self.runtime.new_episode()

    @classmethod
    def from_checkpoint(cls, path: str | Path, base_model_dir: str | Path | None = None, chunk_steps: int = 1) -> InProcessPolicy:
        """Load a plugin checkpoint through the one guarded loader (backbone from `base_model_dir` or the one it names)."""
        from robovlms_mobile.runtime.loader import load_for_inference

        module, meta = load_for_inference(path, base_model_dir)
        return cls(module, meta, chunk_steps)

    @classmethod
    def untrained(cls, config: dict[str, Any], chunk_steps: int = 1) -> InProcessPolicy:
        """The same architecture with freshly initialised trainable weights (a reference point)."""
        from robovlms_mobile.runtime.loader import build_module

        return cls(build_module(config), CheckpointMetadata.from_config(config), chunk_steps)

    def reset(self) -> None:
        self.episode.clear()

    def predict_chunk(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        """(chunk, 2) velocities in m/s with `frame_rgb` as the newest frame of the window."""
        return self.runtime.predict(frame_rgb, instruction, self.episode)

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        strategy = self.episode.strategy
        if strategy.needs_query():
            strategy.update(self.predict_chunk(frame_rgb, instruction))
        return strategy.action()


class BlankInstruction:
    """Wraps a policy and gives it an empty instruction: what it does without language."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        return self.policy.act(frame_rgb, "")


def encode_png_b64(frame_rgb: np.ndarray) -> str:
    """RGB uint8 frame -> base64 PNG text."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame_rgb, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class HttpPolicy:
    """Client of the policy server (`robovlms-mobile serve`): POST {url}/reset, then {url}/act per frame.

    /reset {"episode_id"} starts the episode; /act {"image": base64 PNG (RGB), "instruction",
    "episode_id"} runs one control tick in that episode's window and replies {"velocity": [vx, vy], ...}.
    """

    def __init__(self, url: str, timeout: float = 30.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.episode_id = uuid.uuid4().hex

    def _post(self, route: str, payload: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.url}{route}", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"policy server {self.url}{route}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(f"policy server {self.url}{route} unreachable: {exc.reason}") from None
        return json.loads(body) if body else {}

    def reset(self) -> None:
        self.episode_id = uuid.uuid4().hex
        self._post("/reset", {"episode_id": self.episode_id})

    def act(self, frame_rgb: np.ndarray, instruction: str) -> np.ndarray:
        reply = self._post("/act", {"image": encode_png_b64(frame_rgb), "instruction": instruction,
                                    "episode_id": self.episode_id})
        v = np.asarray(reply.get("velocity", ()), np.float64)
        if v.shape != (2,):
            raise RuntimeError(f"policy server {self.url}/act: expected 'velocity' [vx, vy] in the reply, got {sorted(reply)}")
        return v
