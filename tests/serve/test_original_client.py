"""The lab's original robot client (tests/serve/robot_client.py, after api_client_node.py) drives a real
`robovlms-mobile serve` unchanged; and our client drives an original-API server (`api="original"`)."""

from __future__ import annotations

import base64
import json

import cv2
import httpx
import numpy as np
import pytest
import torch

from robovlms_mobile.data.format import instruction_for
from robovlms_mobile.runtime.client import PolicyClient, PolicyServerError, RemotePolicy
from robovlms_mobile.data.decode import ImageLimits
from robovlms_mobile.serve.images import decode_image
from robot_client import RobotClient
from server_process import start_server, stop_server

KEY = "vla-key-0123456789"
LEFT = instruction_for(1, "left")
TRAINED = [instruction_for(n, side) for n in (1, 2) for side in ("left", "right")]
ROBOT_SENTENCE = "Navigate around obstacles and reach the front of the beverage bottle on the left"  # minuum/vla's


def camera_frames(frames: np.ndarray) -> list[np.ndarray]:
    """The USB camera's view: bgr8 640x480 frames."""
    return [cv2.resize(np.ascontiguousarray(f[..., ::-1]), (640, 480)) for f in frames]


@pytest.fixture(scope="module")
def recorded_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with its training instructions recorded in the plugin metadata."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["mobile_vla"]["instructions"] = TRAINED
    out = tmp_path_factory.mktemp("recorded") / "recorded.ckpt"
    torch.save(ckpt, out)
    return out


@pytest.fixture(scope="module")
def original_server(recorded_checkpoint, tiny_model_dir, tmp_path_factory):
    """serve with the key only in $VLA_API_KEY (as the original server) and an instruction map."""
    folder = tmp_path_factory.mktemp("original-server")
    (folder / "map.json").write_text(json.dumps({"center_straight": LEFT}))
    srv = start_server(recorded_checkpoint, tiny_model_dir, folder / "server.log", "--instruction-map", str(folder / "map.json"),
                       env={"VLA_API_KEY": KEY})
    yield srv
    stop_server(srv)
    log = srv.log.read_text()
    assert "Traceback" not in log, log[-4000:]


def test_health_has_what_the_client_reads(original_server):
    assert RobotClient(original_server.url).model_loaded()  # no key, as run_system_test
    public = httpx.get(original_server.url + "/health").json()
    assert public["status"] == "ok" and public["model_name"] == "recorded" and public["device"] == "cpu"


def test_robot_client_drives_with_one_history_until_reset(original_server, frames):
    robot = RobotClient(original_server.url, api_key=KEY)
    assert robot.reset() == 200
    camera = camera_frames(frames[:10])
    assert all(robot.inference_tick(f) for f in camera), (robot.last_status, robot.last_reply)
    assert robot.fail_count == 0 and robot.success_count == 10
    assert all(isinstance(v, float) for v in robot.latency_history)
    reply = robot.last_reply
    assert {"action", "latency_ms", "model_name", "strategy", "source", "buffer_status"} <= set(reply)
    assert reply["buffer_status"]["window"] == 8 and reply["buffer_status"]["tick"] == 9  # history across calls
    assert reply["instruction_seen"] is True and reply["instruction_used"] == LEFT  # 'center_straight' mapped
    assert robot.reset() == 200
    robot.inference_tick(camera[0])
    assert robot.last_reply["buffer_status"] == {**reply["buffer_status"], "tick": 0, "window": 1, "queries": 1}


def test_predict_matches_an_act_episode_on_the_same_jpegs(original_server, frames):
    """/predict's global history is the same streaming window an /act episode keeps."""
    jpegs = [cv2.imencode(".jpg", cv2.resize(f, (224, 224)))[1].tobytes() for f in camera_frames(frames[:5])]
    headers = {"X-API-Key": KEY}
    httpx.post(original_server.url + "/reset", headers=headers).raise_for_status()
    predicted = [httpx.post(original_server.url + "/predict", headers=headers,
                            json={"image": base64.b64encode(j).decode(), "instruction": LEFT}).json()["action"] for j in jpegs]
    with PolicyClient(original_server.url, api_key=KEY) as client:
        episode = client.reset()
        acted = [client.act(j, LEFT, episode_id=episode)["velocity"] for j in jpegs]
    np.testing.assert_allclose(predicted, acted, rtol=0, atol=1e-6)


