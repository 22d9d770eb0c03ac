"""The policy server: `create_app(policy, settings)` -> FastAPI app with POST /act, POST /reset, GET /health.

Episodes: `POST /reset` starts (or restarts) an episode and returns its id (a new one when none
is given). `POST /act` with that `episode_id` runs one control tick in the episode's own window
and chunk schedule; an id that is not active (never started, or evicted: at most
`max_episodes` are kept, least recently used first) gets 404 `unknown_episode`, unless the
request says `start: true`, so a client never silently drives on a history it did not build.
`/act` without `episode_id` is a one-off query with a window of one frame.

The model runs on one worker thread (calls are serialised; the event loop keeps answering),
image decoding in the thread pool. Errors: `{"error": code, "detail": reason}`, 4xx for any
malformed request (see errors.py, images.py, body_limit.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from robovlms_mobile.runtime.policy import MAX_INSTRUCTION_CHARS, EpisodeState, MobileVLAPolicy
from robovlms_mobile.serve.body_limit import BodySizeLimit, BodyTooLarge
from robovlms_mobile.serve.episodes import EPISODE_ID, EpisodeStore
from robovlms_mobile.serve.errors import ApiError, install_error_handlers
from robovlms_mobile.serve.images import ImageLimits, decode_image

ACT_FIELDS = {"image", "instruction", "episode_id", "start"}
RESET_FIELDS = {"episode_id"}
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


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


def create_app(policy: MobileVLAPolicy, settings: ServerSettings | None = None) -> Any:
    """The ASGI app (FastAPI wrapped in the body-size limit) serving `policy`."""
    settings = settings or ServerSettings()
    episodes: EpisodeStore[EpisodeState] = EpisodeStore(policy.new_episode, settings.max_episodes)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")

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

    async def run_model(fn: Any, *args: Any) -> tuple[Any, float, float]:
        """Run on the model thread; returns (result, ms queued for the thread, ms running)."""
        submitted = time.perf_counter()

        def timed() -> tuple[Any, float, float]:
            started = time.perf_counter()
            result = fn(*args)
            return result, (started - submitted) * 1e3, (time.perf_counter() - started) * 1e3

        return await asyncio.get_running_loop().run_in_executor(executor, timed)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness for anyone; policy and limits only for authorised clients."""
        if not authorised(request):
            return {"status": "ok"}
        return {"status": "ok", "policy": policy.describe(), "limits": settings.public(),
                "episodes": {"active": len(episodes), "evicted": episodes.evicted}}

    @app.post("/reset")
    async def reset(request: Request) -> dict[str, Any]:
        """Start (or restart) an episode; a new id when none is given."""
        require_key(request)
        body = await read_json(request, optional=True)
        unknown = sorted(set(body) - RESET_FIELDS)
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s) {unknown}; /reset takes {sorted(RESET_FIELDS)}")
        episode_id, _, restarted = episodes.start(check_episode_id(body.get("episode_id")))
        return {"episode_id": episode_id, "restarted": restarted, "strategy": policy.strategy.describe()}

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
        frame = await run_in_threadpool(decode_image, req.image, settings.image)
        try:
            result, queue_ms, run_ms = await run_model(policy.step, frame, req.instruction, state)
        except ValueError as exc:  # the policy's own input checks (all covered above; kept as a 4xx backstop)
            raise ApiError(422, "invalid_input", str(exc)) from None
        return {
            "episode_id": req.episode_id,
            "velocity": [float(v) for v in result.velocity],
            "axes": policy.axes,
            "chunk": [[float(v) for v in step] for step in result.chunk],
            "queried": result.queried,
            "tick": result.tick,
            "window": result.window,
            # policy: the whole tick on the model thread (preprocessing included); model: the VLM + head query
            # alone (0 on a reused tick); queue: waiting for the model thread; server: arrival to reply
            "latency_ms": {"policy": round(run_ms, 3), "model": round(result.model_ms, 3), "queue": round(queue_ms, 3),
                           "server": round((time.perf_counter() - arrived) * 1e3, 3)},
        }

    async def parse_act(request: Request) -> ActRequest:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            body = await read_json(request)
            fields, image = body, body.get("image")
            if image is not None:
                image = decode_base64(image)
        elif ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=len(ACT_FIELDS), max_part_size=64 * 1024)
            fields = {k: v for k, v in form.multi_items()}
            upload = fields.get("image")
            if upload is not None and not isinstance(upload, UploadFile):
                raise ApiError(422, "invalid_field", "'image' must be a file part (multipart upload)")
            image = await upload.read() if upload is not None else None
            if isinstance(fields.get("instruction"), UploadFile) or isinstance(fields.get("episode_id"), UploadFile):
                raise ApiError(422, "invalid_field", "'instruction' and 'episode_id' must be text fields")
        else:
            raise ApiError(415, "unsupported_media_type", f"content type {ctype or '(none)'!r}: send multipart/form-data "
                                                          f"(image file) or application/json (base64 image)")
        unknown = sorted(set(fields) - ACT_FIELDS)
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s) {unknown}; /act takes {sorted(ACT_FIELDS)}")
        if image is None:
            raise ApiError(422, "missing_field", "'image' is required (JPEG or PNG)")
        return ActRequest(image=image, instruction=check_instruction(fields.get("instruction")),
                          episode_id=check_episode_id(fields.get("episode_id")), start=check_bool(fields.get("start"), "start"))

    return BodySizeLimit(app, settings.max_body_bytes)


async def read_json(request: Request, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object ({} when `optional` and empty)."""
    raw = await request.body()
    if not raw.strip() and optional:
        return {}
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", f"content type {ctype or '(none)'!r}: send application/json")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_body", f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_field", f"the JSON body must be an object, got {type(body).__name__}")
    return body


def decode_base64(value: Any) -> bytes:
    """Base64 (optionally a `data:image/...;base64,` URL) -> bytes."""
    if not isinstance(value, str):
        raise ApiError(422, "invalid_field", "'image' must be a base64 string in a JSON body")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_field", f"'image' is not valid base64 ({exc})") from None


def check_instruction(value: Any) -> str:
    """A non-empty instruction within the length limit."""
    if value is None:
        raise ApiError(422, "missing_field", "'instruction' is required (the navigation command, e.g. 'go around the box on the left')")
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, "invalid_field", "'instruction' must be a non-empty string")
    if len(value) > MAX_INSTRUCTION_CHARS:
        raise ApiError(422, "invalid_field", f"'instruction' is {len(value)} characters; the limit is {MAX_INSTRUCTION_CHARS}")
    return value


def check_episode_id(value: Any) -> str | None:
    """None, or an id of 1-64 characters from [A-Za-z0-9._:-]."""
    if value is None:
        return None
    if not isinstance(value, str) or not EPISODE_ID.match(value):
        raise ApiError(422, "invalid_field", "'episode_id' must be 1-64 characters from A-Z a-z 0-9 . _ : -")
    return value


def check_bool(value: Any, name: str) -> bool:
    """A JSON boolean, or a form value true/false/1/0/yes/no."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ApiError(422, "invalid_field", f"'{name}' must be true or false")
