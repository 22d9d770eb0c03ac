"""The rclpy adapter stays thin and importable without ROS; the command fails cleanly without rclpy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from robovlms_mobile.ros.bridge import RosUnavailableError, fill_twist, frame_from_msg, require_rclpy
from robovlms_mobile.ros.safety import Command

HAS_RCLPY = importlib.util.find_spec("rclpy") is not None
CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def twist() -> SimpleNamespace:
    vec = lambda: SimpleNamespace(x=9.0, y=9.0, z=9.0)  # noqa: E731
    return SimpleNamespace(linear=vec(), angular=vec())


def test_fill_twist_is_planar():
    t = fill_twist(twist(), Command(0.3, -0.2, "ok"))
    assert (t.linear.x, t.linear.y, t.linear.z) == (0.3, -0.2, 0.0)
    assert (t.angular.x, t.angular.y, t.angular.z) == (0.0, 0.0, 0.0)


def test_frame_from_msg():
    raw = SimpleNamespace(height=1, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(frame_from_msg(raw, compressed=False), [[[3, 2, 1], [6, 5, 4]]])
    assert frame_from_msg(SimpleNamespace(data=b"\xff\xd8jpeg"), compressed=True) == b"\xff\xd8jpeg"


def test_importing_the_bridge_does_not_import_rclpy():
    code = "import sys, robovlms_mobile.ros.bridge, robovlms_mobile.ros.cli; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False"


@pytest.mark.skipif(HAS_RCLPY, reason="rclpy is installed here")
def test_without_rclpy_the_command_says_what_to_do():
    with pytest.raises(RosUnavailableError, match="ROS 2 environment"):
        require_rclpy()
    out = subprocess.run([CLI, "ros-bridge", "--server", "http://127.0.0.1:9", "--instruction", "go"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("robovlms-mobile ros-bridge: error: rclpy is not importable")
