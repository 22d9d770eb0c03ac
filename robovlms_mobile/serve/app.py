"""The policy server: `create_app(policy, settings)` -> FastAPI app with /act, /predict, /reset and /health.

Native API, episodes: `POST /reset {"episode_id"}` starts (or restarts) an episode and returns
its id (a new one when the JSON body gives none). `POST /act` with that `episode_id` runs one
control tick in the episode's own window and chunk schedule; an id that is not active (never
started, or evicted: at most `max_episodes` are kept, least recently used first) gets 404
`unknown_episode`, unless the request says `start: true`, so a client never silently drives on
a history it did not build. `/act` without `episode_id` is a one-off query with a window of one
frame. A wrong or missing key: 401.

The original robot client's API (minuum/vla `inference_server.py`, see docs/serving.md):
`POST /predict {"image": base64 JPEG, "instruction", "vlm_model"?, "strategy"?}` -> `{"action":
[linear_x, linear_y], "latency_ms", "model_name", "strategy", "source", "buffer_status", ...}` on
one global history, cleared by `POST /reset` with no body. A wrong or missing key: 403, as there.

Every reply with an action says `instruction_seen` (true / false / null when the checkpoint does
not record its training instructions). The model runs on one worker thread (calls are
serialised; the event loop keeps answering), image decoding in the thread pool. Errors:
`{"error": code, "detail": reason}`, 4xx for any malformed request, 500 `non_finite_action`
when the model's output is not finite (never a 200 with it).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from robovlms_mobile.runtime.policy import EpisodeState, MobileVLAPolicy, TickResult
from robovlms_mobile.serve.body_limit import BodySizeLimit, BodyTooLarge
from robovlms_mobile.serve.episodes import EpisodeStore
from robovlms_mobile.serve.errors import ApiError, install_error_handlers
from robovlms_mobile.serve.images import ImageLimits, decode_image
from robovlms_mobile.serve.instructions import InstructionBook
from robovlms_mobile.serve.parsing import (check_bool, check_choice, check_episode_id, check_fields, check_instruction,
                                            decode_base64, read_json)
from robovlms_mobile.task import MAX_INSTRUCTION_CHARS

ACT_FIELDS = {"image", "instruction", "episode_id", "start"}
PREDICT_FIELDS = {"image", "instruction", "vlm_model", "strategy"}
RESET_FIELDS = {"episode_id"}
# the original schema's strategy names for ours; a request's `strategy` is reported back, the server's own applies
ORIGINAL_STRATEGY = {"receding": "receding_horizon", "reuse": "chunk_reuse", "ensemble": "ensemble"}
VLM_MODELS = {"kosmos", "kosmos2", "kosmos-2"}  # the only backbone this package trains


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


@dataclass
class ActRequest:
    """A parsed, validated /act request."""

    image: bytes
    instruction: str
    episode_id: str | None
    start: bool


def finite_or_500(result: TickResult) -> None:
    """ApiError 500 when the tick's velocity or chunk is not finite (NaN weights, an infinite max_speed)."""
    chunk = result.chunk if result.chunk is not None else np.zeros((0, 2))
    if not (np.isfinite(result.velocity).all() and np.isfinite(chunk).all()):
        raise ApiError(500, "non_finite_action", f"model produced non-finite action {np.asarray(result.velocity).tolist()}: "
                                                 f"the checkpoint's weights or max_speed are not finite; the episode was reset")


