"""The one wire client of a policy server, and the `Policy` that drives through it.

`PolicyClient` speaks two APIs:
- `native` (`robovlms-mobile serve`): POST /reset {episode_id} -> episode, POST /act (multipart JPEG)
  -> {"velocity", "chunk", ...}; one history per episode id.
- `original` (the lab's earlier inference server, minuum/vla `Mobile_VLA/inference_server.py`):
  POST /predict {"image": base64 JPEG, "instruction"} -> {"action": [linear_x, linear_y], ...};
  one global history on the server until POST /reset with no body. `robovlms-mobile serve`
  answers this API too.
Both send the key as `X-API-Key`. Errors: `PolicyServerError` (the server refused: status, code,
reason) and `PolicyServerUnreachable` (no HTTP answer), each one line.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Callable

import httpx
import numpy as np

from robovlms_mobile.errors import clip
from robovlms_mobile.runtime.protocol import Frame

JPEG_QUALITY = 90
APIS = ("native", "original")


class PolicyServerError(RuntimeError):
    """The server refused a request: HTTP status, error code and reason from its JSON body."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class PolicyServerUnreachable(ConnectionError):
    """No HTTP answer from the server (refused connection, timeout, reset)."""


def encode_jpeg(frame_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes (a standard decoder gives the same RGB back)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame_rgb, dtype=np.uint8), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def as_image_bytes(frame: Frame) -> bytes:
    """Encoded JPEG/PNG bytes as they are; an RGB array as JPEG."""
    return bytes(frame) if isinstance(frame, (bytes, bytearray)) else encode_jpeg(frame)


class PolicyClient:
    """A keep-alive HTTP client for one policy server (`api`: 'native' or 'original')."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0, api: str = "native"):
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url, self.api = base_url.rstrip("/"), api
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _send(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, route, **kwargs)
        except httpx.TransportError as exc:
            raise PolicyServerUnreachable(f"policy server {self.base_url}{route} unreachable: "
                                          f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                code = body.get("error") or f"http_{response.status_code}"
                detail = body.get("detail", response.text[:300])
            except (ValueError, AttributeError):
                code, detail = f"http_{response.status_code}", response.text[:300]
            raise PolicyServerError(response.status_code, str(code), str(detail))
        try:
            body = response.json() if response.content else {}
        except ValueError:
            raise PolicyServerError(response.status_code, "malformed_reply",
                                    f"{self.base_url}{route} answered non-JSON: {clip(response.text, 200)}") from None
        if not isinstance(body, dict):
            raise PolicyServerError(response.status_code, "malformed_reply", f"{self.base_url}{route} answered {type(body).__name__}, expected an object")
        return body

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._send("GET", "/health")

    def reset(self, episode_id: str | None = None) -> str | None:
        """Native: start (or restart) an episode and return its id. Original: clear the server's one history."""
        if self.api == "original":
            self._send("POST", "/reset")  # no body, as the original robot client
            return None
        body = {"episode_id": episode_id} if episode_id else {}
        return self._send("POST", "/reset", json=body)["episode_id"]

    def act(self, image: Frame, instruction: str, episode_id: str | None = None, start: bool = False,
            committed: np.ndarray | None = None) -> dict[str, Any]:
        """Native POST /act with an RGB frame (sent as JPEG) or already encoded JPEG/PNG bytes.

        `committed` (k, 2) m/s: the actions that run while this query is out (a head trained with them reads them).
        """
        if self.api != "native":
            raise ValueError("act() is the native API; an original server takes predict()")
        data = as_image_bytes(image)
        fields = {"instruction": instruction}
        if committed is not None and len(committed):
            fields["committed"] = json.dumps(np.asarray(committed, dtype=np.float64).reshape(-1, 2).tolist())
        if episode_id is not None:
            fields["episode_id"] = episode_id
        if start:
            fields["start"] = "true"
        name, mime = ("frame.png", "image/png") if data[:8] == b"\x89PNG\r\n\x1a\n" else ("frame.jpg", "image/jpeg")
        return self._send("POST", "/act", data=fields, files={"image": (name, data, mime)})

    def predict(self, image: Frame, instruction: str, **extra: Any) -> dict[str, Any]:
        """POST /predict as the original robot client sends it (base64 JPEG in JSON); `extra`: vlm_model, strategy."""
        body = {"image": base64.b64encode(as_image_bytes(image)).decode("ascii"), "instruction": instruction, **extra}
        return self._send("POST", "/predict", json=body)


