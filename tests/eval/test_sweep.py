"""`robovlms-mobile sweep`: a grid trains, evaluates and tabulates; bad keys fail before training."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from robovlms_mobile.config import ConfigError
from robovlms_mobile.recipes.sweep import grid, parse_set, set_key
from sim_fixtures import make_tiny_config, sim_episodes  # noqa: F401  (fixture)

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def test_parse_and_grid(base_config):
    assert parse_set("train_setup.lora_r=8,16,32") == ("train_setup.lora_r", [8, 16, 32])
    assert parse_set("scheduler=constant,cosine") == ("scheduler", ["constant", "cosine"])
    runs = grid(base_config, [parse_set("train_setup.lora_r=8,16"), parse_set("window_size=4,8")])
    assert [name for name, _, _ in runs] == ["lora_r-8_window_size-4", "lora_r-8_window_size-8",
                                             "lora_r-16_window_size-4", "lora_r-16_window_size-8"]
    assert runs[1][2]["train_setup"]["lora_r"] == 8 and runs[1][2]["window_size"] == 8
    with pytest.raises(ConfigError, match="unknown key 'train_setup.lora_rank'"):
        grid(base_config, [parse_set("train_setup.lora_rank=3")])
    with pytest.raises(ConfigError, match="'trainr' is not a section"):
        set_key(dict(base_config), "trainr.max_epochs", 3)
    assert grid(base_config, [parse_set("act_head.huber_delta=0.1")])[0][2]["act_head"]["huber_delta"] == 0.1  # known, absent
    with pytest.raises(ConfigError, match="'window_size' = 0: expected a positive integer"):
        grid(base_config, [parse_set("window_size=0")])
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_set("lora_r")


def _check_sweep_outputs(out: Path, scenario_count: int) -> None:
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["run"] for r in rows] == ["lora_r-4", "lora_r-8"] and [r["train_setup.lora_r"] for r in rows] == ["4", "8"]
    assert all(r["steps"] == "2" and 0 <= float(r["success_rate"]) <= 1 and float(r["mae_linear_x"]) >= 0 for r in rows)
    assert all(r["val_loss"] == "" for r in rows)  # 2 steps: no validation ran, so no val loss is claimed
    md = (out / "results.md").read_text()
    assert md.startswith("| run | train_setup.lora_r | steps | val_loss |") and "| lora_r-8 | 8 | 2 |" in md
    assert (out / "closed_loop.png").is_file() and (out / "offline.png").is_file()
    closed = json.loads((out / "lora_r-4" / "closed_loop.json").read_text())
    assert closed["overall"]["episodes"] == scenario_count


def test_sweep_command(base_config, tiny_model_dir, sim_episodes, tmp_path, capsys):
    """The sweep command in this process (one scenario); the slow variant runs the installed CLI."""
    from robovlms_mobile.cli import main

    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(cfg))
    code = main(["sweep", str(tmp_path / "base.json"), "--set", "train_setup.lora_r=4,8", "--max-steps", "2", "--episodes", "1",
                 "--scenarios", "1box_left_close", "--frame-size", "36x64", "--output-dir", str(tmp_path / "sweep"), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert json.loads(printed.out.strip().splitlines()[-1]) == {"runs": 2, "results": str(tmp_path / "sweep" / "results.csv")}
    _check_sweep_outputs(tmp_path / "sweep", scenario_count=1)


@pytest.mark.slow
def test_sweep_command_subprocess(base_config, tiny_model_dir, sim_episodes, tmp_path):
    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(cfg))
    out = subprocess.run([CLI, "sweep", str(tmp_path / "base.json"), "--set", "train_setup.lora_r=4,8", "--max-steps", "2",
                          "--episodes", "1", "--scenarios", "1box_left_close", "1box_right_close", "--frame-size", "36x64",
                          "--output-dir", str(tmp_path / "sweep"), "--no-progress"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_sweep_outputs(tmp_path / "sweep", scenario_count=2)


def test_sweep_with_seeds_trains_them_side_by_side(base_config, tiny_model_dir, sim_episodes, tmp_path, capsys):
    """`--seeds`: one training per seed in worker processes; the row holds mean and std over them."""
    from robovlms_mobile.cli import main

    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    (tmp_path / "base.json").write_text(json.dumps(cfg))
    out = tmp_path / "sweep"
    code = main(["sweep", str(tmp_path / "base.json"), "--set", "train_setup.lora_r=4", "--seeds", "0,1", "--max-steps", "2",
                 "--episodes", "1", "--scenarios", "1box_left_close", "--frame-size", "36x64", "--output-dir", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err[-3000:]
    (row,) = list(csv.DictReader(open(out / "results.csv")))
    assert row["run"] == "lora_r-4" and row["seeds"] == "0 1" and row["steps"] == "2"
    assert 0 <= float(row["success_rate"]) <= 1 and float(row["success_std"]) >= 0 and "blanked_success_rate" in row
    for seed in (0, 1):
        report = json.loads((out / "lora_r-4" / f"seed-{seed}" / "seed_report.json").read_text())
        assert report["seed"] == seed and report["global_step"] == 2
        assert set(report["closed_loop"]) == {"trained", "instruction_blanked", "image_frozen", "untrained"}
        assert (out / "lora_r-4" / f"seed-{seed}" / "last.ckpt").is_file()
        assert "max_steps=2" in (out / "lora_r-4" / f"seed-{seed}" / "train.log").read_text()  # the worker's own log
