"""--image-service on a real graph: the robot's CSI camera serves frames only through camera_interfaces/srv/GetImage.

camera_interfaces is not on the package index, so the test builds it (tests/ros/camera_interfaces: the
robot's GetImage, response `sensor_msgs/CompressedImage image`, plus a test-only GetRawImage with a raw
`sensor_msgs/Image`) with cmake against the PyPI wheels (`ros-interfaces` extra), cached under
.cache/ros-interfaces. A service node serves 640x480 frames; the bridge polls it by the type name given
on its command line, drives the served policy, and the operator records /cmd_vel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from graph import ROOT, Record, actions, bridge, node, ros_env, zero
from robovlms_mobile.ros.safety import clamp_velocity

SRC = Path(__file__).with_name("camera_interfaces")
API_KEY = "service-test-key-0123456789"
LIMIT = 0.05

pytestmark = [
    pytest.mark.slow,  # a cold build of camera_interfaces takes ~20-60 s on 2 cores
    pytest.mark.skipif(importlib.util.find_spec("rclpy") is None or importlib.util.find_spec("ament_package") is None,
                       reason="needs the ros and ros-interfaces extras (pip install -r requirements-ros.txt)"),
    pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler"),
]


@pytest.fixture(scope="module")
def camera_interfaces() -> dict[str, str]:
    """The env (PYTHONPATH, LD_LIBRARY_PATH) that makes the built camera_interfaces importable."""
    from robovlms_mobile.ros.build_interfaces import build_interface_package, interface_env

    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(p for p in SRC.rglob("*") if p.is_file()):
        digest.update(path.read_bytes())
    prefix = ROOT / ".cache" / "ros-interfaces" / f"camera_interfaces-{digest.hexdigest()[:12]}"
    if not (prefix / "share" / "camera_interfaces" / "package.xml").is_file():
        build_interface_package(SRC, prefix)
    return interface_env(prefix)


@pytest.fixture(scope="module")
def policy_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory):
    spec = importlib.util.spec_from_file_location("_serve_server_process_svc",
                                                  Path(__file__).parents[1] / "serve" / "server_process.py")
    sp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = sp
    spec.loader.exec_module(sp)
    server = sp.start_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory.mktemp("svc-server") / "server.log",
                             env={"ROBOVLMS_MOBILE_API_KEY": API_KEY})
    yield server
    sp.stop_server(server)


@pytest.mark.parametrize("srv_type", ["camera_interfaces/srv/GetImage", "camera_interfaces/srv/GetRawImage"])
def test_bridge_polls_an_image_service_named_at_run_time(srv_type, camera_interfaces, policy_server, tmp_path):
    env = ros_env(**camera_interfaces, ROBOVLMS_MOBILE_API_KEY=API_KEY)
    env["PYTHONPATH"] = f"{camera_interfaces['PYTHONPATH']}:{ROOT}"
    operator = node("operator", tmp_path, str(tmp_path / "cmd_vel.txt"), stdin=True, env=env)
    camera = node("image_service", tmp_path, "get_image_service", srv_type, env=env)
    br = bridge(tmp_path, policy_server.url, "--image-service", "get_image_service", "--image-service-type", srv_type,
                "--max-linear-x", str(LIMIT), "--max-linear-y", str(LIMIT), "--max-accel", "0", env=env)
    record = Record(tmp_path / "cmd_vel.txt")
    try:
        rows = record.wait(lambda rows: sum(not zero(r) for r in rows) >= 5, what="5 moving commands")
        expected = {clamp_velocity(*a["velocity"], LIMIT, LIMIT)[0]
                    for a in actions(tmp_path / "bridge-actions.jsonl") if a["accepted"]}
        moving = [(r.vx, r.vy) for r in rows if not zero(r)]
        assert moving and all(v in expected for v in moving)
        assert f"frames from service get_image_service ({srv_type})" in br.text()
        assert br.stop() == 0 and "Traceback" not in br.text()
    finally:
        for proc in (br, camera, operator):
            proc.stop()
