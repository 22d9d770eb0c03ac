"""The `robovlms-mobile` entry point: --help everywhere, one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
COMMANDS = ["train", "demo", "make-tiny-model", "generate-episodes", "config"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    out = run(*([command] if command else []), "--help")
    assert out.returncode == 0 and "usage: robovlms-mobile" in out.stdout


def test_make_tiny_model_and_generate_episodes(tmp_path):
    assert run("make-tiny-model", str(tmp_path / "m")).returncode == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "kosmos-2"
    assert run("generate-episodes", str(tmp_path / "e"), "-n", "4", "--frame-size", "36x64").returncode == 0
    assert len(list((tmp_path / "e").glob("episode_*_1box_*.h5"))) == 4


def test_train_reports_bad_config_key_in_one_line(tiny_config, tmp_path):
    tiny_config["train_dataset"]["windw"] = 3
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(tiny_config))
    out = run("train", str(path), "--output-dir", str(tmp_path / "o"))
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"robovlms-mobile train: error: {path}: unknown key 'train_dataset.windw'")


def test_train_lists_every_invalid_episode(tiny_config, episodes_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(episodes_dir, data)
    (data / "episode_20250101_000000_1box_hori_left_core_close.h5").write_text("not hdf5")
    (data / "episode_20250101_000001_1box_hori_right_core_close.h5").write_bytes(b"\x89HDF")
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name]["data_dir"] = str(data)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(tiny_config))
    out = run("train", str(path), "--output-dir", str(tmp_path / "o"), "--no-progress")
    assert out.returncode == 2
    assert "2 invalid episode file(s)" in out.stderr
    assert "000000_1box_hori_left_core_close.h5: not a readable HDF5 file" in out.stderr
    assert "000001_1box_hori_right_core_close.h5: not a readable HDF5 file" in out.stderr


def test_a_bad_train_config_is_answered_before_torch_and_lightning_load(tiny_config, tmp_path):
    """The refusal comes from the config check alone: neither torch nor Lightning is imported for it."""
    tiny_config["batch_size"] = "x"
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(tiny_config))
    probe = ("import sys\nfrom robovlms_mobile.cli import main\ncode = main(['train', sys.argv[1]])\n"
             "print(code, sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "[]"], out.stdout + out.stderr[-2000:]
    assert "'batch_size'" in out.stderr and "Traceback" not in out.stderr
