"""Closed-loop evaluator and policies: outcomes are aggregated right, policies see what they should."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from robovlms_mobile.data.prompt import encode_prompts
from robovlms_mobile.data.transforms import preprocess_frames
from robovlms_mobile.eval.closed_loop import evaluate_closed_loop, expert_run, run_episode
from robovlms_mobile.runtime.in_process import BlankInstruction, InProcessPolicy
from robovlms_mobile.runtime.protocol import Policy
from robovlms_mobile.runtime.client import RemotePolicy
from robovlms_mobile.sim.expert import expert_episode
from robovlms_mobile.sim.scenarios import build_world, parse_scenario
from robovlms_mobile.sim.world import SPEED

from sim_fixtures import sim_checkpoint, sim_episodes  # noqa: F401  (fixtures)

SIZE = (36, 64)
PAIR = [parse_scenario("1box_left_close"), parse_scenario("1box_right_close")]


class Replay:
    """Plays a fixed list of commands, then stops; records what it was shown."""

    def __init__(self, actions):
        self.actions, self.seen, self.i = [np.asarray(a, float) for a in actions], [], 0

    def reset(self):
        self.i = 0

    def act(self, frame_rgb, instruction):
        self.seen.append((frame_rgb.shape, instruction))
        a = self.actions[self.i] if self.i < len(self.actions) else np.zeros(2)
        self.i += 1
        return a


def test_replaying_the_expert_succeeds_with_expert_path_length(tmp_path):
    world = build_world(PAIR[0], [1000, 0])
    ep = expert_episode(world, SIZE)
    policy = Replay(ep.actions[:, :2])
    assert isinstance(policy, Policy)
    fields, frames = run_episode(policy, world, frame_size=SIZE, record=True)
    assert fields["success"] and fields["reason"] == "success"
    assert fields["path_length"] == pytest.approx(expert_run(world)[0]) and fields["moved"]
    assert policy.seen[0] == ((36, 64, 3), world.instruction)
    assert len(frames) == fields["steps"] + 1 and frames[0].shape == (36, 64 + 36, 3)


def test_constant_policies_are_judged():
    forward = evaluate_closed_loop(Replay([[SPEED, 0.0]] * 40), PAIR, episodes=2, frame_size=SIZE)
    assert forward["overall"]["collision_rate"] == 1.0 and forward["overall"]["success_rate"] == 0.0
    assert forward["overall"]["moved_rate"] == 1.0 and forward["overall"]["spl"] == 0.0
    idle = evaluate_closed_loop(Replay([]), PAIR, episodes=1, frame_size=SIZE, max_steps=5)
    assert idle["overall"]["reasons"] == {"timeout": 2} and idle["overall"]["moved_rate"] == 0.0
    assert set(idle["per_scenario"]) == {"1box_left_close", "1box_right_close"}
    assert [e["world_seed"] for e in idle["episodes"]] == [[1000, 0], [1000, 0]]


def test_same_commands_for_both_sides_succeed_at_most_half(tmp_path):
    world = build_world(PAIR[0], [1000, 0])
    left_actions = expert_episode(world, SIZE).actions[:, :2]
    report = evaluate_closed_loop(Replay(left_actions), PAIR, episodes=1, frame_size=SIZE, gif_dir=tmp_path, gifs=2)
    assert report["per_scenario"]["1box_left_close"]["success_rate"] == 1.0
    assert report["per_scenario"]["1box_right_close"]["success_rate"] == 0.0
    assert report["overall"]["path_ratio_vs_expert"] == pytest.approx(1.0)
    assert report["overall"]["spl"] == pytest.approx(0.5)  # 1.0 on the one success, 0 on the failure
    assert len(report["gifs"]) == 2 and Image.open(report["gifs"][0]).n_frames > 3


def test_in_process_policy_matches_forward_on_its_window(sim_checkpoint):
    policy = InProcessPolicy.from_checkpoint(sim_checkpoint)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (36, 64, 3), dtype=np.uint8) for _ in range(10)]
    text = "go around the box on the left and stop in front of the bottle"
    outs = [policy.act(f, text) for f in frames]
    assert len(policy.episode.history) == policy.meta.window == 8
    rgb = preprocess_frames(np.stack(frames[-8:]), 224)[None]
    ids, mask = encode_prompts(policy.module.model.tokenizer, [text], policy.meta.prompt_template)
    with torch.no_grad():
        ref = policy.module.model.forward_continuous(rgb, ids, attention_mask=mask, mode="inference")[0][0, -1, 0]
    assert np.allclose(outs[-1], ref.numpy() * 1.15, atol=1e-5)
    policy.reset()
    assert len(policy.episode.history) == 0
    chunked = InProcessPolicy(policy.module, policy.meta, chunk_steps=3)
    for f in frames[:7]:  # re-plans only every third frame
        chunked.act(f, text)
    assert chunked.episode.queries == 3


def test_blank_instruction_hides_the_instruction():
    inner = Replay([])
    BlankInstruction(inner).act(np.zeros((4, 4, 3), np.uint8), "go left")
    assert inner.seen == [((4, 4, 3), "")]


class _Server(BaseHTTPRequestHandler):
    """A stand-in policy server on 127.0.0.1 speaking both wire APIs; records route, key header and raw body."""

    log: list = []

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).log.append((self.path, self.headers.get("X-API-Key"), raw))
        if self.path == "/reset":
            reply = {"episode_id": json.loads(raw).get("episode_id") or "ep-1"} if raw else {"status": "success"}
        elif self.path == "/act":
            reply = {"velocity": [SPEED, 0.0]}
        else:  # /predict, the original server's reply
            reply = {"action": [SPEED, 0.0], "latency_ms": 1.5, "model_name": "m", "strategy": "receding_horizon",
                     "source": "inferred", "buffer_status": {}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in_server():
    _Server.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_remote_policy_native_api_sends_key_and_episode(stand_in_server):
    policy = RemotePolicy.connect(stand_in_server, api_key="k-123")
    report = evaluate_closed_loop(policy, PAIR[:1], episodes=1, frame_size=SIZE)
    assert report["overall"]["collision_rate"] == 1.0  # the stand-in always says "forward"
    routes = [p for p, _, _ in _Server.log]
    assert routes[0] == "/reset" and set(routes[1:]) == {"/act"}
    assert {key for _, key, _ in _Server.log} == {"k-123"}
    assert json.loads(_Server.log[0][2]) == {}  # a new episode: the server names it
    act_body = _Server.log[1][2]  # multipart: instruction, episode id and a JPEG file part
    assert b'name="instruction"' in act_body and b"go around the box" in act_body and b"ep-1" in act_body
    assert b"\xff\xd8\xff" in act_body


def test_remote_policy_original_api_posts_predict(stand_in_server):
    policy = RemotePolicy.connect(stand_in_server, api_key="k-123", api="original")
    evaluate_closed_loop(policy, PAIR[:1], episodes=1, frame_size=SIZE)
    routes = [p for p, _, _ in _Server.log]
    assert routes[0] == "/reset" and _Server.log[0][2] == b"" and set(routes[1:]) == {"/predict"}  # reset with no body
    body = json.loads(_Server.log[1][2])
    assert set(body) == {"image", "instruction"} and body["instruction"].startswith("go around the box")
    import base64
    import io

    assert Image.open(io.BytesIO(base64.b64decode(body["image"]))).size == (64, 36)


def test_eval_cli_sends_the_api_key_from_the_environment(stand_in_server, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("robovlms-mobile"))
    out = subprocess.run([cli, "eval", "closed-loop", "--server", stand_in_server, "--episodes", "1", "--scenarios",
                          "1box_left_close", "--frame-size", "36x64", "--gifs", "0", "--no-progress", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ROBOVLMS_MOBILE_API_KEY": "env-key-1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert {key for _, key, _ in _Server.log} == {"env-key-1"}


def test_remote_policy_unreachable_server_is_one_clear_error():
    with pytest.raises(ConnectionError, match="unreachable"):
        RemotePolicy.connect("http://127.0.0.1:9", timeout=2).reset()


def _eval_cli(*args, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("robovlms-mobile"))
    out = subprocess.run([cli, "eval", "closed-loop", *args, "--episodes", "1", "--scenarios", "1box_left_close",
                          "--gifs", "0", "--no-progress", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads((tmp_path / "report.json").read_text()), out.stderr


def test_eval_cli_drives_as_the_checkpoint_was_trained(sim_checkpoint, sim_episodes, tmp_path):
    """No flags: the checkpoint's frame size and worlds, the test split, the overlap with its training data."""
    report, err = _eval_cli(str(sim_checkpoint), tmp_path=tmp_path / "a")
    assert report["settings"]["frame_size"] == [36, 64] and report["settings"]["worlds"] == "iid"
    assert report["settings"]["seed"] == 1000 and "notice" not in err
    assert 0 < report["seen_in_training"]["training_sequences"] <= 6  # distinct key sequences of its 6 training episodes
    report, err = _eval_cli(str(sim_checkpoint), "--frame-size", "48x80", "--reference", "image_frozen", tmp_path=tmp_path / "b")
    assert report["settings"]["frame_size"] == [48, 80] and report["policy"]["reference"] == "image_frozen"
    assert err.count("notice") == 1 and "differs from the 36x64 frames the checkpoint was trained on" in err
    report, _ = _eval_cli("--reference", "replay", "--train-data", str(sim_episodes), "--frame-size", "36x64",
                          "--worlds", "ood", "--scenarios", "2box_vert_left_far", tmp_path=tmp_path / "c")
    assert report["settings"]["worlds"] == "ood" and report["settings"]["seed"] == 3000 and report["overall"]["moved_rate"] == 1.0
