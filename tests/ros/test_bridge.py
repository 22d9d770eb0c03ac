"""The rclpy adapter stays thin and importable without ROS; the command fails cleanly without rclpy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from sensor_msgs.msg import CompressedImage, Image

from robovlms_mobile.cli import main
from robovlms_mobile.ros.bridge import fill_twist, frame_from_msg
from robovlms_mobile.ros.env import DiscoveryRangeError, prepare_ros_environment
from robovlms_mobile.ros.safety import Command

HAS_RCLPY = importlib.util.find_spec("rclpy") is not None
CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def twist() -> Twist:
    t = Twist()
    for vec in (t.linear, t.angular):
        vec.x = vec.y = vec.z = 9.0
    return t


def test_fill_twist_is_planar():
    t = fill_twist(twist(), Command(0.3, -0.2, "ok"))
    assert (t.linear.x, t.linear.y, t.linear.z) == (0.3, -0.2, 0.0)
    assert (t.angular.x, t.angular.y, t.angular.z) == (0.0, 0.0, 0.0)


def test_frame_from_msg():
    raw = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(frame_from_msg(raw, compressed=False), [[[3, 2, 1], [6, 5, 4]]])
    assert frame_from_msg(CompressedImage(format="jpeg", data=b"\xff\xd8jpeg"), compressed=True) == b"\xff\xd8jpeg"
    with pytest.raises(ValueError, match="empty CompressedImage"):
        frame_from_msg(CompressedImage(format="jpeg", data=b""), compressed=True)


def test_importing_the_bridge_does_not_import_rclpy():
    code = "import sys, robovlms_mobile.ros.bridge, robovlms_mobile.cli.ros; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False"


def test_without_rclpy_the_command_says_what_to_do():
    # rclpy made unimportable in a fresh interpreter (None in sys.modules), whether or not the wheels are installed
    code = ("import sys; sys.modules['rclpy'] = None; from robovlms_mobile.cli import main; "
            "sys.exit(main(['ros-bridge', '--server', 'http://127.0.0.1:9', '--instruction', 'go']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("robovlms-mobile ros-bridge: error: rclpy is not importable: install the ROS 2 wheels")


@pytest.mark.parametrize("env, flag, expected", [
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, [], "$ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET': expected LOCALHOST"),
    ({"ROS_STATIC_PEERS": "192.0.2.1"}, [], "$ROS_STATIC_PEERS is set"),
    ({}, ["--max-linear-x", "nan"], "--max-linear-x must be a finite number > 0"),
    ({}, ["--tick-hz", "0"], "--tick-hz must be a finite number > 0"),
    ({}, ["--stop-speed", "-1"], "--stop-speed must be a finite number >= 0"),
    ({}, ["--image-service", "get_image_service", "--image-service-type", "sensor_msgs/GetImage"],
     "--image-service-type 'sensor_msgs/GetImage': sensor_msgs.srv has no service 'GetImage'"),
    ({}, ["--image-service", "get_image_service", "--image-service-type", "os/srv/System"],
     "--image-service-type 'os/srv/System': the interface package 'os' is not importable"),
    ({}, ["--image-service", "s", "--image-service-type", "sensor_msgs/srv/SetCameraInfo"],
     "--image-service-field 'image': expected a response field of type sensor_msgs/Image or sensor_msgs/CompressedImage"),
])
def test_refusals_are_one_line_before_any_node_starts(env, flag, expected, monkeypatch, capsys):
    if not HAS_RCLPY:
        pytest.skip("needs the ROS 2 wheels")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # restored after the test
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["ros-bridge", "--server", "http://127.0.0.1:9", "--instruction", "go", *flag]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.strip().startswith(f"robovlms-mobile ros-bridge: error: {expected}")


def test_discovery_range_is_pinned_to_localhost():
    env: dict[str, str] = {}
    assert prepare_ros_environment(environ=env) == "LOCALHOST"
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost"}
    assert prepare_ros_environment(environ=env) == "LOCALHOST"
    with pytest.raises(DiscoveryRangeError, match="--allow-network-discovery"):
        prepare_ros_environment(environ={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert prepare_ros_environment(True, environ={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}) == "SUBNET"
