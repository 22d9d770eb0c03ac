"""Committed actions over the wire: /act's `committed` field, /health's committed_steps, the client and the CLI."""

from __future__ import annotations

import json
import subprocess

import httpx
import numpy as np
import pytest

from robovlms_mobile.runtime.client import PolicyClient, RemotePolicy
from server_process import CLI, start_server, stop_server

GO = "go around the box on the left and stop in front of the bottle"


@pytest.fixture(scope="module")
def committed_checkpoint(base_config, tiny_model_dir, episodes_dir, tmp_path_factory):
    """A tiny checkpoint whose head takes 3 committed actions (2 training steps)."""
    from drive_fixtures import _make_tiny_config

    from robovlms_mobile.train.launcher import train

    out = tmp_path_factory.mktemp("committed")
    cfg = _make_tiny_config()(base_config, tiny_model_dir, episodes_dir, out)
    cfg["act_head"] = {**cfg["act_head"], "committed_steps": 3}
    return train(cfg, output_dir=out / "run", max_steps=2, progress=False)["last_checkpoint"]


@pytest.fixture(scope="module")
def committed_server(committed_checkpoint, tiny_model_dir, tmp_path_factory):
    srv = start_server(committed_checkpoint, tiny_model_dir, tmp_path_factory.mktemp("srv") / "server.log",
                       "--strategy", "receding")
    yield srv
    stop_server(srv)


def test_the_served_head_reads_the_committed_actions(committed_server, frames):
    with PolicyClient(committed_server.url) as client:
        assert client.health()["policy"]["committed_steps"] == 3
        source = RemotePolicy(client)
        assert source.committed_steps == 3
        told = source.predict_chunk(frames[0], GO, np.array([[0.5, 0.4], [0.5, 0.4], [0.5, -0.4], [0.1, 0.1]]))
        assert source.last["committed_used"] == 3  # four sent, the head takes three
        source.reset()
        bare = source.predict_chunk(frames[0], GO)
        assert source.last["committed_used"] == 0
        assert told.shape == bare.shape == (10, 2) and not np.allclose(told, bare)


@pytest.mark.parametrize("bad", ["nope", "[[1, 2, 3]]", "[[1e999, 0]]", "[[true, 0]]", json.dumps([[0, 0]] * 65),
                                 "{\"a\": 1}"])
def test_malformed_committed_actions_are_a_422_naming_the_field(committed_server, frames, bad):
    from robovlms_mobile.runtime.client import encode_jpeg

    reply = httpx.post(f"{committed_server.url}/act", data={"instruction": GO, "committed": bad},
                       files={"image": ("f.jpg", encode_jpeg(frames[0]), "image/jpeg")}, timeout=60)
    assert reply.status_code == 422 and "'committed'" in reply.json()["detail"], reply.text


def test_a_head_without_them_reports_none_used(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        assert client.health()["policy"]["committed_steps"] == 0
        reply = client.act(frames[0], GO, committed=np.zeros((2, 2)))
        assert reply["committed_used"] == 0


def test_eval_closed_loop_async_over_the_server_tells_the_head(committed_server, tmp_path):
    out = subprocess.run([CLI, "eval", "closed-loop", "--server", committed_server.url, "--episodes", "1",
                          "--scenarios", "1box_left_close", "--frame-size", "36x64", "--gifs", "0", "--max-steps", "6",
                          "--execution", "async", "--delay-steps", "2", "--no-progress", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text())["policy"]["committed_steps"] == 3


def test_a_json_act_carries_committed_as_a_list(committed_server, frames):
    import base64

    from robovlms_mobile.runtime.client import encode_jpeg

    image = base64.b64encode(encode_jpeg(frames[0])).decode("ascii")
    ok = httpx.post(f"{committed_server.url}/act", json={"image": image, "instruction": GO, "committed": [[0.2, 0.0]]},
                    timeout=60)
    assert ok.status_code == 200 and ok.json()["committed_used"] == 1, ok.text
    bad = httpx.post(f"{committed_server.url}/act", json={"image": image, "instruction": GO, "committed": [[0.2]]},
                     timeout=60)
    assert bad.status_code == 422 and "'committed'" in bad.json()["detail"]
