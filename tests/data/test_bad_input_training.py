"""Bad files at training time: `skip_invalid: false` refuses to start listing every one; `true` skips them with a count."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robovlms_mobile.data.dataset import InvalidEpisodesError, MobileVLAH5Dataset
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.split_file import make_split, write_split_file
from robovlms_mobile.train.launcher import preflight_data, train

from bad_episodes import write_bad_files

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


@pytest.fixture
def mixed(episodes_dir, tmp_path):
    """The 10 session episodes plus every kind of malformed file (and the duplicate's valid original)."""
    d = tmp_path / "data"
    shutil.copytree(episodes_dir, d)
    return d, write_bad_files(d)


def test_dataset_skips_with_a_warning_and_a_count(mixed, caplog):
    d, expected = mixed
    with caplog.at_level(logging.WARNING, logger="robovlms_mobile.data"):
        ds = MobileVLAH5Dataset(str(d), split="all", skip_invalid=True)
    total = 10 + 1 + len(expected)
    assert f"skip_invalid: skipping {len(expected)} invalid episode file(s) of {total}" in caplog.text
    for name, defect in expected.items():
        assert f"{d / name}: " in caplog.text and defect.text in caplog.text
    assert {e.path.name for e in ds.invalid_files} == set(expected)
    assert len(ds.episodes) == 11 and not {e.path.name for e in ds.episodes} & set(expected)
    with pytest.raises(InvalidEpisodesError) as info:
        MobileVLAH5Dataset(str(d), split="all")
    assert {e.path.name for e in info.value.errors} == set(expected)


def test_preflight_follows_skip_invalid(mixed, tiny_config):
    d, expected = mixed
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name]["data_dir"] = str(d)
    with pytest.raises(InvalidEpisodesError) as info:
        preflight_data(tiny_config)
    assert str(info.value).startswith(f"{len(expected)} invalid episode file(s)")
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name]["skip_invalid"] = True
    preflight_data(tiny_config)


def test_training_starts_and_skips_them(mixed, tiny_config, tmp_path, caplog):
    """In process, through upstream's GRDataModule: skip_invalid, a split file and the frame cache together."""
    d, expected = mixed
    valid = [c for c in check_files(sorted(d.glob("*.h5")), min_length=18, max_speed=1.15) if c.episode]
    split = write_split_file(tmp_path / "split.json", make_split([c.episode for c in valid], [c.path.name for c in valid],
                                                                 val=0.25, seed=0))
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name].update(data_dir=str(d), skip_invalid=True, split_file=str(split), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="robovlms_mobile.data"):
        result = train(tiny_config, output_dir=tmp_path / "run", max_steps=2, progress=False)
    assert result["global_step"] == 2
    assert f"skipping {len(expected)} invalid episode file(s)" in caplog.text
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(valid) == 11  # train + val episodes, each cached once


def test_cli_refuses_to_start_and_lists_them_all(mixed, tiny_config, tmp_path):
    d, expected = mixed
    for name in ("train_dataset", "val_dataset"):
        tiny_config[name]["data_dir"] = str(d)
    (tmp_path / "cfg.json").write_text(json.dumps(tiny_config))
    out = subprocess.run([CLI, "train", str(tmp_path / "cfg.json"), "--output-dir", str(tmp_path / "o"), "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2
    assert f"robovlms-mobile train: error: {len(expected)} invalid episode file(s):" in out.stderr
    for name, defect in expected.items():
        line = next(line for line in out.stderr.splitlines() if f"{d / name}: " in line)
        assert defect.text in line
    assert not (tmp_path / "o").exists()  # refused before anything was built
