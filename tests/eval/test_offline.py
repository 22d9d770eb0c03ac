"""Offline evaluation: report fields in real units, instruction sensitivity, the CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robovlms_mobile.data.dataset import MobileVLAH5Dataset
import torch

from robovlms_mobile.eval.offline import OfflineMetrics, offline_report, swap_side
from robovlms_mobile.runtime.loader import BaseModelError, load_for_inference

from sim_fixtures import sim_checkpoint, sim_episodes  # noqa: F401  (fixtures)

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def test_swap_side():
    assert swap_side("go around the box on the left and stop") == "go around the box on the right and stop"
    assert swap_side("right, then left") == "left, then right"
    assert swap_side("go to the bottle") == "go to the bottle"


# three windows of one chunk pair (B=3, W=1, C=2, 2 axes), max speed 2 m/s; row 1 has no side to swap
LABELS = torch.tensor([[[[1, 0], [1, 1]]], [[[0, -1], [0, 0]]], [[[0, 1], [0, 1]]]], dtype=torch.float32)
PRED = torch.tensor([[[[0.5, 0], [1, 0.5]]], [[[0, -0.25], [0.5, 0]]], [[[0, 1], [0, 1]]]])
PRED_SWAPPED = torch.tensor([[[[0.5, 0], [1, -1]]], [[[9, 9], [9, 9]]], [[[0, 0.5], [0, 0]]]])
KEEP = torch.tensor([True, False, True])


def test_offline_metrics_known_answers():
    """Hand-computed: errors (m/s) x = [-1, 0 | 0, 1 | 0, 0], y = [0, -1 | 1.5, 0 | 0, 0] over 6 chunk steps."""
    metrics = OfflineMetrics(chunk=2, max_speed=2.0)
    metrics.add(PRED, LABELS, PRED_SWAPPED, KEEP)
    r = metrics.report()
    assert r["chunk_predictions"] == 3 and r["max_speed"] == 2.0
    assert r["mae_linear_x"] == pytest.approx(2 / 6) and r["mae_linear_y"] == pytest.approx(2.5 / 6)
    assert r["rmse_linear_x"] == pytest.approx((2 / 6) ** 0.5) and r["rmse_linear_y"] == pytest.approx((3.25 / 6) ** 0.5)
    assert r["mae_per_chunk_step"]["linear_x"] == pytest.approx([1 / 3, 1 / 3])
    assert r["mae_per_chunk_step"]["linear_y"] == pytest.approx([1.5 / 3, 1 / 3])
    # a prediction counts as the key press it rounds to (0.5 -> 0, half to even): x agrees 5 of 6, y 4 of 6
    assert r["sign_agreement_linear_x"] == pytest.approx(5 / 6) and r["sign_agreement_linear_y"] == pytest.approx(4 / 6)
    # |swapped - output| on the two swappable rows (4 chunk steps): x 0, y (1.5 + 0.5 + 1) * 2 m/s / 4
    assert r["instruction_sensitivity_linear_x"] == 0.0 and r["instruction_sensitivity_linear_y"] == pytest.approx(1.5)
    # both swappable rows move sideways and are predicted with the right sign; row 0 turns round, row 2 does not
    assert r["lateral_flip_rate"] == 0.5


def test_offline_metrics_sum_over_batches_and_say_when_undefined():
    whole, parts = OfflineMetrics(2, 2.0), OfflineMetrics(2, 2.0)
    whole.add(PRED, LABELS, PRED_SWAPPED, KEEP)
    parts.add(PRED[:1], LABELS[:1], PRED_SWAPPED[:1], KEEP[:1])
    parts.add(PRED[1:], LABELS[1:], PRED_SWAPPED[1:], KEEP[1:])
    assert parts.report() == whole.report()
    exact = OfflineMetrics(2, 2.0)
    exact.add(LABELS, LABELS)  # no instruction swapped: sensitivity and flip rate are undefined, not 0
    r = exact.report()
    assert r["mae_linear_x"] == r["rmse_linear_y"] == 0.0 and r["sign_agreement_linear_y"] == 1.0
    assert r["instruction_sensitivity_linear_y"] is None and r["lateral_flip_rate"] is None
    with pytest.raises(ValueError, match="no window"):
        OfflineMetrics(2, 2.0).report()


def test_offline_report(sim_checkpoint, sim_episodes):
    module, meta = load_for_inference(sim_checkpoint)
    ds = MobileVLAH5Dataset(str(sim_episodes), tokenizer=module.model.tokenizer, split="all")
    report = offline_report(module, ds, meta, batch_size=4)
    assert report["windows"] == len(ds) and report["chunk_predictions"] == len(ds) * 8
    for axis in ("linear_x", "linear_y"):
        assert 0 <= report[f"mae_{axis}"] <= report[f"rmse_{axis}"] <= 2 * 1.15
        assert 0 <= report[f"sign_agreement_{axis}"] <= 1
        assert report[f"instruction_sensitivity_{axis}"] >= 0
        assert len(report["mae_per_chunk_step"][axis]) == 10
    assert np.mean(report["mae_per_chunk_step"]["linear_x"]) == pytest.approx(report["mae_linear_x"], rel=1e-4)
    assert 0 <= report["lateral_flip_rate"] <= 1


def test_base_model_dir_override(sim_checkpoint, tiny_model_dir, tmp_path):
    module, meta = load_for_inference(sim_checkpoint, tiny_model_dir)
    path = str(tiny_model_dir.resolve())
    assert meta.config["vlm"]["pretrained_model_name_or_path"] == path == meta.config["tokenizer"]["pretrained_model_name_or_path"]
    assert meta.model_dir == tiny_model_dir and meta.window == 8 and meta.chunk == 10
    with pytest.raises(BaseModelError, match="no config.json"):
        load_for_inference(sim_checkpoint, tmp_path)


def test_eval_commands(sim_checkpoint, sim_episodes, tiny_model_dir, tmp_path):
    out = subprocess.run([CLI, "eval", "offline", str(sim_checkpoint), str(sim_episodes), "--out", str(tmp_path / "off"),
                          "--base-model-dir", str(tiny_model_dir), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "off" / "report.json").read_text())
    assert summary["mae_linear_y"] == report["mae_linear_y"]
    assert {Path(p).name for p in report["plots"]} == {"error_per_chunk_step.png", "offline_summary.png"}

    out = subprocess.run([CLI, "eval", "closed-loop", str(sim_checkpoint), "--episodes", "1", "--scenarios", "1box_left_close",
                          "2box_right_far", "--frame-size", "36x64", "--gifs", "1", "--max-steps", "6", "--out",
                          str(tmp_path / "cl"), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "cl" / "report.json").read_text())
    assert report["overall"]["episodes"] == 2 and set(report["per_scenario"]) == {"1box_left_close", "2box_hori_right_far"}
    assert len(list((tmp_path / "cl" / "gifs").glob("*.gif"))) == 1 and (tmp_path / "cl" / "closed_loop.png").is_file()

    both = subprocess.run([CLI, "eval", "closed-loop"], capture_output=True, text=True, timeout=300)
    assert both.returncode != 0 and "give a checkpoint or --server URL" in both.stderr