def create_app(policy: MobileVLAPolicy, settings: ServerSettings | None = None,
               instructions: InstructionBook | None = None) -> Any:
    """The ASGI app (FastAPI wrapped in the body-size limit) serving `policy`."""
    settings = settings or ServerSettings()
    book = instructions or InstructionBook()
    episodes: EpisodeStore[EpisodeState] = EpisodeStore(policy.new_episode, settings.max_episodes)
    history = policy.new_episode()  # /predict's one global history, as the original server kept
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
    model_name = Path(policy.source).stem
    strategy_name = ORIGINAL_STRATEGY[policy.strategy.name]

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        executor.shutdown(wait=True)

    app = FastAPI(title="robovlms-mobile policy server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    async def body_too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"error": "body_too_large", "detail": str(exc)}, status_code=413, headers={"connection": "close"})

    app.add_exception_handler(BodyTooLarge, body_too_large)

    def authorised(request: Request) -> bool:
        if settings.api_key is None:
            return True
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())

    def require_key(request: Request) -> None:
        if authorised(request):
            return
        has_key = "x-api-key" in request.headers or "authorization" in request.headers
        code, detail = ("invalid_api_key", "the API key is wrong") if has_key else (
            "missing_api_key", "this server needs an API key: send it as 'X-API-Key' or 'Authorization: Bearer'")
        raise ApiError(401, code, detail, headers={"WWW-Authenticate": "Bearer"})

    def require_key_original(request: Request) -> None:
        if not authorised(request):  # the original server's answer to a wrong or missing key
            raise ApiError(403, "invalid_api_key", "Invalid API Key")

    async def run_model(fn: Any, *args: Any) -> tuple[Any, float, float]:
        """Run on the model thread; returns (result, ms queued for the thread, ms running)."""
        submitted = time.perf_counter()

        def timed() -> tuple[Any, float, float]:
            started = time.perf_counter()
            result = fn(*args)
            return result, (started - submitted) * 1e3, (time.perf_counter() - started) * 1e3

        return await asyncio.get_running_loop().run_in_executor(executor, timed)

    async def tick(image: bytes, instruction: str, state: EpisodeState) -> tuple[TickResult, float, float]:
        """Decode, run one policy tick in `state`, refuse a non-finite result (resetting the episode)."""
        frame = await run_in_threadpool(decode_image, image, settings.image)
        try:
            result, queue_ms, run_ms = await run_model(policy.step, frame, instruction, state)
        except ValueError as exc:  # the policy's own input checks (all covered above; kept as a 4xx backstop)
            raise ApiError(422, "invalid_input", str(exc)) from None
        try:
            finite_or_500(result)
        except ApiError:
            await run_model(policy.reset, state)
            raise
        return result, queue_ms, run_ms

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness and the original fields for anyone; policy and limits only for authorised clients."""
        public = {"status": "ok", "model_loaded": True, "model_name": model_name, "device": str(policy.device)}
        if not authorised(request):
            return public
        return {**public, "policy": policy.describe(), "limits": settings.public(), "instructions": book.describe(),
                "episodes": {"active": len(episodes), "evicted": episodes.evicted}}

    @app.post("/reset")
    async def reset(request: Request) -> dict[str, Any]:
        """No body: clear /predict's global history (original API). JSON body: start (or restart) an episode."""
        raw = await request.body()
        if not raw.strip():
            require_key_original(request)
            await run_model(policy.reset, history)
            return {"status": "success", "message": "History and buffer cleared"}
        require_key(request)
        body = await read_json(request, raw=raw)
        check_fields(body, RESET_FIELDS, "/reset")
        episode_id, _, restarted = episodes.start(check_episode_id(body.get("episode_id")))
        return {"episode_id": episode_id, "restarted": restarted, "strategy": policy.strategy.describe()}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """The original robot client's call: base64 JPEG + instruction -> action on the global history."""
        require_key_original(request)
        body = await read_json(request)
        check_fields(body, PREDICT_FIELDS, "/predict")
        image = decode_base64(body.get("image"))
        instruction = check_instruction(body.get("instruction"))
        check_choice(body.get("vlm_model"), "vlm_model", VLM_MODELS)
        requested = check_choice(body.get("strategy"), "strategy", {"chunk_reuse", "receding_horizon", *ORIGINAL_STRATEGY.values()})
        resolved = book.resolve(instruction)
        result, _, run_ms = await tick(image, resolved.used, history)
        velocity = [float(v) for v in result.velocity]
        return {
            "action": velocity,
            "latency_ms": round(run_ms, 3),  # the tick on the model thread, preprocessing included
            "model_name": model_name,
            "strategy": strategy_name,
            "strategy_requested": requested,  # the server's own strategy (serve --strategy) applies
            "source": "inferred" if result.queried else "reused",
            "buffer_status": {"tick": result.tick, "window": result.window, "chunk_size": policy.chunk_size,
                              "queries": history.queries},
            **resolved.fields(),
        }

    @app.post("/act")
    async def act(request: Request) -> dict[str, Any]:
        """One control tick: image + instruction (+ episode) -> velocity, chunk, latency."""
        arrived = time.perf_counter()
        require_key(request)
        req = await parse_act(request)
        if req.episode_id is None:
            state = policy.new_episode()
        else:
            state = episodes.get(req.episode_id)
            if state is None:
                if not req.start:
                    raise ApiError(404, "unknown_episode", f"episode {req.episode_id!r} is not active (never started, or "
                                                          f"evicted): POST /reset with it first, or send start=true")
                _, state, _ = episodes.start(req.episode_id)
        resolved = book.resolve(req.instruction)
        result, queue_ms, run_ms = await tick(req.image, resolved.used, state)
        return {
            "episode_id": req.episode_id,
            "velocity": [float(v) for v in result.velocity],
            "axes": policy.axes,
            "chunk": [[float(v) for v in step] for step in result.chunk],
            "queried": result.queried,
            "tick": result.tick,
            "window": result.window,
            **resolved.fields(),
            # policy: the whole tick on the model thread (preprocessing included); model: the VLM + head query
            # alone (0 on a reused tick); queue: waiting for the model thread; server: arrival to reply
            "latency_ms": {"policy": round(run_ms, 3), "model": round(result.model_ms, 3), "queue": round(queue_ms, 3),
                           "server": round((time.perf_counter() - arrived) * 1e3, 3)},
        }

    async def parse_act(request: Request) -> ActRequest:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            fields = await read_json(request)
            check_fields(fields, ACT_FIELDS, "/act")
            image = decode_base64(fields.get("image"))
        elif ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=len(ACT_FIELDS), max_part_size=64 * 1024)
            fields = {k: v for k, v in form.multi_items()}
            upload = fields.get("image")
            if upload is not None and not isinstance(upload, UploadFile):
                raise ApiError(422, "invalid_field", "'image' must be a file part (multipart upload)")
            if isinstance(fields.get("instruction"), UploadFile) or isinstance(fields.get("episode_id"), UploadFile):
                raise ApiError(422, "invalid_field", "'instruction' and 'episode_id' must be text fields")
            check_fields(fields, ACT_FIELDS, "/act")
            if upload is None:
                raise ApiError(422, "missing_field", "'image' is required (JPEG or PNG)")
            image = await upload.read()
        else:
            raise ApiError(415, "unsupported_media_type", f"content type {ctype or '(none)'!r}: send multipart/form-data "
                                                          f"(image file) or application/json (base64 image)")
        return ActRequest(image=image, instruction=check_instruction(fields.get("instruction")),
                          episode_id=check_episode_id(fields.get("episode_id")), start=check_bool(fields.get("start"), "start"))

    return BodySizeLimit(app, settings.max_body_bytes)
