"""Malformed requests against the real server: each gets the right 4xx and a reason, never a 500."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from robovlms_mobile.runtime.client import encode_jpeg

GO = "go around the box on the left and stop in front of the bottle"


def noisy_jpeg(h: int = 96, w: int = 160) -> bytes:
    return encode_jpeg(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))


def png_header_bomb(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height (a decompression bomb's shape); data is not needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b"")


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def form(image: bytes, **fields: str) -> dict:
    """A multipart /act request: the image part plus instruction (and any extra text fields)."""
    return {"data": {"instruction": GO, **fields}, "files": {"image": ("frame.jpg", image, "image/jpeg")}}


def streamed_upload(n_bytes: int):
    """A chunked (no Content-Length) multipart body with an n_bytes image part."""
    yield b'--b0\r\nContent-Disposition: form-data; name="instruction"\r\n\r\ngo\r\n'
    yield b'--b0\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    for _ in range(n_bytes // 65536 + 1):
        yield b"\xff" * 65536
    yield b"\r\n--b0--\r\n"


JPEG = noisy_jpeg()
CASES = {
    # name: (method, path, request kwargs, expected status, expected error code)
    "wrong content type": ("post", "/act", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    "no content type": ("post", "/act", {"content": b"hello"}, 415, "unsupported_media_type"),
    "urlencoded form": ("post", "/act", {"data": {"instruction": GO}}, 415, "unsupported_media_type"),
    "huge image (declared pixels)": ("post", "/act", form(png_header_bomb(20000, 20000)), 413, "image_too_large"),
    "image side over limit": ("post", "/act", form(png_header_bomb(4000, 10)), 413, "image_too_large"),
    "body over limit (Content-Length)": ("post", "/act", form(b"\xff" * (1024 * 1024 + 10)), 413, "body_too_large"),
    "body over limit (chunked)": ("post", "/act", {"content": streamed_upload(2 * 1024 * 1024),
                                                   "headers": {"content-type": "multipart/form-data; boundary=b0"}}, 413, "body_too_large"),
    "truncated JPEG (body)": ("post", "/act", form(JPEG[: len(JPEG) // 2]), 422, "invalid_image"),
    "truncated JPEG (header)": ("post", "/act", form(JPEG[:100]), 422, "invalid_image"),
    "empty image": ("post", "/act", form(b""), 422, "invalid_image"),
    "not an image": ("post", "/act", form(b"this is text, not pixels" * 10), 415, "unsupported_image_format"),
    "GIF": ("post", "/act", form(gif()), 415, "unsupported_image_format"),
    "missing instruction": ("post", "/act", {"files": {"image": ("f.jpg", JPEG, "image/jpeg")}}, 422, "missing_field"),
    "blank instruction": ("post", "/act", form(JPEG, instruction="   "), 422, "invalid_field"),
    "instruction too long": ("post", "/act", form(JPEG, instruction="go " * 200), 422, "invalid_field"),
    "missing image": ("post", "/act", {"files": {"instruction": (None, GO)}}, 422, "missing_field"),
    "image as text field": ("post", "/act", {"data": {"instruction": GO, "image": "abc"}, "files": {"x": ("x", b"1")}}, 422, "invalid_field"),
    "two images": ("post", "/act", {"data": {"instruction": GO}, "files": [("image", ("a.jpg", JPEG)), ("image", ("b.jpg", JPEG))]}, 400, "malformed_body"),
    "unknown field": ("post", "/act", form(JPEG, speed="fast"), 422, "unknown_field"),
    "bad start flag": ("post", "/act", form(JPEG, start="maybe"), 422, "invalid_field"),
    "bad episode id": ("post", "/act", form(JPEG, episode_id="../../etc/passwd"), 422, "invalid_field"),
    "unknown episode": ("post", "/act", form(JPEG, episode_id="no-such-episode"), 404, "unknown_episode"),
    "garbage multipart": ("post", "/act", {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=zz"}}, 400, "malformed_body"),
    "invalid JSON": ("post", "/act", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed_body"),
    "JSON array": ("post", "/act", {"json": [1, 2]}, 422, "invalid_field"),
    "JSON image not base64": ("post", "/act", {"json": {"image": "***", "instruction": GO}}, 422, "invalid_field"),
    "JSON image not a string": ("post", "/act", {"json": {"image": 12, "instruction": GO}}, 422, "invalid_field"),
    "JSON instruction not a string": ("post", "/act", {"json": {"image": base64.b64encode(JPEG).decode(), "instruction": 5}}, 422, "invalid_field"),
    "JSON episode id not a string": ("post", "/act", {"json": {"image": base64.b64encode(JPEG).decode(), "instruction": GO, "episode_id": 3}}, 422, "invalid_field"),
    "reset: unknown field": ("post", "/reset", {"json": {"episode": "x"}}, 422, "unknown_field"),
    "reset: not JSON": ("post", "/reset", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    "reset: bad episode id": ("post", "/reset", {"json": {"episode_id": ""}}, 422, "invalid_field"),
    "wrong method": ("get", "/act", {}, 405, "method_not_allowed"),
    "unknown path": ("get", "/v2/act", {}, 404, "not_found"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_request_gets_the_right_4xx(server, name):
    method, path, kwargs, status, code = CASES[name]
    r = _send(server, method, path, dict(kwargs))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]


def _send(server, method: str, path: str, kwargs: dict) -> httpx.Response:
    headers = {"X-API-Key": server.api_key, **kwargs.pop("headers", {})}
    if callable(getattr(kwargs.get("content"), "__next__", None)):
        kwargs["content"] = streamed_upload(2 * 1024 * 1024)  # generators are single-use
    with httpx.Client(timeout=30) as client:
        return client.request(method, server.url + path, headers=headers, **kwargs)


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"X-API-Key": "wrong-key"}, "invalid_api_key"),
    ({"X-API-Key": ""}, "invalid_api_key"),
    ({"Authorization": "Bearer wrong-key"}, "invalid_api_key"),
    ({"Authorization": "Basic dGVzdDp0ZXN0"}, "invalid_api_key"),
])
@pytest.mark.parametrize("path", ["/act", "/reset"])
def test_wrong_or_missing_api_key_is_401(server, headers, code, path):
    r = httpx.post(server.url + path, headers=headers, **({**form(JPEG)} if path == "/act" else {"json": {}}))
    assert r.status_code == 401 and r.json()["error"] == code
    assert r.headers["www-authenticate"] == "Bearer"


def test_server_still_serves_after_the_corpus(server):
    r = httpx.post(server.url + "/act", headers={"X-API-Key": server.api_key}, **form(JPEG))
    assert r.status_code == 200 and len(r.json()["velocity"]) == 2


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on `port`, from /proc/net/tcp{,6} (Linux)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.append(address)
    return found


def test_binds_loopback_only(server):
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux /proc/net/tcp to list listening sockets")
    port = int(server.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, little-endian hex; not 0.0.0.0 (00000000)
