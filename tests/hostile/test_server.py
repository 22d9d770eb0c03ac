"""Hostile input to the policy server (issue 11): every case is a 4xx/5xx JSON error or a one-line CLI error.

Never a 500 for a malformed body, never a 200 with a non-finite velocity. A real server subprocess on
127.0.0.1 for requests; the model-output cases run the app in process (TestClient) on checkpoints
with NaN weights / an infinite max_speed; the CLI cases run `robovlms-mobile serve` itself.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the serve tests' server helpers

from drive_fixtures import frames, tiny_checkpoint  # noqa: E402,F401  (shared session fixtures)
from helpers import jpeg_declaring, jpeg_with_repeated_scans  # noqa: E402
from server_process import CLI, server_env, start_server, stop_server  # noqa: E402

from robovlms_mobile.data.decode import ImageLimits  # noqa: E402
from robovlms_mobile.runtime.client import encode_jpeg  # noqa: E402
from robovlms_mobile.serve.images import decode_image  # noqa: E402

KEY = "hostile-key-0123456789"
GO = "go around the box on the left and stop in front of the bottle"
NESTED = "[" * 100_000 + "]" * 100_000
DIGITS = "9" * 5000


def jpeg() -> bytes:
    return encode_jpeg(np.full((48, 64, 3), 120, np.uint8))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def grey16_png(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tiny_model_dir, tmp_path_factory):
    srv = start_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory.mktemp("hostile") / "server.log",
                       "--max-body-mb", "2", env={"ROBOVLMS_MOBILE_API_KEY": KEY})
    yield srv
    stop_server(srv)
    log = srv.log.read_text()
    assert "Traceback" not in log, log[-4000:]


def raw_json(route: str, text: str) -> tuple[str, dict]:
    return route, {"content": text.encode(), "headers": {"content-type": "application/json", "X-API-Key": KEY}}


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose IHDR declares width x height (the data is not there)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def predict(image: bytes | str, instruction: str = GO, **fields) -> dict:
    body = {"image": image if isinstance(image, str) else b64(image), "instruction": instruction, **fields}
    return {"json": body, "headers": {"X-API-Key": KEY}}


GOOD = b64(jpeg())
NOISE = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
# issue 21: decode work bounded by the header, one JSON 4xx naming the field for every image and body defect
IMAGE_REQUESTS = {
    "predict: JPEG header declaring 65535x65535 (4.3e9 pixels)": (jpeg_declaring(jpeg(), 65535, 65535), 413, "image_too_large", "65535x65535"),
    "predict: PNG header declaring 50000x50000 (2.5e9 pixels)": (png_declaring(50000, 50000), 413, "image_too_large", "50000x50000"),
    "predict: progressive JPEG with 2,000 scans": (jpeg_with_repeated_scans(NOISE, 2000), 413, "image_too_large", "more than 32 scans"),
    "predict: JPEG declaring 1000x1000 in 700 bytes": (jpeg_declaring(jpeg(), 1000, 1000), 422, "invalid_image", "pixels per byte"),
    "predict: truncated JPEG": (encode_jpeg(NOISE)[:-40], 422, "invalid_image", "truncated JPEG"),
    "predict: JPEG with no scan": (b"\xff\xd8\xff\xd9", 422, "invalid_image", "no scan"),
    "predict: two JPEG start markers": (b"\xff\xd8\xff\xd8" + jpeg()[2:], 422, "invalid_image", "second start-of-image"),
}
REQUESTS = {
    **{case: ("/predict", predict(image), status, code, text) for case, (image, status, code, text) in IMAGE_REQUESTS.items()},
    "predict: zero-width-space instruction": ("/predict", predict(GOOD, "\u200b\u200b\u200b"), 422, "invalid_field", "'instruction': 3 invisible"),
    "predict: BOM instruction": ("/predict", predict(GOOD, "\ufeff "), 422, "invalid_field", "visible characters"),
    "predict: duplicate instruction field": (*raw_json("/predict", f'{{"image": "{GOOD}", "instruction": "go", "instruction": "stop"}}'),
                                             422, "invalid_field", "'instruction' appears twice"),
    "act: duplicate episode_id field": (*raw_json("/act", f'{{"image": "{GOOD}", "instruction": "go", "episode_id": "a", "episode_id": "b"}}'),
                                        422, "invalid_field", "'episode_id' appears twice"),
    # case: (route, httpx kwargs, status, error code, text the detail must contain)
    "predict: deeply nested image": (*raw_json("/predict", f'{{"instruction": "go", "image": {NESTED}}}'), 400, "malformed_body", "'image'"),
    "act: deeply nested instruction": (*raw_json("/act", f'{{"image": "{GOOD}", "instruction": {NESTED}}}'), 400, "malformed_body", "'instruction'"),
    "predict: deeply nested body": (*raw_json("/predict", NESTED), 400, "malformed_body", "nests too deeply"),
    "predict: 5000-digit instruction": (*raw_json("/predict", f'{{"image": "{GOOD}", "instruction": {DIGITS}}}'), 422, "invalid_field", "'instruction'"),
    "act: 5000-digit episode_id": (*raw_json("/act", f'{{"image": "{GOOD}", "instruction": "go", "episode_id": {DIGITS}}}'), 422, "invalid_field", "'episode_id'"),
    "act: 5000-digit start": (*raw_json("/act", f'{{"image": "{GOOD}", "instruction": "go", "start": -{DIGITS}}}'), 422, "invalid_field", "'start'"),
    "predict: 5000-digit image": (*raw_json("/predict", f'{{"image": {DIGITS}, "instruction": "go"}}'), 422, "invalid_field", "'image'"),
    "reset: 5000-digit episode_id": (*raw_json("/reset", f'{{"episode_id": {DIGITS}}}'), 422, "invalid_field", "'episode_id'"),
    "predict: 5000-digit body": (*raw_json("/predict", DIGITS), 422, "invalid_field", "must be an object"),
    "predict: float overflow strategy": (*raw_json("/predict", f'{{"image": "{GOOD}", "instruction": "go", "strategy": 1e999}}'), 422, "invalid_field", "'strategy'"),
    "predict: NaN literal instruction": (*raw_json("/predict", f'{{"image": "{GOOD}", "instruction": NaN}}'), 422, "invalid_field", "'instruction'"),
    "predict: not JSON": (*raw_json("/predict", "{image:"), 400, "malformed_body", "not valid JSON"),
    "predict: invalid UTF-8": ("/predict", {"content": b'{"instruction": "\xff\xfe"}', "headers": {"content-type": "application/json", "X-API-Key": KEY}}, 400, "malformed_body", "not valid JSON"),
    "predict: instruction 513 chars": ("/predict", {"json": {"image": GOOD, "instruction": "x" * 513}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "the limit is 512"),
    "predict: blank instruction": ("/predict", {"json": {"image": GOOD, "instruction": "   "}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "'instruction'"),
    "predict: instruction as list": ("/predict", {"json": {"image": GOOD, "instruction": ["go"]}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "'instruction'"),
    "predict: missing image": ("/predict", {"json": {"instruction": "go"}, "headers": {"X-API-Key": KEY}}, 422, "missing_field", "'image'"),
    "predict: image not base64": ("/predict", {"json": {"image": "***", "instruction": "go"}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "base64"),
    "predict: image not a picture": ("/predict", {"json": {"image": b64(b"hello world"), "instruction": "go"}, "headers": {"X-API-Key": KEY}}, 415, "unsupported_image_format", "JPEG/PNG"),
    "predict: unknown field": ("/predict", {"json": {"image": GOOD, "instruction": "go", "speed": 9}, "headers": {"X-API-Key": KEY}}, 422, "unknown_field", "'speed'"),
    "predict: vlm_model not kosmos": ("/predict", {"json": {"image": GOOD, "instruction": "go", "vlm_model": "paligemma"}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "'vlm_model'"),
    "predict: strategy unknown": ("/predict", {"json": {"image": GOOD, "instruction": "go", "strategy": "fastest"}, "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "'strategy'"),
    "predict: 100k unknown fields": (*raw_json("/predict", json.dumps({f"k{i}": 0 for i in range(100_000)})), 422, "unknown_field", "and 99990 more"),
    "predict: body is a list": ("/predict", {"json": [GOOD, "go"], "headers": {"X-API-Key": KEY}}, 422, "invalid_field", "must be an object"),
    "predict: form body": ("/predict", {"data": {"instruction": "go"}, "headers": {"X-API-Key": KEY}}, 415, "unsupported_media_type", "application/json"),
    "predict: no key": ("/predict", {"json": {"image": GOOD, "instruction": "go"}}, 403, "invalid_api_key", "Invalid API Key"),
    "predict: wrong key": ("/predict", {"json": {"image": GOOD, "instruction": "go"}, "headers": {"X-API-Key": "nope"}}, 403, "invalid_api_key", "Invalid API Key"),
    "reset without body: wrong key": ("/reset", {"headers": {"X-API-Key": "nope"}}, 403, "invalid_api_key", "Invalid API Key"),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_hostile_request_is_a_json_4xx(server, case):
    route, kwargs, status, code, text = REQUESTS[case]
    try:
        r = httpx.post(server.url + route, timeout=60, **kwargs)
    except httpx.RemoteProtocolError:
        pytest.fail(f"{case}: the server dropped the connection")
    assert (r.status_code, r.json()["error"]) == (status, code), r.text[:300]
    assert text in r.json()["detail"]


@pytest.mark.parametrize("field", ["strategy", "vlm_model", "a" * 500_000])
def test_a_megabyte_value_is_not_echoed_in_full(server, field):
    """A 500 KB value (or field name) is refused with a short detail: the value is clipped, its length said."""
    body = {"image": GOOD, "instruction": GO, field: "x" * 500_000 if len(field) < 100 else 1}
    r = httpx.post(server.url + "/predict", headers={"X-API-Key": KEY}, json=body, timeout=60)
    assert r.status_code == 422 and len(r.text) < 1000, r.text[:300]
    assert "(500000 characters)" in r.json()["detail"] and (field[:20] in r.json()["detail"]), r.json()


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    """Send hand-written HTTP/1.1 bytes (clients refuse to write malformed headers); the server's full answer."""
    import socket

    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", [DIGITS, "-5", "1e3"])
