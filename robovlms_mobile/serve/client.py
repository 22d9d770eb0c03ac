"""PolicyClient: the Python side of the policy server's HTTP API (used by the ROS bridge and benchmarks)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np

JPEG_QUALITY = 90


class PolicyServerError(RuntimeError):
    """The server refused a request: HTTP status, error code and reason from its JSON body."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def encode_jpeg(frame_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame_rgb, dtype=np.uint8), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class PolicyClient:
    """A keep-alive HTTP client for one policy server."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = body.get("error", "http_error"), body.get("detail", response.text)
            except ValueError:
                code, detail = "http_error", response.text[:500]
            raise PolicyServerError(response.status_code, code, detail)
        return response.json()

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._check(self.http.get("/health"))

    def reset(self, episode_id: str | None = None) -> str:
        """Start (or restart) an episode; returns its id."""
        body = {"episode_id": episode_id} if episode_id else {}
        return self._check(self.http.post("/reset", json=body))["episode_id"]

    def act(self, image: np.ndarray | bytes, instruction: str, episode_id: str | None = None, start: bool = False) -> dict[str, Any]:
        """POST /act with an RGB frame (sent as JPEG) or already encoded JPEG/PNG bytes."""
        data = image if isinstance(image, (bytes, bytearray)) else encode_jpeg(image)
        fields = {"instruction": instruction}
        if episode_id is not None:
            fields["episode_id"] = episode_id
        if start:
            fields["start"] = "true"
        name, mime = ("frame.png", "image/png") if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" else ("frame.jpg", "image/jpeg")
        return self._check(self.http.post("/act", data=fields, files={"image": (name, bytes(data), mime)}))