def finite_reply(value: Any, key: str, where: str, what: str, fits: Callable[[np.ndarray], bool]) -> np.ndarray:
    """`value` (a reply's `key`) as a finite float array that `fits`, or PolicyServerError naming what came."""
    try:
        array = np.asarray(value, dtype=np.float64)
        ok = fits(array) and bool(np.isfinite(array).all())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PolicyServerError(200, "malformed_reply", f"{where}: expected '{key}' as {what}, got {clip(value, 200)}")
    return array


def reply_velocity(reply: dict[str, Any], key: str, where: str) -> np.ndarray:
    """The finite (2,) velocity under `key` in a server reply, or PolicyServerError naming what came."""
    value = reply.get(key, sorted(reply))
    numbers = isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value[:2])
    return finite_reply(value[:2] if numbers else value, key, where, "two finite numbers",
                        lambda v: numbers and v.shape == (2,))


class RemotePolicy:
    """A `Policy` served over HTTP: one episode, started on first use.

    Native API: its own episode id; restarted (counted in `restarts`) if the server evicted or
    forgot it. Original API: the server's one global history, cleared by `reset()`.
    """

    def __init__(self, client: PolicyClient, **predict_extra: Any):
        self.client = client
        self.predict_extra = predict_extra  # original API: e.g. vlm_model="kosmos"
        self.episode_id: str | None = None
        self.started = False
        self.restarts = 0  # times the server had evicted or lost our episode
        self._committed_steps: int | None = None  # from /health, on first use
        self.last: dict[str, Any] | None = None

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, *, api: str = "native", timeout: float = 30.0) -> "RemotePolicy":
        """A RemotePolicy with its own client."""
        return cls(PolicyClient(url, api_key=api_key, timeout=timeout, api=api))

    def act(self, frame: Frame, instruction: str, committed: np.ndarray | None = None) -> np.ndarray:
        if not self.started:
            self.reset()
        if self.client.api == "original":
            self.last = self.client.predict(frame, instruction, **self.predict_extra)
            return reply_velocity(self.last, "action", f"{self.client.base_url}/predict")
        try:
            self.last = self.client.act(frame, instruction, episode_id=self.episode_id, committed=committed)
        except PolicyServerError as exc:
            if exc.code != "unknown_episode":
                raise
            # evicted or server restarted: the window starts over, which the safety layer tolerates
            self.restarts += 1
            self.last = self.client.act(frame, instruction, episode_id=self.episode_id, start=True, committed=committed)
        return reply_velocity(self.last, "velocity", f"{self.client.base_url}/act")

    @property
    def committed_steps(self) -> int:
        """How many committed actions the served head takes (/health's policy.committed_steps; 0 when it does not say)."""
        if self._committed_steps is None:
            try:
                value = self.client.health().get("policy", {}).get("committed_steps", 0)
            except (ConnectionError, PolicyServerError, AttributeError):
                value = 0
            self._committed_steps = value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 64 else 0
        return self._committed_steps

    def predict_chunk(self, frame: Frame, instruction: str, committed: np.ndarray | None = None) -> np.ndarray:
        """Native API: one model query on `frame` -> its (n, 2) chunk in m/s (asynchronous execution drives these).

        The chunk must be computed from this frame: a server whose strategy reused an older chunk
        (`queried` false) is refused, since the chunk could not be aligned to its frame. `committed`
        (k, 2) m/s: the actions that run while the query is out, sent along.
        """
        if self.client.api != "native":
            raise PolicyServerError(400, "no_chunks", "asynchronous execution needs the native API (/act answers the "
                                                      "chunk); the original API answers one velocity")
        self.act(frame, instruction, committed)
        where = f"{self.client.base_url}/act"
        if self.last.get("queried") is not True:
            raise PolicyServerError(200, "chunk_reused", f"{where}: the server reused an older chunk (queried "
                                                         f"{self.last.get('queried')!r}); serve with --strategy receding")
        return finite_reply(self.last.get("chunk"), "chunk", where, "rows of two finite numbers",
                            lambda c: c.ndim == 2 and c.shape[0] >= 1 and c.shape[1] == 2)

    def reset(self) -> None:
        self.episode_id = self.client.reset(self.episode_id)
        self.started = True

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