def test_malformed_content_length_is_a_4xx(server, length):
    answer = raw_request(server.url, f"POST /predict HTTP/1.1\nHost: x\nX-API-Key: {KEY}\nContent-Type: application/json\n"
                                     f"Content-Length: {length}\n", b"{}")
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]


def test_server_answers_after_the_hostile_requests(server):
    r = httpx.post(server.url + "/predict", headers={"X-API-Key": KEY}, json={"image": GOOD, "instruction": GO}, timeout=60)
    assert r.status_code == 200 and len(r.json()["action"]) == 2


def test_16_bit_grey_png_keeps_its_grey_levels(server):
    """Pillow's convert('RGB') clips 16-bit grey to white; the server scales 0..65535 to 0..255."""
    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1))
    rgb = decode_image(grey16_png(ramp), ImageLimits())
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[..., 0], ramp / 257, atol=1)
    assert (rgb[..., 0] == rgb[..., 2]).all() and (rgb == 255).mean() < 0.05
    r = httpx.post(server.url + "/predict", headers={"X-API-Key": KEY}, json={"image": b64(grey16_png(ramp)), "instruction": GO}, timeout=60)
    assert r.status_code == 200


# ---- non-finite model output: in-process app on real (corrupted) checkpoints -------------------------------------
def corrupted(tiny_checkpoint: Path, out: Path, *, max_speed: float) -> Path:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["mobile_vla"]["action_scale"]["max_speed"] = max_speed
    torch.save(ckpt, out)
    return out


