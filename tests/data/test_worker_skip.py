"""A file that goes bad after the dataset was built, met by real DataLoader workers mid-epoch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from robovlms_mobile.data.synthetic import generate_episodes

from helpers import last_json_line, run_python

# Build the dataset, then overwrite one episode with garbage, then iterate with 2 workers.
SCRIPT = r"""
import json, sys
from pathlib import Path
from torch.utils.data import DataLoader
from transformers import AutoProcessor
from robovlms_mobile.data.dataset import MobileVLAH5Dataset

data, model, skip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
tokenizer = AutoProcessor.from_pretrained(model).tokenizer
ds = MobileVLAH5Dataset(data, tokenizer, split="all", window_size=4, fwd_pred_next_n=5, image_size=16, skip_invalid=skip)
bad = ds.episodes[1].path
bad.write_bytes(b"this file was overwritten after validation " * 100)
loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=ds.collater)
episodes, skipped = [], []
try:
    for batch in loader:
        episodes += batch["episode"]
        skipped += batch["skipped"]
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc), "bad": str(bad)}))
    sys.exit(0)
names = [e.path.name for e in ds.episodes]
print(json.dumps({"episodes": episodes, "skipped": skipped, "bad": str(bad), "names": names,
                  "index": [[names[e], s] for e, s in ds.index]}))
"""


@pytest.fixture
def data(tmp_path):
    return generate_episodes(tmp_path / "eps", 4, frame_size=(24, 32), length=12)[0].parent


def run(data: Path, model, skip: bool, copy: str):
    """Run SCRIPT on a fresh copy of the episodes (it breaks one of them)."""
    fresh = data.parent / copy
    shutil.copytree(data, fresh)
    proc = run_python(SCRIPT, str(fresh), str(model), "1" if skip else "0", timeout=300)
    return last_json_line(proc.stdout), proc.stderr


def test_skip_invalid_substitutes_and_logs(data, tiny_model_dir):
    """Every window of the broken file is replaced by the next readable window (the same in every worker), logged and counted."""
    got, stderr = run(data, tiny_model_dir, skip=True, copy="first")
    bad_name = got["bad"].rsplit("/", 1)[-1]
    index = got["index"]
    assert len(got["episodes"]) == len(index) == 16 and bad_name not in got["episodes"]
    bad_windows = [i for i, (name, _) in enumerate(index) if name == bad_name]
    replacement = index[bad_windows[-1] + 1][0]  # the next episode's first window
    expected = [replacement if name == bad_name else name for name, _ in index]
    assert got["episodes"] == expected
    assert len(got["skipped"]) == len(bad_windows) == 4
    assert all(s.startswith(f"{got['bad']}: failed to read frames") for s in got["skipped"])
    assert "skip_invalid: window" in stderr and got["bad"] in stderr and "file signature not found" in stderr
    again, _ = run(data, tiny_model_dir, skip=True, copy="second")  # deterministic, whatever worker met the file first
    assert again["episodes"] == got["episodes"]


def test_without_skip_invalid_the_error_names_the_file(data, tiny_model_dir):
    got, _ = run(data, tiny_model_dir, skip=False, copy="strict")
    assert "error" in got, json.dumps(got)[:500]
    assert f"{got['bad']}: failed to read frames" in got["message"]
    assert "after the dataset was built" in got["message"] and "file signature not found" in got["message"]
