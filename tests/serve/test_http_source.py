"""The ROS bridge's HTTP action source and controller against the real server."""

from __future__ import annotations

import numpy as np
import pytest

from robovlms_mobile.ros.controller import DriveController
from robovlms_mobile.ros.safety import OK, SafetyConfig, SafetyLayer
from robovlms_mobile.runtime.client import RemotePolicy as HttpSource
from robovlms_mobile.runtime.client import PolicyClient, PolicyServerError, encode_jpeg

GO = "go around the box on the left and stop in front of the bottle"


@pytest.fixture
def client(server):
    with PolicyClient(server.url, api_key=server.api_key) as c:
        yield c


def test_http_source_keeps_one_episode(client, frames):
    source = HttpSource(client)
    velocities = [source.act(f, GO) for f in frames[:4]]
    assert source.episode_id is not None and source.last["tick"] == 3
    assert all(v.shape == (2,) for v in velocities)
    first_episode = source.episode_id
    source.reset()
    assert source.episode_id == first_episode  # the same id, restarted
    source.act(encode_jpeg(frames[0]), GO)  # encoded bytes (a CompressedImage) go as they are
    assert source.last["tick"] == 0
    np.testing.assert_array_equal(source.act(frames[1], GO), source.last["velocity"])


def test_http_source_restarts_an_evicted_episode(client, frames):
    source = HttpSource(client)
    source.act(frames[0], GO)
    for _ in range(12):  # the test server keeps 12 episodes
        client.reset()
    source.act(frames[1], GO)
    assert source.restarts == 1 and source.last["tick"] == 0


def test_http_source_raises_other_errors(server, frames):
    with PolicyClient(server.url, api_key="wrong") as bad:
        with pytest.raises(PolicyServerError) as err:
            HttpSource(bad).act(frames[0], GO)
    assert err.value.status == 401


def test_controller_over_http_drives_and_stops(client, frames):
    clock = [0.0]
    safety = SafetyLayer(SafetyConfig(max_accel=None, deadline_s=0.5), clock=lambda: clock[0])
    controller = DriveController(HttpSource(client), safety, GO)
    controller.on_frame(frames[0])
    assert controller.tick()
    command = controller.command()
    assert command.state == OK
    np.testing.assert_allclose([command.linear_x, command.linear_y], controller.source.last["velocity"])
    clock[0] += 1.0  # no new frame for a second: the watchdog stops the robot
    assert controller.command()[:3] == (0.0, 0.0, "stale")
