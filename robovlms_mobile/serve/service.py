"""One server's state: the policy, its limits and key, episodes, the model thread (what the routes share)."""

from __future__ import annotations

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from robovlms_mobile.data.decode import ImageLimits
from robovlms_mobile.runtime.policy import EpisodeState, MobileVLAPolicy, TickResult
from robovlms_mobile.serve.episodes import EpisodeStore
from robovlms_mobile.serve.errors import ApiError
from robovlms_mobile.serve.images import decode_image
from robovlms_mobile.serve.instructions import InstructionBook
from robovlms_mobile.task import MAX_INSTRUCTION_CHARS

# the original schema's strategy names for ours; a request's `strategy` is reported back, the server's own applies
ORIGINAL_STRATEGY = {"receding": "receding_horizon", "reuse": "chunk_reuse", "ensemble": "ensemble"}


@dataclass(frozen=True)
class ServerSettings:
    """Limits and access control of one server."""

    api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    image: ImageLimits = field(default_factory=ImageLimits)
    max_episodes: int = 64

    def public(self) -> dict[str, Any]:
        """The limits a client may know (never the key)."""
        return {"max_body_bytes": self.max_body_bytes, "max_episodes": self.max_episodes, **asdict(self.image),
                "max_instruction_chars": MAX_INSTRUCTION_CHARS}


def finite_or_500(result: TickResult) -> None:
    """ApiError 500 when the tick's velocity or chunk is not finite (NaN weights, an infinite max_speed)."""
    chunk = result.chunk if result.chunk is not None else np.zeros((0, 2))
    if not (np.isfinite(result.velocity).all() and np.isfinite(chunk).all()):
        raise ApiError(500, "non_finite_action", f"model produced non-finite action {np.asarray(result.velocity).tolist()}: "
                                                 f"the checkpoint's weights or max_speed are not finite; the episode was reset")


class PolicyService:
    """The policy behind one server: access control, episodes, /predict's global history, the model thread."""

    def __init__(self, policy: MobileVLAPolicy, settings: ServerSettings, book: InstructionBook):
        self.policy, self.settings, self.book = policy, settings, book
        self.episodes: EpisodeStore[EpisodeState] = EpisodeStore(policy.new_episode, settings.max_episodes)
        self.history = policy.new_episode()  # /predict's one global history, as the original server kept
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.model_name = Path(policy.source).stem
        self.strategy_name = ORIGINAL_STRATEGY[policy.strategy.name]

    def close(self) -> None:
        """Stop the model thread after the calls in flight."""
        self.executor.shutdown(wait=True)

    def authorised(self, request: Request) -> bool:
        """Whether the request carries the server's key (always, when the server has none)."""
        if self.settings.api_key is None:
            return True
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.settings.api_key.encode())

    def require_key(self, request: Request) -> None:
        """Native API: 401 naming what is wrong with the key."""
        if self.authorised(request):
            return
        has_key = "x-api-key" in request.headers or "authorization" in request.headers
        code, detail = ("invalid_api_key", "the API key is wrong") if has_key else (
            "missing_api_key", "this server needs an API key: send it as 'X-API-Key' or 'Authorization: Bearer'")
        raise ApiError(401, code, detail, headers={"WWW-Authenticate": "Bearer"})

    def require_key_original(self, request: Request) -> None:
        """Original API: the original server's 403 for a wrong or missing key."""
        if not self.authorised(request):
            raise ApiError(403, "invalid_api_key", "Invalid API Key")

    async def run_model(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
        """Run on the model thread; returns (result, ms queued for the thread, ms running)."""
        submitted = time.perf_counter()

        def timed() -> tuple[Any, float, float]:
            started = time.perf_counter()
            result = fn(*args)
            return result, (started - submitted) * 1e3, (time.perf_counter() - started) * 1e3

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)

    async def tick(self, image: bytes, instruction: str, state: EpisodeState,
                   committed: list[list[float]] | None = None) -> tuple[TickResult, float, float]:
        """Decode, run one policy tick in `state`, refuse a non-finite result (resetting the episode)."""
        frame = await run_in_threadpool(decode_image, image, self.settings.image)
        actions = None if committed is None else np.asarray(committed, dtype=np.float64).reshape(-1, 2)
        try:
            result, queue_ms, run_ms = await self.run_model(
                lambda: self.policy.step(frame, instruction, state, committed=actions))
        except ValueError as exc:  # the policy's own input checks (all covered above; kept as a 4xx backstop)
            raise ApiError(422, "invalid_input", str(exc)) from None
        try:
            finite_or_500(result)
        except ApiError:
            await self.run_model(self.policy.reset, state)
            raise
        return result, queue_ms, run_ms
