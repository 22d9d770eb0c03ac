"""ASGI middleware: refuse request bodies over a byte limit, declared (Content-Length) or streamed."""

from __future__ import annotations

import json
from typing import Any, Callable


class BodyTooLarge(Exception):
    """The streamed body passed the limit; the app answers 413."""


class BodySizeLimit:
    """Answers 413 before reading when Content-Length is too large; raises BodyTooLarge mid-stream otherwise."""

    def __init__(self, app: Callable, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._refuse(send, 400, "malformed_body", f"Content-Length {declared.decode(errors='replace')!r} is not a number")
                return
            if size > self.max_bytes:
                await self._refuse(send, 413, "body_too_large", f"the body is {size} bytes; the limit is {self.max_bytes}")
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"the body passed {self.max_bytes} bytes (the limit)")
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(send: Callable, status: int, code: str, detail: str) -> None:
        body = json.dumps({"error": code, "detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
