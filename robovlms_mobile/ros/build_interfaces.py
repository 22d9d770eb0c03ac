"""Build a ROS 2 interface package (e.g. the robot's camera_interfaces) against the PyPI wheels.

`python -m robovlms_mobile.ros.build_interfaces SRC_DIR PREFIX` runs cmake configure / build /
install with the venv as the ament and CMake prefix (needs the `ros-interfaces` extra, cmake and a
C/C++ compiler). Afterwards put `PREFIX/lib` on LD_LIBRARY_PATH and PREFIX's site-packages on
PYTHONPATH (`interface_env(PREFIX)` returns both), and the bridge can import the service type.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIXES = Path(__file__).with_name("wheel_fixes.cmake")


def interface_env(prefix: Path | str) -> dict[str, str]:
    """PYTHONPATH and LD_LIBRARY_PATH entries (prepended to the current ones) for an installed package."""
    prefix = Path(prefix)
    site = next(iter(sorted(prefix.glob("lib/python3*/site-packages"))), prefix / "lib")
    env = {}
    for key, value in (("PYTHONPATH", site), ("LD_LIBRARY_PATH", prefix / "lib")):
        env[key] = os.pathsep.join(p for p in (str(value), os.environ.get(key, "")) if p)
    return env


def build_interface_package(src: Path | str, prefix: Path | str, jobs: int = 2) -> Path:
    """Configure, build and install the package in `src` into `prefix` (replaced atomically); returns prefix."""
    src, prefix = Path(src).resolve(), Path(prefix).resolve()
    missing = [tool for tool in ("cmake", "cc", "c++") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"building {src.name} needs {', '.join(missing)} on PATH")
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv),
           "PATH": os.pathsep.join((str(venv / "bin"), os.environ.get("PATH", "")))}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=prefix.parent, prefix=f".{prefix.name}-") as tmp:
        build, staged = Path(tmp) / "build", Path(tmp) / "install"
        steps = [
            ["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={staged}",
             f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", f"-DCMAKE_PROJECT_INCLUDE={FIXES}"],
            ["cmake", "--build", str(build), "-j", str(jobs)],
            ["cmake", "--install", str(build)],
        ]
        for step in steps:
            out = subprocess.run(step, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(step[:2])} failed for {src}:\n{(out.stdout + out.stderr)[-3000:]}")
        if prefix.exists():
            shutil.rmtree(prefix)
        staged.rename(prefix)  # same filesystem: a half-built prefix is never visible
    return prefix


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m robovlms_mobile.ros.build_interfaces SRC_DIR PREFIX")
    try:
        done = build_interface_package(sys.argv[1], sys.argv[2])
    except RuntimeError as exc:
        sys.exit(f"build_interfaces: error: {exc}")
    for key, value in interface_env(done).items():
        print(f"export {key}={value}")
