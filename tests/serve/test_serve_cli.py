"""`robovlms-mobile serve`: help, defaults, refusing unsafe checkpoints, a server with default settings."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import torch

from server_process import CLI, start_server, stop_server


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["serve", "ros-bridge"])
def test_help(command):
    out = run(command, "--help")
    assert out.returncode == 0 and f"usage: robovlms-mobile {command}" in out.stdout


def test_serve_defaults_to_loopback():
    from robovlms_mobile.cli import build_parser

    args = build_parser().parse_args(["serve", "x.ckpt"])
    assert args.host == "127.0.0.1" and args.strategy == "receding" and args.port == 8000


def test_strategy_constants_match_the_runtime():
    from robovlms_mobile.cli import options as cli
    from robovlms_mobile.runtime import chunking

    assert cli.STRATEGIES == chunking.STRATEGIES and cli.DEFAULT_ENSEMBLE_DECAY == chunking.DEFAULT_ENSEMBLE_DECAY


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_serve_refuses_a_pickled_payload_checkpoint(tmp_path, tiny_model_dir):
    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    out = run("serve", str(tmp_path / "evil.ckpt"), "--base-model-dir", str(tiny_model_dir), "--port", "1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("robovlms-mobile serve: error:")
    assert "refusing to load" in out.stderr and "pwned" not in out.stdout + out.stderr


@pytest.mark.parametrize("args, message", [
    (["--base-model-dir", "/nonexistent/kosmos"], "no config.json"),
    (["--strategy", "reuse", "--reuse-steps", "0"], "argument --reuse-steps: expected an integer >= 1, got 0"),
    (["--strategy", "reuse", "--reuse-steps", "11"], "reuse steps must be in 1..10 (the chunk length), got 11"),
    (["--max-body-mb", "0"], "--max-body-mb must be a number of MiB in (0,"),
])
def test_serve_bad_arguments_are_one_line_errors(tiny_checkpoint, tiny_model_dir, args, message):
    base = [] if "--base-model-dir" in args else ["--base-model-dir", str(tiny_model_dir)]
    out = run("serve", str(tiny_checkpoint), *base, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_server_with_default_settings(tiny_checkpoint, tiny_model_dir, tmp_path, frames):
    """No API key, receding horizon: every tick queries the model."""
    srv = start_server(tiny_checkpoint, tiny_model_dir, tmp_path / "log.txt", env={})
    try:
        from robovlms_mobile.runtime.client import PolicyClient

        with PolicyClient(srv.url) as client:
            assert client.health()["policy"]["strategy"] == {"name": "receding"}
            episode = client.reset()
            ticks = [client.act(f, "go left", episode_id=episode) for f in frames[:3]]
        assert [t["queried"] for t in ticks] == [True] * 3 and [t["window"] for t in ticks] == [1, 2, 3]
        assert all(t["velocity"] == t["chunk"][0] for t in ticks)
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"
    finally:
        stop_server(srv)
    assert "API key off" in (tmp_path / "log.txt").read_text()
