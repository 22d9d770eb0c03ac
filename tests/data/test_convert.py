"""`data convert`: real MCAP bags (rosbag2 layout too) and V5 files -> V4 episodes, round-tripped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from robovlms_mobile.data.convert import ConversionError, convert_bag, convert_v5, read_bag
from robovlms_mobile.data.dataset import MobileVLAH5Dataset
from robovlms_mobile.data.episode import check_episode
from robovlms_mobile.data.format import Scenario, instruction_for
from robovlms_mobile.data.synthetic import generate_episodes, make_episode
from robovlms_mobile.data.writers import event_types_for

from bags import MS, write_mcap, write_rosbag2

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
SIZE = (24, 32)
F, L, R, FL, FR, Z = (1.15, 0, 0), (0, 1.15, 0), (0, -1.15, 0), (1.15, 1.15, 0), (1.15, -1.15, 0), (0, 0, 0)
PLAN = [Z, F, FL, F, FR, F, L, F, R, F, (0, 0, 0.2), F, Z]  # no two consecutive commands equal


def camera_and_commands(images: np.ndarray, actions: np.ndarray, period_ms: int = 400, camera_ms: int = 100):
    """Camera at 10 Hz showing images[k] during step k; command k (k >= 1) published 50 ms into step k."""
    per_step = period_ms // camera_ms
    cam = [((k * period_ms + j * camera_ms) * MS, images[k]) for k in range(len(images)) for j in range(per_step)]
    cmds = [((k * period_ms + 50) * MS, actions[k]) for k in range(1, len(actions))]
    return cam, cmds


@pytest.fixture(scope="module")
def source():
    """A V4-style recording whose consecutive commands all differ: one frame per change reproduces it exactly."""
    actions = np.array(PLAN, np.float32)
    images = make_episode(Scenario(side="left"), seed=4, frame_size=SIZE, length=len(PLAN)).images
    return images, actions


def read_v4(path):
    with h5py.File(path, "r") as f:
        return (f["images"][()][..., ::-1], f["actions"][()], [e.decode() for e in f["action_event_types"][()]],
                f["language_instruction"][0].decode(), dict(f.attrs))


@pytest.mark.parametrize("kind", ["rgb8", "bgr8", "rgba8", "png"])
def test_change_mode_round_trip(tmp_path, source, kind):
    """V4 episode -> bag (Image rgb8/bgr8/rgba8 or CompressedImage png) -> V4: identical frames, actions, events."""
    images, actions = source
    bag = write_mcap(tmp_path / "run.mcap", *camera_and_commands(images, actions), kind=kind)
    out = convert_bag(bag, tmp_path / "v4", camera_topic="/camera/image_raw", scenario="1box_hori_left_core_medium")
    assert out.name == "episode_19700101_000000_1box_hori_left_core_medium.h5"
    got_images, got_actions, events, instruction, attrs = read_v4(out)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_actions, actions)
    assert events == event_types_for(actions) and events[0] == "episode_start"
    assert instruction == instruction_for(1, "left")
    assert attrs["num_frames"] == len(PLAN) and attrs["frames_mode"] == "change" and attrs["obstacle_layout_type"] == "1box_hori"
    check = check_episode(out, min_length=len(PLAN), max_speed=1.15, frames=True)
    assert check.problems == [], check.problems


def test_jpeg_frames_close(tmp_path, source):
    images, actions = source
    bag = write_mcap(tmp_path / "run.mcap", *camera_and_commands(images, actions), kind="jpeg")
    got_images, got_actions, *_ = read_v4(convert_bag(bag, tmp_path / "v4", camera_topic="/camera/image_raw",
                                                      instruction="drive"))
    assert got_images.shape == images.shape and np.abs(got_images.astype(int) - images).mean() < 6
    np.testing.assert_array_equal(got_actions, actions)


def test_repeated_commands_collapse_to_changes(tmp_path):
    """A keyboard bag where the same key is pressed twice in a row: one frame per *change*, showing the newest image."""
    ep = make_episode(Scenario(side="right", distance="far"), seed=1, frame_size=SIZE, length=18)
    bag = write_mcap(tmp_path / "keys.mcap", *camera_and_commands(ep.images, ep.actions))
    rec = read_bag(bag, camera_topic="/camera/image_raw")
    keep, prev = [0], np.zeros(3, np.float32)
    for k in range(1, 18):
        if not np.array_equal(ep.actions[k], prev):
            keep.append(k)
        prev = ep.actions[k]
    assert len(keep) < 18  # the synthetic plan repeats keys
    np.testing.assert_array_equal(rec.images, ep.images[keep])
    np.testing.assert_array_equal(rec.actions[1:], ep.actions[keep[1:]])
    assert not rec.actions[0].any() and rec.events == event_types_for(rec.actions)
    assert list(rec.times_ns) == [0] + [(400 * k + 50) * MS for k in keep[1:]]


def test_rate_mode(tmp_path, source):
    """--frames rate: frame k at k / fps with the newest image and the command in force then."""
    images, actions = source
    bag = write_mcap(tmp_path / "run.mcap", *camera_and_commands(images, actions))
    rec = read_bag(bag, camera_topic="/camera/image_raw", mode="rate", fps=2.5)
    n = len(PLAN)
    assert list(rec.times_ns) == [400 * k * MS for k in range(n)]
    np.testing.assert_array_equal(rec.images, images)
    np.testing.assert_array_equal(rec.actions, np.concatenate([np.zeros((1, 3), np.float32), actions[:-1]]))
    assert len(read_bag(bag, camera_topic="/camera/image_raw", mode="rate", fps=10).images) == 4 * n


def test_rosbag2_folder_split_over_files(tmp_path, source):
    """A rosbag2 folder (metadata.yaml + 3 .mcap parts) converts like the single file, through the CLI."""
    images, actions = source
    folder = write_rosbag2(tmp_path / "rosbag2_2025_01_06", *camera_and_commands(images, actions), parts=3)
    assert len(list(folder.glob("*.mcap"))) == 3
    out = subprocess.run([CLI, "data", "convert", str(folder), "--out", str(tmp_path / "v4"),
                          "--scenario", "2box_vert_right_variant_far"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (path,) = (tmp_path / "v4").glob("*.h5")
    assert path.name.endswith("_2box_vert_right_variant_far.h5") and str(path) in out.stdout
    got_images, got_actions, _, instruction, _ = read_v4(path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_actions, actions)
    assert instruction == instruction_for(2, "right")
    validate = subprocess.run([CLI, "data", "validate", str(tmp_path / "v4"), "--window", "4", "--chunk", "5"],
                              capture_output=True, text=True, timeout=300)
    assert validate.returncode == 0, validate.stdout


def test_bag_errors_name_the_problem(tmp_path, source):
    images, actions = source
    cam, cmds = camera_and_commands(images, actions)
    bag = write_mcap(tmp_path / "run.mcap", cam, cmds)
    with pytest.raises(ConversionError, match=r"no topic '/front_camera'.*'/camera/image_raw': 'sensor_msgs/msg/Image'.*--camera-topic"):
        read_bag(bag, camera_topic="/front_camera")
    with pytest.raises(ConversionError, match=r"topic '/chatter' is std_msgs/msg/String"):
        read_bag(bag, camera_topic="/camera/image_raw", cmd_topic="/chatter")
    mono = write_mcap(tmp_path / "mono.mcap", cam, cmds, kind="mono8")
    with pytest.raises(ConversionError, match="encoding 'mono8'"):
        read_bag(mono, camera_topic="/camera/image_raw")
    with pytest.raises(ConversionError, match="--scenario"):
        convert_bag(bag, tmp_path / "o", camera_topic="/camera/image_raw")
    with pytest.raises(ConversionError, match="--scenario '3box_left'"):  # '1box_left' is a valid (intermediate) V4 tag
        convert_bag(bag, tmp_path / "o", camera_topic="/camera/image_raw", scenario="3box_left")
    sqlite = write_rosbag2(tmp_path / "sqlite_bag", cam, cmds, parts=1, storage="sqlite3")
    with pytest.raises(ConversionError, match="storage 'sqlite3' is not supported"):
        read_bag(sqlite, camera_topic="/camera/image_raw")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all" * 10)
    with pytest.raises(ConversionError, match="junk.mcap"):
        read_bag(tmp_path / "junk.mcap", camera_topic="/camera/image_raw")


def test_cli_keeps_going_and_reports_each_failure(tmp_path, source):
    """One bad source does not stop the others; exit code 1, one error line per failed source."""
    images, actions = source
    good = write_mcap(tmp_path / "good.mcap", *camera_and_commands(images, actions))
    (tmp_path / "junk.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 64)
    out = subprocess.run([CLI, "data", "convert", str(tmp_path / "junk.mcap"), str(good), str(tmp_path / "missing.mcap"),
                          "--out", str(tmp_path / "v4"), "--instruction", "go"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "junk.mcap" in out.stderr and "missing.mcap: does not exist" in out.stderr
    assert "1 V4 file(s) written, 2 source(s) failed" in out.stdout and len(list((tmp_path / "v4").glob("*.h5"))) == 1


def test_v5_to_v4(tmp_path):
    """V5 (RGB) -> V4 (BGR on disk): the dataset yields identical items from both; instruction and attrs kept."""
    v5_files = generate_episodes(tmp_path / "v5", 2, seed=2, frame_size=SIZE, generation="v5")
    out = subprocess.run([CLI, "data", "convert", str(tmp_path / "v5"), "--out", str(tmp_path / "v4")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for src in v5_files:
        dst = tmp_path / "v4" / src.name
        with h5py.File(src, "r") as f5, h5py.File(dst, "r") as f4:
            np.testing.assert_array_equal(f4["images"][()], f5["observations/images"][()][..., ::-1])
            np.testing.assert_array_equal(f4["actions"][()], f5["actions"][()])
            assert f4["language_instruction"][()] == f5["language_instruction"][()]
            assert [e.decode() for e in f4["action_event_types"][()]] == event_types_for(f5["actions"][()])
            assert f4.attrs["v5_scenario"] == f5.attrs["scenario"] and f4.attrs["converted_from"] == "v5"
        assert check_episode(dst, min_length=18, max_speed=1.15).errors == []
    a = MobileVLAH5Dataset(str(tmp_path / "v5"), split="all", window_size=4, fwd_pred_next_n=5, image_size=32)
    b = MobileVLAH5Dataset(str(tmp_path / "v4"), split="all", window_size=4, fwd_pred_next_n=5, image_size=32)
    assert [e.generation for e in b.episodes] == ["v4", "v4"] and len(a) == len(b)
    for i in range(0, len(a), 7):
        x, y = a[i], b[i]
        assert torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["actions"], y["actions"]) and x["instruction"] == y["instruction"]
    with pytest.raises(ConversionError, match="is V4, not V5"):
        convert_v5(tmp_path / "v4" / v5_files[0].name, tmp_path / "again")
    with pytest.raises(ConversionError, match="another folder"):
        convert_v5(v5_files[0], tmp_path / "v5")
