"""Expert episodes are V4 files the dataset reads; `sim show` writes PNG frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from robovlms_mobile.data.dataset import MobileVLAH5Dataset
from robovlms_mobile.data.format import Scenario, instruction_for
from robovlms_mobile.data.writers import event_types_for
from robovlms_mobile.sim.expert import expert_episode, write_expert_episodes
from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, build_world

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def test_v4_files(tmp_path):
    paths = write_expert_episodes(tmp_path, 4, seed=1, frame_size=(36, 64))
    assert len(paths) == 4
    for i, path in enumerate(paths):
        sc = Scenario.from_name(path)
        assert sc == DEFAULT_SCENARIOS[i]
        with h5py.File(path, "r") as f:
            assert set(f) == {"images", "actions", "action_event_types", "language_instruction"}
            assert f["images"].compression == "gzip"
            ep = expert_episode(build_world(sc, [1, 0]), (36, 64))
            assert np.array_equal(f["images"][()], ep.images[..., ::-1])  # BGR on disk
            assert np.array_equal(f["actions"][()], ep.actions) and f["actions"].dtype == np.float32
            assert [e.decode() for e in f["action_event_types"][()]] == event_types_for(ep.actions)
            assert f["language_instruction"][0].decode() == instruction_for(sc.n_boxes, sc.side)
            assert f.attrs["num_frames"] == len(ep.actions) and f.attrs["obstacle_layout_type"] == f"{sc.n_boxes}box_hori"
    ds = MobileVLAH5Dataset(str(tmp_path), split="all", image_size=32)
    assert len(ds) == sum(h5py.File(p, "r")["actions"].shape[0] - 17 for p in paths)
    item = ds[0]
    assert item["rgb"].shape == (8, 3, 32, 32) and item["actions"].abs().max() <= 1.0


def test_noise_injection_leaves_the_route_but_labels_stay_the_experts(tmp_path):
    """DART-style runs execute other keys now and then; the file records the expert's key at every frame."""
    from robovlms_mobile.sim.world import STEP_S

    world = build_world(DEFAULT_SCENARIOS[2], [1, 0])
    clean = expert_episode(world, (36, 64))
    noisy = expert_episode(world, (36, 64), noise=0.5, rng=np.random.default_rng(3))
    assert noisy.outcome.success
    n = min(len(noisy.trail), len(clean.trail))
    assert not np.array_equal(noisy.trail[:n], clean.trail[:n])  # pushed off the route (not merely longer)
    keys = np.abs(noisy.actions[:, :2])
    assert np.all(np.isclose(keys, 0.0) | np.isclose(keys, 1.15))  # key presses only
    executed = np.diff(noisy.trail, axis=0) / STEP_S  # (T, 2) what was driven
    differs = ~np.isclose(executed, noisy.actions[: len(executed), :2], atol=1e-4).all(1)
    assert differs.any()  # some steps drove another key than the recorded one
    assert np.all(np.isclose(executed[differs, 0], noisy.actions[: len(executed)][differs, 0], atol=1e-4))  # sideways only
    assert np.array_equal(expert_episode(world, (36, 64), noise=0.5, rng=np.random.default_rng(3)).actions, noisy.actions)
    paths = write_expert_episodes(tmp_path, 2, seed=1, frame_size=(36, 64), noise=0.3)
    assert len(paths) == 2 and all(h5py.File(p, "r")["actions"].shape[0] >= 18 for p in paths)


def test_sim_show_writes_pngs(tmp_path):
    out = subprocess.run([CLI, "sim", "show", "1box_right_close", "--out", str(tmp_path), "--frame-size", "36x64", "--gif"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "success" and report["instruction"].endswith("on the right and stop in front of the bottle")
    frames = sorted(tmp_path.glob("frame_*.png"))
    assert len(frames) == report["frames"] >= 18
    assert np.asarray(Image.open(frames[0])).shape == (36, 64, 3)
    assert (tmp_path / "map_000.png").is_file() and Image.open(tmp_path / "expert.gif").n_frames > 5  # identical stop frames merge
    bad = subprocess.run([CLI, "sim", "show", "1box_up_close"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "expected e.g. 1box_left_close" in bad.stderr


def test_sim_record_writes_noisy_expert_episodes_and_refuses_bad_flags(tmp_path):
    out = subprocess.run([CLI, "sim", "record", str(tmp_path / "eps"), "-n", "2", "--noise", "0.3", "--frame-size", "36x64",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["episodes"] == 2
    assert len(list((tmp_path / "eps").glob("*.h5"))) == 2
    for flags, word in ((["--noise", "1.5"], "probability"), (["--seed", "1000"], "held out")):
        bad = subprocess.run([CLI, "sim", "record", str(tmp_path / "bad"), "-n", "1", *flags], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and word in bad.stderr and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