@pytest.mark.parametrize("case", ["NaN weights", "max_speed inf"])
def test_non_finite_action_is_a_json_500_never_a_200(tiny_checkpoint, tiny_model_dir, tmp_path, case):
    from fastapi.testclient import TestClient

    from robovlms_mobile.runtime.policy import MobileVLAPolicy
    from robovlms_mobile.serve.app import ServerSettings, create_app

    if case == "NaN weights":  # the loader refuses a NaN checkpoint, so the weights diverge after loading
        policy = MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir)
        with torch.no_grad():
            for tensor in policy.head.parameters():
                tensor.fill_(float("nan"))
    else:  # the loader refuses a stored infinite scale; a policy given one in process still never answers 200
        from robovlms_mobile.checkpoint.format import CheckpointError

        with pytest.raises(CheckpointError, match="max_speed"):
            MobileVLAPolicy.from_checkpoint(corrupted(tiny_checkpoint, tmp_path / "bad.ckpt", max_speed=float("inf")),
                                            base_model_dir=tiny_model_dir)
        policy = MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir)
        policy.max_speed = float("inf")
    with TestClient(create_app(policy, ServerSettings()), raise_server_exceptions=False) as client:
        replies = [client.post("/predict", json={"image": GOOD, "instruction": GO}),
                   client.post("/act", json={"image": GOOD, "instruction": GO, "episode_id": "e1", "start": True})]
    for r in replies:
        assert r.status_code == 500 and r.json()["error"] == "non_finite_action", r.text
        assert "model produced non-finite action" in r.json()["detail"]


