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
