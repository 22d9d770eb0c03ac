"""Files written by the lab's original collectors (tests/data/collectors.py) are read correctly everywhere.

validate, stats, split, show, convert, the frame cache and MobileVLAH5Dataset; the earliest
collector's files keep one clear error. Spec §7, issue 12.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from robovlms_mobile.data.convert import convert_v5
from robovlms_mobile.data.dataset import InvalidEpisodesError, MobileVLAH5Dataset
from robovlms_mobile.data.episode import check_episode
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.prompt import format_prompt
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.split_file import make_split, stratum_of
from robovlms_mobile.data.stats import collect

import collectors as col

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
RED_BGR = (0, 0, 255)  # what the camera gives for a pure red scene


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One folder of every collector file the lab has (the earliest apart), and the earliest one alone."""
    d = tmp_path_factory.mktemp("lab")
    files = {
        "v4_latest": col.v4_latest(d),
        "v4_latest_short": col.v4_latest(d, n=2, tag="2box_hori_right_variant_far", seed=5),
        "v4_intermediate": col.v4_intermediate(d),
        "v5_raw": col.v5(d, "raw", seed=10),
        "v5_jpeg": col.v5(d, "jpeg", seed=11, sid="target_right_left_path", pos="right"),
        "v5_free": col.v5(d, "jpeg", seed=12, sid="free_center", pos="center"),
        "v5_8class": col.rewrite_instruction(col.v5(d, "jpeg", seed=13, sid="target_center_straight_path", pos="center")),
    }
    free = d / "add_free"
    free.mkdir()
    files["v5_add_free"] = col.add_free_copy(files["v5_jpeg"], free)
    early = tmp_path_factory.mktemp("early")
    return d, files, col.v4_earliest(early)


