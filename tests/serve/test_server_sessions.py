"""A real policy server on 127.0.0.1: 8 concurrent clients, isolated episodes, /reset and /health semantics."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from robovlms_mobile.data.synthetic import Scenario, make_episode
from robovlms_mobile.runtime.client import PolicyClient, PolicyServerError, encode_jpeg

CLIENTS, REQUESTS = 8, 25  # 200 /act requests in all
INSTRUCTIONS = ["go around the box on the left and stop in front of the bottle",
                "go around the box on the right and stop in front of the bottle"]


def client_sequences() -> list[tuple[str, list[bytes]]]:
    """Per client: its instruction and 25 JPEG frames of its own episode."""
    out = []
    for c in range(CLIENTS):
        side = ("left", "right")[c % 2]
        images = make_episode(Scenario(side=side), seed=100 + c, frame_size=(72, 128), length=REQUESTS).images
        out.append((INSTRUCTIONS[c % 2], [encode_jpeg(f) for f in images]))
    return out


def drive(server, instruction: str, jpegs: list[bytes], barrier: threading.Barrier | None = None) -> list[dict]:
    with PolicyClient(server.url, api_key=server.api_key) as client:
        episode = client.reset()
        if barrier is not None:
            barrier.wait()
        return [client.act(j, instruction, episode_id=episode) for j in jpegs]


def test_health_and_key_gating(server):
    public = httpx.get(server.url + "/health").json()  # liveness and the original server's fields, without the key
    assert public == {"status": "ok", "model_loaded": True, "model_name": "last", "device": "cpu"}
    with PolicyClient(server.url, api_key=server.api_key) as client:
        health = client.health()
    assert health["policy"]["chunk_size"] == 10 and health["policy"]["strategy"] == {"name": "reuse", "reuse_steps": 2}
    assert health["limits"]["max_body_bytes"] == 1024 * 1024
    assert "api_key" not in str(health) and server.api_key not in str(health)


def test_eight_concurrent_clients_200_requests_isolated_episodes(server):
    sequences = client_sequences()
    # reference: each sequence alone, one after the other
    expected = [drive(server, instruction, jpegs) for instruction, jpegs in sequences]
    # the same sequences, 8 clients at once (their requests interleave on the server)
    barrier = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(drive, server, instruction, jpegs, barrier) for instruction, jpegs in sequences]
        got = [f.result() for f in futures]  # any non-2xx raises PolicyServerError here
    assert sum(len(g) for g in got) == CLIENTS * REQUESTS
    for c in range(CLIENTS):
        assert [r["tick"] for r in got[c]] == list(range(REQUESTS))
        assert [r["queried"] for r in got[c]] == [t % 2 == 0 for t in range(REQUESTS)]  # reuse 2
        assert [r["window"] for r in got[c]] == [min(t // 2 + 1, 8) for t in range(REQUESTS)]
        for a, b in zip(got[c], expected[c]):
            assert a["velocity"] == b["velocity"] and a["chunk"] == b["chunk"]
    # different instructions and frames really give different actions (isolation is not vacuous)
    assert got[0][-1]["velocity"] != got[1][-1]["velocity"]


def test_act_response_shape_and_units(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        episode = client.reset()
        r = client.act(frames[0], INSTRUCTIONS[0], episode_id=episode)
    assert r["episode_id"] == episode and r["axes"] == ["linear_x", "linear_y"]
    assert len(r["velocity"]) == 2 and np.array(r["chunk"]).shape == (10, 2)
    assert r["velocity"] == r["chunk"][0]  # first tick of reuse: step 0 of the fresh chunk
    assert np.all(np.abs(r["chunk"]) <= 1.15)
    assert set(r["latency_ms"]) == {"policy", "model", "queue", "server"} and r["latency_ms"]["model"] > 0


def test_reset_restarts_an_episode(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        episode = client.reset("robot-7")
        assert episode == "robot-7"
        first = [client.act(f, INSTRUCTIONS[0], episode_id=episode) for f in frames[:3]]
        assert client.http.post("/reset", json={"episode_id": episode}).json()["restarted"] is True
        again = client.act(frames[0], INSTRUCTIONS[0], episode_id=episode)
    assert again["tick"] == 0 and again["window"] == 1 and again["velocity"] == first[0]["velocity"]


def test_unknown_episode_needs_reset_or_start(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        with pytest.raises(PolicyServerError) as err:
            client.act(frames[0], INSTRUCTIONS[0], episode_id="never-started")
        assert err.value.status == 404 and err.value.code == "unknown_episode"
        r = client.act(frames[0], INSTRUCTIONS[0], episode_id="never-started", start=True)
        assert r["tick"] == 0
        assert client.act(frames[1], INSTRUCTIONS[0], episode_id="never-started")["tick"] == 1


def test_least_recently_used_episode_is_evicted(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        oldest = client.reset()
        for _ in range(12):  # capacity 12
            client.reset()
        with pytest.raises(PolicyServerError, match="unknown_episode"):
            client.act(frames[0], INSTRUCTIONS[0], episode_id=oldest)
        assert client.health()["episodes"]["evicted"] >= 1


def test_one_off_query_without_episode(server, frames):
    with PolicyClient(server.url, api_key=server.api_key) as client:
        a = client.act(frames[0], INSTRUCTIONS[0])
        b = client.act(frames[0], INSTRUCTIONS[0])
    assert a["episode_id"] is None and a["tick"] == 0 and a["window"] == 1 and a["velocity"] == b["velocity"]


def test_json_base64_and_png_upload_agree(server, frames):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frames[0]).save(buf, format="PNG")
    png = buf.getvalue()
    with PolicyClient(server.url, api_key=server.api_key) as client:
        multipart = client.act(png, INSTRUCTIONS[0])
        as_json = client.http.post("/act", json={"image": base64.b64encode(png).decode(), "instruction": INSTRUCTIONS[0]}).json()
        data_url = client.http.post("/act", json={"image": "data:image/png;base64," + base64.b64encode(png).decode(),
                                                  "instruction": INSTRUCTIONS[0]}).json()
        bearer = httpx.post(server.url + "/act", json={"image": base64.b64encode(png).decode(), "instruction": INSTRUCTIONS[0]},
                            headers={"Authorization": f"Bearer {server.api_key}"}).json()
    assert multipart["velocity"] == as_json["velocity"] == data_url["velocity"] == bearer["velocity"]
