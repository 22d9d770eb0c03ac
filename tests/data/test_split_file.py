"""Split files: deterministic whatever the file order, seeded, stratified by scenario; the dataset reads them."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from robovlms_mobile.config import ConfigError, validate_config
from robovlms_mobile.data.dataset import MobileVLAH5Dataset
from robovlms_mobile.data.format import NAME_RE
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.split import assign_splits
from robovlms_mobile.data.split_file import make_split, read_split_file, write_split_file
from robovlms_mobile.data.synthetic import generate_episodes

from bad_episodes import write_bad_files

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
N = 48  # every scenario once


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same 48 episodes in two folders, written (and time-stamped) in opposite orders."""
    a = tmp_path_factory.mktemp("a")
    paths = generate_episodes(a, N, frame_size=(12, 16))
    b = tmp_path_factory.mktemp("b")
    for i, p in enumerate(reversed(paths)):
        shutil.copy(p, b / p.name)
        os.utime(b / p.name, ns=(10**18 + i, 10**18 + i))
    return a, b


def split_cli(folder: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "data", "split", str(folder), "--out", str(out), "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


def episodes_of(folder: Path):
    paths = sorted(folder.glob("*.h5"))
    return [c.episode for c in check_files(paths, min_length=18, max_speed=1.15)], [p.name for p in paths]


def test_cli_same_file_whatever_the_order(folders, tmp_path):
    """Two folders holding the same episodes created in opposite orders give byte-identical split files."""
    a, b = folders
    out_a = split_cli(a, tmp_path / "a.json", "--val", "0.2", "--test", "0.1", "--seed", "3")
    out_b = split_cli(b, tmp_path / "b.json", "--val", "0.2", "--test", "0.1", "--seed", "3")
    assert out_a.returncode == 0 and out_b.returncode == 0, out_a.stderr + out_b.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert f"{N} episodes -> train 33, val 10, test 5" in out_a.stdout
    doc = read_split_file(tmp_path / "a.json")
    assert doc["seed"] == 3 and doc["ratios"] == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert doc["counts"] == {"train": 33, "val": 10, "test": 5}


def test_in_memory_order_does_not_matter(folders):
    episodes, names = episodes_of(folders[0])
    doc = make_split(episodes, names, val=0.25, seed=1)
    order = list(range(len(names)))
    random.Random(0).shuffle(order)
    assert make_split([episodes[i] for i in order], [names[i] for i in order], val=0.25, seed=1) == doc


def test_disjoint_complete_stratified_and_seeded(folders):
    episodes, names = episodes_of(folders[0])
    docs = [make_split(episodes, names, val=0.25, test=0.125, seed=s) for s in range(4)]
    for doc in docs:
        files = {s: [e["file"] for e in doc["splits"][s]] for s in doc["splits"]}
        assert sorted(sum(files.values(), [])) == sorted(names)  # every episode exactly once
        assert (len(files["val"]), len(files["test"])) == (12, 6)
        for split, expected in (("val", 12), ("test", 6)):
            fields = [NAME_RE.search(f) for f in files[split]]
            assert Counter(m["side"] for m in fields) == {"left": expected // 2, "right": expected // 2}
            for key, n_values in (("boxes", 2), ("distance", 3)):
                counts = Counter((m["side"], m[key]) for m in fields)
                per = expected / 2 / n_values
                assert all(abs(counts[(side, v)] - per) <= 1 for side in ("left", "right")
                           for v in {m[key] for m in map(NAME_RE.search, names)}), (split, key, counts)
        hashes = {e["file"]: e["content_hash"] for s in doc["splits"].values() for e in s}
        assert all(len(h) == 64 for h in hashes.values())
    assert len({json.dumps(d["splits"]["val"]) for d in docs}) == 4  # another seed, another split


def test_assign_splits_counts_and_validation():
    keys = [f"k{i}" for i in range(101)]
    got = assign_splits(keys, [("s",)] * 101, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    assert abs(got.count("val") - 10.1) <= 1 and abs(got.count("test") - 10.1) <= 1
    with pytest.raises(ValueError, match="unique"):
        assign_splits(["a", "a"], [(), ()], {"val": 0.5}, seed=0)
    with pytest.raises(ValueError, match="leave some train"):
        assign_splits(["a", "b"], [(), ()], {"val": 0.6, "test": 0.4}, seed=0)


def test_dataset_reads_the_split_file(folders, tmp_path):
    """train/val/test/all come from the file; the seeded val_ratio split is not used."""
    a, _ = folders
    episodes, names = episodes_of(a)
    doc = make_split(episodes, names, val=0.2, test=0.1, seed=0)
    path = write_split_file(tmp_path / "split.json", doc)
    kw = dict(window_size=4, fwd_pred_next_n=5, image_size=16, split_file=str(path))
    for split in ("train", "val", "test"):
        ds = MobileVLAH5Dataset(str(a), split=split, **kw)
        assert [e.path.name for e in ds.episodes] == [e["file"] for e in doc["splits"][split]]
    assert len(MobileVLAH5Dataset(str(a), split="all", **kw).episodes) == N
    assert len(MobileVLAH5Dataset(str(a), is_training=False, **kw).episodes) == doc["counts"]["val"]
    with pytest.raises(ValueError, match="'test' needs a split_file"):
        MobileVLAH5Dataset(str(a), split="test", window_size=4, fwd_pred_next_n=5)


def test_missing_changed_and_unlisted_files(folders, tmp_path, caplog):
    """A listed file that is gone or changed is an error naming it; a file in no split is a warning."""
    src, _ = folders
    d = tmp_path / "d"
    shutil.copytree(src, d)
    episodes, names = episodes_of(d)
    path = write_split_file(tmp_path / "split.json", make_split(episodes[:-1], names[:-1], val=0.2, seed=0))
    kw = dict(window_size=4, fwd_pred_next_n=5, image_size=16, split_file=str(path))
    with caplog.at_level("WARNING", logger="robovlms_mobile.data"):
        MobileVLAH5Dataset(str(d), split="train", **kw)
    assert f"1 episode file(s) are in no split of {path}" in caplog.text and names[-1] in caplog.text
    doc = read_split_file(path)
    val_file = doc["splits"]["val"][0]["file"]
    train_file = doc["splits"]["train"][0]["file"]
    other = generate_episodes(tmp_path / "other", 2, seed=9, frame_size=(12, 16))[1]
    shutil.copy(other, d / train_file)  # same name, other recording
    (d / val_file).unlink()
    with pytest.raises(FileNotFoundError, match=f"1 file\\(s\\) of split 'val' not found: {val_file}"):
        MobileVLAH5Dataset(str(d), split="val", **kw)
    with pytest.raises(ConfigError, match=f"1 file\\(s\\) changed since the split was made.*{train_file}.*data split"):
        MobileVLAH5Dataset(str(d), split="train", **kw)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="bad.json: field 'format'"):
        MobileVLAH5Dataset(str(d), split="train", **{**kw, "split_file": str(tmp_path / "bad.json")})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        MobileVLAH5Dataset(str(d), split="train", **{**kw, "split_file": str(tmp_path / "nope.json")})


def test_invalid_files_refused_or_excluded(folders, tmp_path):
    src, _ = folders
    d = tmp_path / "d"
    shutil.copytree(src, d)
    expected = write_bad_files(d)
    refused = split_cli(d, tmp_path / "s.json")
    assert refused.returncode == 2 and f"{len(expected)} invalid episode file(s)" in refused.stderr
    assert all(name in refused.stderr for name in expected) and not (tmp_path / "s.json").exists()
    out = split_cli(d, tmp_path / "s.json", "--skip-invalid")
    assert out.returncode == 0 and f"({len(expected)} invalid left out)" in out.stdout
    doc = read_split_file(tmp_path / "s.json")
    assert {e["file"] for e in doc["excluded"]} == set(expected)
    assert sum(doc["counts"].values()) == N + 1  # + the duplicate's original


def test_config_requires_one_split_file_for_both_sections(tiny_config):
    tiny_config["train_dataset"]["split_file"] = "split.json"
    with pytest.raises(ConfigError, match="'train_dataset.split_file'.*'val_dataset.split_file'.*must match"):
        validate_config(tiny_config)
    tiny_config["val_dataset"]["split_file"] = "split.json"
    tiny_config["train_dataset"].update(skip_invalid=True, cache_dir="cache")
    validate_config(tiny_config)
    tiny_config["train_dataset"]["skip_invalid"] = "yes"
    with pytest.raises(ConfigError, match="'train_dataset.skip_invalid' = 'yes': expected bool"):
        validate_config(tiny_config)