# ---- the command line ---------------------------------------------------------------------------------------------
def serve(*args: str, env: dict[str, str | None] | None = None, checkpoint: str = "x.ckpt") -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "serve", checkpoint, *args], capture_output=True, text=True, timeout=300, env=server_env(env))


CLI_CASES = {
    # case: (args, env, text of the one error line)
    "--host empty": (["--host", ""], None, "--host is empty"),
    "--host blank": (["--host", "  "], None, "--host is empty"),
    "ROBOVLMS_MOBILE_API_KEY empty": ([], {"ROBOVLMS_MOBILE_API_KEY": ""}, "$ROBOVLMS_MOBILE_API_KEY is set but empty"),
    "VLA_API_KEY empty": ([], {"VLA_API_KEY": ""}, "$VLA_API_KEY is set but empty"),
    "--api-key empty": (["--api-key", ""], None, "--api-key is set but empty"),
    "--api-key blank": (["--api-key", "   "], None, "--api-key is set but empty"),
    "--max-body-mb nan": (["--max-body-mb", "nan"], None, "--max-body-mb must be a number of MiB in (0, 1024.0], got nan"),
    "--max-body-mb inf": (["--max-body-mb", "inf"], None, "--max-body-mb must be a number of MiB"),
    "--max-body-mb negative": (["--max-body-mb", "-1"], None, "--max-body-mb must be a number of MiB"),
    "--reuse-steps 0": (["--strategy", "reuse", "--reuse-steps", "0"], None, "argument --reuse-steps: expected an integer >= 1, got 0"),
    "--ensemble-decay nan": (["--strategy", "ensemble", "--ensemble-decay", "nan"], None, "argument --ensemble-decay: expected a finite number, got 'nan'"),
    "--port out of range": (["--port", "70000"], None, "--port must be in 0..65535"),
    "--max-episodes 0": (["--max-episodes", "0"], None, "argument --max-episodes: expected an integer >= 1, got 0"),
}


SUBPROCESS_CASES = ("--host empty", "ROBOVLMS_MOBILE_API_KEY empty", "--max-body-mb nan")  # the rest run main() in process


def serve_in_process(args: list[str], env: dict[str, str] | None, monkeypatch, capsys) -> tuple[int, str]:
    """robovlms_mobile.cli.main(['serve', ...]) with only `env`'s key variables set: (exit code, stderr)."""
    from robovlms_mobile.cli import main

    for name in ("ROBOVLMS_MOBILE_API_KEY", "VLA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    code = main(["serve", "x.ckpt", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_serve_flag_refused_in_one_line(case, monkeypatch, capsys):
    args, env, text = CLI_CASES[case]
    if case in SUBPROCESS_CASES:
        out = serve(*args, env=env)
        code, err = out.returncode, out.stderr
    else:
        code, err = serve_in_process(args, env, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robovlms-mobile serve: error:") and text in lines[0], err


MAPS = {
    "missing file": (None, "not a file"),
    "not JSON": ("{center_straight:", "not a JSON file"),
    "a list": ('["a", "b"]', "expected a JSON object"),
    "non-string value": ('{"center_straight": 3}', "expected a string, got int"),
    "empty target": ('{"center_straight": " "}', "expected a non-empty string"),
    "target too long": (json.dumps({"center_straight": "x" * 513}), "the limit is 512"),
    "config key not an object": ('{"instruction_map": "go"}', "key 'instruction_map': expected a JSON object"),
    "deeply nested": (NESTED, "not a JSON file"),
}


@pytest.mark.parametrize("case", list(MAPS))
def test_bad_instruction_map_refused_in_one_line(tmp_path, case, monkeypatch, capsys):
    text, message = MAPS[case]
    path = tmp_path / "map.json"
    if text is not None:
        path.write_text(text)
    if case == "not JSON":
        out = serve("--instruction-map", str(path))
        code, err = out.returncode, out.stderr
    else:
        code, err = serve_in_process(["--instruction-map", str(path)], None, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--instruction-map" in lines[0] and message in lines[0], err