def test_every_collector_file_validates(lab):
    d, files, _ = lab
    out = subprocess.run([CLI, "data", "validate", str(d), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(files)} file(s):" in out.stdout and "0 with errors" in out.stdout
    assert "file has 2 frames < window + chunk = 18" in out.stdout  # short: a warning, it trains


def test_earliest_collector_file_one_clear_error(lab):
    *_, early = lab
    out = subprocess.run([CLI, "data", "validate", str(early), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (row,) = [line for line in out.stdout.splitlines() if early.name in line]
    assert "earliest V4 collector" in row and "every action is STOP" in row
    check = check_episode(early, min_length=2, max_speed=1.15)
    assert [p.code for p in check.errors] == ["earliest_collector"]


def test_jpeg_red_frame_is_red(tmp_path):
    """A pure red scene written by the JPEG collector decodes as red (RGB), as OpenCV's own imdecode returns it."""
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:] = RED_BGR
    path = col.v5(tmp_path, "jpeg", frames=[frame.copy() for _ in range(8)])
    check = check_episode(path, min_length=2, max_speed=1.15, frames=True)
    assert check.episode is not None and check.episode.storage == "jpeg", check.problems
    with h5py.File(path, "r") as f:
        rgb = read_frames_rgb(f, check.episode, 0, 13)
        opencv = np.stack([cv2.imdecode(b, cv2.IMREAD_COLOR) for b in f["observations/images"][()]])
    assert rgb.shape == (13, 32, 48, 3)
    assert (rgb[..., 0] > 240).all() and (rgb[..., 1:] < 15).all()  # red, not blue
    assert np.abs(rgb.astype(int) - opencv.astype(int)).max() <= 2  # what the collector's own decoder returns
    item = MobileVLAH5Dataset(str(tmp_path), split="all", image_size=16)[0]
    mean = item["rgb"].mean(dim=(0, 2, 3))  # CLIP-normalised: red high, blue low
    assert mean[0] > 1.5 and mean[2] < -1.0


def test_jpeg_cached_equals_uncached_and_matches_add_free_copy(lab, tmp_path):
    d, files, _ = lab
    kw = dict(split="all", image_size=32, pattern="episode_*_target_right_left_path__*.h5")
    plain = MobileVLAH5Dataset(str(d), **kw)
    cached = MobileVLAH5Dataset(str(d), cache_dir=str(tmp_path / "cache"), **kw)
    assert len(plain) == len(cached) == 2  # the JPEG file and its add_free copy (raw, uncompressed, in a subfolder)
    for i in range(2):
        assert torch.equal(plain[i]["rgb"], cached[i]["rgb"])
    jpeg, raw = plain[0]["rgb"], plain[1]["rgb"]  # the copy holds OpenCV's decoding of the same JPEG bytes
    assert (jpeg[:4] - raw[:4]).abs().max() < 0.1  # up to the first mid-episode STOP (removed in the copy)


def test_scenarios_fill_stats_and_strata(lab):
    d, files, _ = lab
    checks = {name: c for name, c in zip(files, check_files(list(files.values()), min_length=2, max_speed=1.15))}
    scen = {name: c.episode.scenario for name, c in checks.items()}
    assert scen["v4_intermediate"] == "2box_vert_right" and scen["v4_latest"] == "1box_hori_left_core_medium"
    assert scen["v5_jpeg"] == "target_right_left_path__core__fixed_right"
    assert scen["v5_add_free"] == scen["v5_jpeg"]  # no attrs: from the name
    assert stratum_of(checks["v5_free"].episode) == ("center", "free", "core", "fixed", "center")
    assert stratum_of(checks["v4_intermediate"].episode)[:3] == ("right", "2box", "unknown")
    assert checks["v4_intermediate"].episode.instruction == "go around the boxes on the right and stop in front of the bottle"
    stats = collect(list(files.values()), progress=False)
    assert stats["episodes"] == len(files) and "unknown" not in stats["scenario_tags"]
    assert stats["scenario"]["side"] == {"left": 2, "right": 4, "center": 2}
    eps = [c.episode for c in checks.values() if c.episode.generation == "v5"]
    doc = make_split(eps, [e.path.name for e in eps], val=0.4, seed=0)
    assert all(e["scenario"] != "unknown" for s in doc["splits"].values() for e in s)


def test_float64_angular_z_and_korean_grounding(lab, tiny_model_dir):
    from transformers import AutoProcessor

    d, files, _ = lab
    with h5py.File(files["v5_8class"], "r") as f:
        assert f["actions"].dtype == np.float64 and np.abs(f["actions"][:, 2]).max() == pytest.approx(0.2)
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    ds = MobileVLAH5Dataset(str(d), tokenizer, split="all", image_size=16, pattern="*center_straight*.h5")
    batch = ds.collater([ds[0]])
    assert batch["raw_text"] == [col.KOREAN_8_CLASS]  # Korean intact
    prompt = format_prompt(batch["raw_text"][0], ds.prompt_template)
    assert prompt.count("<grounding>") == 1 and prompt.endswith("바구니를 향해 직진해.")
    np.testing.assert_allclose(batch["action"][0, :4].numpy() * 1.15, [[1.15, 0], [1.15, 1.15], [1.15, 0], [0, -1.15]],
                               rtol=1e-6)


def test_short_episodes_train_masked(lab, tmp_path):
    """13-frame V5: one window, future steps past the end masked; 2-frame V4: the first frame repeated in front."""
    d, files, _ = lab
    ds = MobileVLAH5Dataset(str(d), split="all", image_size=16)
    window = {ds.episodes[e].path: i for i, (e, _) in enumerate(ds.index)}  # one window per episode here
    assert len(window) == len(ds)
    v5_item = ds[window[files["v5_jpeg"]]]
    assert ds.index[window[files["v5_jpeg"]]][1] == 0
    mask = v5_item["action_mask"].unfold(0, 10, 1)  # (W, C), as the collater builds chunck_mask
    assert torch.equal(mask, torch.tensor([[w + c < 13 for c in range(10)] for w in range(8)]))
    i = window[files["v4_latest_short"]]
    assert ds.index[i][1] == -6  # 2 frames in a window of 8: frame 0 repeated 6 times in front
    item = ds[i]
    assert torch.equal(item["rgb"][0], item["rgb"][6]) and not torch.equal(item["rgb"][6], item["rgb"][7])
    assert item["action_mask"].tolist() == [False] * 6 + [True, True] + [False] * 9
    with pytest.raises(InvalidEpisodesError, match="need at least window \\+ chunk = 18"):
        MobileVLAH5Dataset(str(d), split="all", image_size=16, require_full_chunks=True)


def test_show_and_convert_read_jpeg(lab, tmp_path):
    d, files, _ = lab
    out = subprocess.run([CLI, "data", "show", str(files["v5_jpeg"]), "--out", str(tmp_path / "show")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    v4 = convert_v5(files["v5_jpeg"], tmp_path / "v4")
    src, dst = check_episode(files["v5_jpeg"], min_length=2, max_speed=1.15), check_episode(v4, min_length=2, max_speed=1.15)
    with h5py.File(files["v5_jpeg"], "r") as f, h5py.File(v4, "r") as g:
        np.testing.assert_array_equal(read_frames_rgb(f, src.episode, 0, 13), read_frames_rgb(g, dst.episode, 0, 13))


def test_collector_files_train(lab, tiny_config, tmp_path):
    """Every collector file (2 to 18 frames, raw and JPEG, V4 and V5) trains: finite loss, masked short windows."""
    from robovlms_mobile.train.launcher import train

    d, files, _ = lab
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name].update(data_dir=str(d), val_ratio=0.25)
    result = train(tiny_config, output_dir=tmp_path / "run", max_steps=2, progress=False)
    assert result["global_step"] == 2
    losses = {k: v for k, v in result["metrics"].items() if "loss" in k}
    assert losses and all(np.isfinite(v) for v in losses.values()), result["metrics"]