def test_unseen_instruction_is_flagged_in_reply_and_log(original_server, frames):
    robot = RobotClient(original_server.url, api_key=KEY, default_instruction=ROBOT_SENTENCE)
    assert robot.inference_tick(camera_frames(frames[:1])[0])
    assert robot.last_reply["instruction_seen"] is False and "instruction_used" not in robot.last_reply
    assert f"instruction {ROBOT_SENTENCE!r}: instruction_seen false" in original_server.log.read_text()


@pytest.mark.parametrize("key", ["", "wrong-key"])
def test_wrong_or_missing_key_is_403_as_the_original(original_server, frames, key):
    robot = RobotClient(original_server.url, api_key=key)
    assert not robot.inference_tick(camera_frames(frames[:1])[0])
    assert robot.last_status == 403 and robot.fail_count == 1
    assert robot.reset() == 403


def test_original_schema_fields(original_server, frames):
    jpeg = cv2.imencode(".jpg", camera_frames(frames[:1])[0])[1].tobytes()
    body = {"image": base64.b64encode(jpeg).decode(), "instruction": LEFT}
    headers = {"X-API-Key": KEY}
    ok = httpx.post(original_server.url + "/predict", headers=headers, json={**body, "strategy": "chunk_reuse", "vlm_model": "kosmos"})
    assert ok.status_code == 200 and ok.json()["strategy_requested"] == "chunk_reuse"
    assert ok.json()["strategy"] == "receding_horizon" and ok.json()["source"] == "inferred"
    bad = httpx.post(original_server.url + "/predict", headers=headers, json={**body, "vlm_model": "paligemma"})
    assert bad.status_code == 422 and "'vlm_model'" in bad.json()["detail"]


def test_cv2_bgr_jpeg_decodes_to_the_true_colours():
    """The robot encodes its BGR frame with OpenCV: a red scene arrives red (RGB) at the model."""
    bgr_red = np.zeros((48, 64, 3), np.uint8)
    bgr_red[..., 2] = 255
    rgb = decode_image(cv2.imencode(".jpg", bgr_red)[1].tobytes(), ImageLimits())
    assert (np.abs(rgb.astype(int) - [255, 0, 0]) <= 3).all()


def test_our_client_drives_an_original_api_server(original_server, frames):
    """api='original' (for labs that switch in steps): POST /predict with X-API-Key, reply 'action'."""
    with PolicyClient(original_server.url, api_key=KEY, api="original") as client:
        policy = RemotePolicy(client, vlm_model="kosmos")
        velocities = [policy.act(f, LEFT) for f in frames[:3]]
        assert policy.last["buffer_status"]["window"] == 3
        policy.reset()
        policy.act(frames[0], LEFT)
        assert policy.last["buffer_status"]["window"] == 1
        with pytest.raises(ValueError, match="native API"):
            client.act(frames[0], LEFT)
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in velocities)
    with PolicyClient(original_server.url, api_key="wrong", api="original") as bad:
        with pytest.raises(PolicyServerError) as err:
            RemotePolicy(bad).act(frames[0], LEFT)
    assert err.value.status == 403


def test_ros_bridge_source_speaks_the_original_api(original_server, frames):
    """`ros-bridge --server URL --api original`: the bridge's action source posts /predict (no ROS needed here)."""
    from robovlms_mobile.cli import build_parser
    from robovlms_mobile.cli.ros import _source

    args = build_parser().parse_args(["ros-bridge", "--server", original_server.url, "--api", "original", "--api-key", KEY,
                                      "--instruction", LEFT])
    source, _ = _source(args)
    try:
        assert source.client.api == "original"
        velocity = source.act(encode_jpeg_bgr(camera_frames(frames[:1])[0]), LEFT)
        assert velocity.shape == (2,) and source.last["buffer_status"]["window"] == 1
    finally:
        source.close()


def encode_jpeg_bgr(bgr: np.ndarray) -> bytes:
    """A CompressedImage's payload as a ROS camera driver writes it (OpenCV JPEG of the bgr8 frame)."""
    return cv2.imencode(".jpg", bgr)[1].tobytes()
