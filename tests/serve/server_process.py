"""Start and stop `robovlms-mobile serve` in a subprocess for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from helpers import free_port

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
API_KEY = "test-key-0123456789"
KEY_VARIABLES = ("ROBOVLMS_MOBILE_API_KEY", "VLA_API_KEY")
# small limits so the refusals are cheap to trigger
SERVER_ARGS = ["--strategy", "reuse", "--reuse-steps", "2", "--max-episodes", "12", "--max-body-mb", "1",
               "--max-image-side", "2048", "--max-image-pixels", "1000000"]


@dataclass
class Server:
    url: str
    api_key: str
    process: subprocess.Popen
    log: Path


def server_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment without any API key variable, plus `env` (a None value unsets)."""
    out = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def start_server(checkpoint: Path, model_dir: Path, log: Path, *args: str, env: dict[str, str | None] | None = None,
                 timeout: float = 180) -> Server:
    """`robovlms-mobile serve` in a subprocess on a free 127.0.0.1 port, once /health answers."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen([CLI, "serve", str(checkpoint), "--base-model-dir", str(model_dir), "--port", str(port), *args],
                            stdout=out, stderr=subprocess.STDOUT, env=server_env(env))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                env = env or {}
                return Server(url, env.get("ROBOVLMS_MOBILE_API_KEY") or env.get("VLA_API_KEY") or "", proc, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not answer /health within {timeout} s:\n{log.read_text()[-4000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
