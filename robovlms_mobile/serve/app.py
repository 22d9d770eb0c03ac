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

import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from robovlms_mobile.runtime.policy import EpisodeState, MobileVLAPolicy
from robovlms_mobile.serve.body_limit import BodySizeLimit, BodyTooLarge
from robovlms_mobile.serve.errors import ApiError, install_error_handlers
from robovlms_mobile.serve.instructions import InstructionBook
from robovlms_mobile.serve.parsing import (check_choice, check_episode_id, check_fields, check_instruction, decode_base64,
                                            read_json)
from robovlms_mobile.serve.requests import parse_act
from robovlms_mobile.serve.service import ORIGINAL_STRATEGY, PolicyService, ServerSettings

__all__ = ["ServerSettings", "create_app"]

PREDICT_FIELDS = {"image", "instruction", "vlm_model", "strategy"}
RESET_FIELDS = {"episode_id"}
VLM_MODELS = {"kosmos", "kosmos2", "kosmos-2"}  # the only backbone this package trains

router = APIRouter()


def _service(request: Request) -> PolicyService:
    return request.app.state.service


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness and the original fields for anyone; policy and limits only for authorised clients."""
    svc = _service(request)
    public = {"status": "ok", "model_loaded": True, "model_name": svc.model_name, "device": str(svc.policy.device)}
    if not svc.authorised(request):
        return public
    return {**public, "policy": svc.policy.describe(), "limits": svc.settings.public(), "instructions": svc.book.describe(),
            "episodes": {"active": len(svc.episodes), "evicted": svc.episodes.evicted}}


@router.post("/reset")
async def reset(request: Request) -> dict[str, Any]:
    """No body: clear /predict's global history (original API). JSON body: start (or restart) an episode."""
    svc = _service(request)
    raw = await request.body()
    if not raw.strip():
        svc.require_key_original(request)
        await svc.run_model(svc.policy.reset, svc.history)
        return {"status": "success", "message": "History and buffer cleared"}
    svc.require_key(request)
    body = await read_json(request, raw=raw)
    check_fields(body, RESET_FIELDS, "/reset")
    episode_id, _, restarted = svc.episodes.start(check_episode_id(body.get("episode_id")))
    return {"episode_id": episode_id, "restarted": restarted, "strategy": svc.policy.strategy.describe()}


@router.post("/predict")
async def predict(request: Request) -> dict[str, Any]:
    """The original robot client's call: base64 JPEG + instruction -> action on the global history."""
    svc = _service(request)
    svc.require_key_original(request)
    body = await read_json(request)
    check_fields(body, PREDICT_FIELDS, "/predict")
    image = decode_base64(body.get("image"))
    instruction = check_instruction(body.get("instruction"))
    check_choice(body.get("vlm_model"), "vlm_model", VLM_MODELS)
    requested = check_choice(body.get("strategy"), "strategy", {"chunk_reuse", "receding_horizon", *ORIGINAL_STRATEGY.values()})
    resolved = svc.book.resolve(instruction)
    result, _, run_ms = await svc.tick(image, resolved.used, svc.history)
    return {
        "action": [float(v) for v in result.velocity],
        "latency_ms": round(run_ms, 3),  # the tick on the model thread, preprocessing included
        "model_name": svc.model_name,
        "strategy": svc.strategy_name,
        "strategy_requested": requested,  # the server's own strategy (serve --strategy) applies
        "source": "inferred" if result.queried else "reused",
        "buffer_status": {"tick": result.tick, "window": result.window, "chunk_size": svc.policy.chunk_size,
                          "queries": svc.history.queries},
        **resolved.fields(),
    }


@router.post("/act")
async def act(request: Request) -> dict[str, Any]:
    """One control tick: image + instruction (+ episode) -> velocity, chunk, latency."""
    arrived = time.perf_counter()
    svc = _service(request)
    svc.require_key(request)
    req = await parse_act(request)
    state = _episode_for(svc, req.episode_id, req.start)
    resolved = svc.book.resolve(req.instruction)
    result, queue_ms, run_ms = await svc.tick(req.image, resolved.used, state, req.committed)
    return {
        "episode_id": req.episode_id,
        "velocity": [float(v) for v in result.velocity],
        "axes": svc.policy.axes,
        "chunk": [[float(v) for v in step] for step in result.chunk],
        "queried": result.queried,
        "tick": result.tick,
        "window": result.window,
        # how many of the request's committed actions the head was told (0: none sent, or a head trained without them)
        "committed_used": result.committed_used,
        **resolved.fields(),
        # policy: the whole tick on the model thread (preprocessing included); model: the VLM + head query
        # alone (0 on a reused tick); queue: waiting for the model thread; server: arrival to reply
        "latency_ms": {"policy": round(run_ms, 3), "model": round(result.model_ms, 3), "queue": round(queue_ms, 3),
                       "server": round((time.perf_counter() - arrived) * 1e3, 3)},
    }


def _episode_for(svc: PolicyService, episode_id: str | None, start: bool) -> EpisodeState:
    """The episode an /act request drives: a one-off window, an active episode, or one it starts."""
    if episode_id is None:
        return svc.policy.new_episode()
    state = svc.episodes.get(episode_id)
    if state is not None:
        return state
    if not start:
        raise ApiError(404, "unknown_episode", f"episode {episode_id!r} is not active (never started, or evicted): "
                                              f"POST /reset with it first, or send start=true")
    return svc.episodes.start(episode_id)[1]


async def _body_too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse({"error": "body_too_large", "detail": str(exc)}, status_code=413, headers={"connection": "close"})


def create_app(policy: MobileVLAPolicy, settings: ServerSettings | None = None,
               instructions: InstructionBook | None = None) -> Any:
    """The ASGI app (FastAPI wrapped in the body-size limit) serving `policy`."""
    service = PolicyService(policy, settings or ServerSettings(), instructions or InstructionBook())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()

    app = FastAPI(title="robovlms-mobile policy server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    install_error_handlers(app)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.include_router(router)
    return BodySizeLimit(app, service.settings.max_body_bytes)
