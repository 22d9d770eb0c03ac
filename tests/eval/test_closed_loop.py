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
from robovlms_mobile.eval.closed_loop import evaluate_closed_loop, expert_path_length, run_episode
from robovlms_mobile.eval.policy import BlankInstruction, HttpPolicy, InProcessPolicy, Policy
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
    assert fields["path_length"] == pytest.approx(expert_path_length(world))
    assert policy.seen[0] == ((36, 64, 3), world.instruction)
    assert len(frames) == fields["steps"] + 1 and frames[0].shape == (36, 64 + 36, 3)


def test_constant_policies_are_judged():
    forward = evaluate_closed_loop(Replay([[SPEED, 0.0]] * 40), PAIR, episodes=2, frame_size=SIZE)
    assert forward["overall"]["collision_rate"] == 1.0 and forward["overall"]["success_rate"] == 0.0
    idle = evaluate_closed_loop(Replay([]), PAIR, episodes=1, frame_size=SIZE, max_steps=5)
    assert idle["overall"]["reasons"] == {"timeout": 2}
    assert set(idle["per_scenario"]) == {"1box_left_close", "1box_right_close"}
    assert [e["world_seed"] for e in idle["episodes"]] == [[1000, 0], [1000, 0]]


def test_same_commands_for_both_sides_succeed_at_most_half(tmp_path):
    world = build_world(PAIR[0], [1000, 0])
    left_actions = expert_episode(world, SIZE).actions[:, :2]
    report = evaluate_closed_loop(Replay(left_actions), PAIR, episodes=1, frame_size=SIZE, gif_dir=tmp_path, gifs=2)
    assert report["per_scenario"]["1box_left_close"]["success_rate"] == 1.0
    assert report["per_scenario"]["1box_right_close"]["success_rate"] == 0.0
    assert report["overall"]["path_ratio_vs_expert"] == pytest.approx(1.0)
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
    first = chunked.predict_chunk  # re-plans only every third frame
    calls = []
    chunked.predict_chunk = lambda frame, instruction: calls.append(1) or first(frame, instruction)
    for f in frames[:7]:
        chunked.act(f, text)
    assert len(calls) == 3


def test_blank_instruction_hides_the_instruction():
    inner = Replay([])
    BlankInstruction(inner).act(np.zeros((4, 4, 3), np.uint8), "go left")
    assert inner.seen == [((4, 4, 3), "")]


class _Server(BaseHTTPRequestHandler):
    log: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).log.append((self.path, body))
        reply = {"episode_id": body.get("episode_id")} if self.path == "/reset" else {"velocity": [SPEED, 0.0]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_http_policy_speaks_json_over_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        policy = HttpPolicy(f"http://127.0.0.1:{server.server_port}")
        report = evaluate_closed_loop(policy, PAIR[:1], episodes=1, frame_size=SIZE)
    finally:
        server.shutdown()
    assert report["overall"]["collision_rate"] == 1.0  # the fake server always says "forward"
    routes = [p for p, _ in _Server.log]
    assert routes[0] == "/reset" and set(routes[1:]) == {"/act"}
    body = _Server.log[1][1]
    assert body["episode_id"] == _Server.log[0][1]["episode_id"] and body["instruction"].startswith("go around the box")
    import base64
    import io

    assert Image.open(io.BytesIO(base64.b64decode(body["image"]))).size == (64, 36)


def test_http_policy_unreachable_server_is_one_clear_error():
    with pytest.raises(ConnectionError, match="unreachable"):
        HttpPolicy("http://127.0.0.1:9", timeout=2).reset()
