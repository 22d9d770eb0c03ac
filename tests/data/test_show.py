"""`data show`: contact sheet in true colour with the action drawn, an animated GIF, the integrated trajectory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robovlms_mobile.data.show import show_episode
from robovlms_mobile.data.kinematics import integrate

from bad_episodes import write_v4, write_v5

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
RED, BLUE = (255, 0, 0), (0, 0, 255)


def test_integrate_body_frame_velocities():
    """Forward then left in the body frame; after a +90 deg turn, 'forward' moves along +y."""
    dt = 0.4
    poses = integrate(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, np.pi / 2 / dt], [1.0, 0, 0]]), dt)
    np.testing.assert_allclose(poses[-1], [0.4, 0.8, np.pi / 2], atol=1e-9)
    assert poses.shape == (5, 3) and not poses[0].any()


def corner(img: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Median colour inside a box (avoids the drawn text / arrow)."""
    return tuple(int(v) for v in np.median(np.asarray(img.crop(box)).reshape(-1, 3), axis=0))


@pytest.mark.parametrize("generation", ["v4", "v5"])
def test_sheet_is_true_colour_and_gif_has_every_frame(tmp_path, generation):
    """A red scene (stored BGR in V4, RGB in V5) is red in the sheet and the GIF; one GIF frame per episode frame."""
    actions = np.zeros((6, 3), np.float32)
    actions[1:4, 0], actions[2, 1] = 1.15, 1.15
    images = np.ascontiguousarray(np.broadcast_to(np.uint8(RED), (6, 40, 64, 3)))
    path = (write_v4 if generation == "v4" else write_v5)(tmp_path / f"episode_20250106_090000_1box_hori_left_core_medium_{generation}.h5",
                                                         actions, images=images)
    result = show_episode(path, tmp_path / "out", width=128, columns=3)
    with Image.open(result["sheet"]) as sheet:
        sheet = sheet.convert("RGB")
        assert sheet.width == 3 * 128 + 4 * 4
        head = sheet.height - 2 * (80 + 4) - 4  # two rows of 128x80 tiles
        assert corner(sheet, (10, head + 30, 40, head + 45)) == RED  # first tile, left of the centre mark
    with Image.open(result["gif"]) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 400
        gif.seek(1)
        assert corner(gif.convert("RGB"), (6, 30, 30, 45)) == RED
    np.testing.assert_allclose(result["final_pose"], [3 * 1.15 * 0.4, 1.15 * 0.4, 0.0], atol=1e-6)
    with Image.open(result["trajectory"]) as traj:
        assert traj.format == "PNG"


def test_arrow_points_the_commanded_way(tmp_path):
    """On a blue frame, a forward command draws yellow above the centre, a left command to the left of it."""
    actions = np.array([[1.15, 0, 0], [0, 1.15, 0]], np.float32)
    path = write_v4(tmp_path / "episode_20250106_090000_1box_hori_left_core_medium.h5", actions,
                    images=np.ascontiguousarray(np.broadcast_to(np.uint8(BLUE), (2, 100, 100, 3))))
    result = show_episode(path, tmp_path / "out", width=200, columns=2)
    with Image.open(result["gif"]) as gif:
        tiles = []
        for t in range(2):
            gif.seek(t)
            tiles.append(np.asarray(gif.convert("RGB")).astype(int))
    yellow = [(t[..., 0] > 200) & (t[..., 1] > 180) & (t[..., 2] < 80) for t in tiles]
    ys, xs = np.nonzero(yellow[0][30:170])  # skip the text bands
    assert len(ys) and ys.mean() + 30 < 100 and abs(xs.mean() - 100) < 10  # forward: up
    ys, xs = np.nonzero(yellow[1][30:170])
    assert len(xs) and xs.mean() < 100 and abs(ys.mean() + 30 - 100) < 10  # left: left


def test_cli(tmp_path):
    path = write_v4(tmp_path / "episode_20250106_090000_1box_hori_left_core_medium.h5", np.zeros((3, 3), np.float32))
    out = subprocess.run([CLI, "data", "show", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for suffix in ("_sheet.png", ".gif", "_trajectory.png"):
        assert (tmp_path / "o" / f"{path.stem}{suffix}").is_file()
    assert "final pose: x +0.00 m" in out.stdout
    bad = subprocess.run([CLI, "data", "show", str(tmp_path / "nothing.h5")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nothing.h5" in bad.stderr and "not a readable HDF5 file" in bad.stderr
