"""The preprocessed frame cache: built once, identical items, rebuilt when a source file changes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robovlms_mobile.data.dataset import MobileVLAH5Dataset, stack_rgb
from robovlms_mobile.data.episode import EpisodeError
from robovlms_mobile.data.synthetic import generate_episodes
from robovlms_mobile.data.transforms import normalise_batch

KW = dict(split="all", window_size=4, fwd_pred_next_n=5, image_size=32)


@pytest.fixture
def data(tmp_path):
    generate_episodes(tmp_path / "eps", 4, frame_size=(48, 80), length=12)
    return tmp_path / "eps"


def items(ds) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def equal(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["actions"], y["actions"]) and x["episode"] == y["episode"]
               for x, y in zip(a, b)) and len(a) == len(b)


def test_cached_items_equal_uncached(data, tmp_path, capsys):
    plain = MobileVLAH5Dataset(str(data), **KW)
    cached = MobileVLAH5Dataset(str(data), cache_dir=str(tmp_path / "cache"), **KW)
    assert "caching frames (32px)" in capsys.readouterr().err  # progress bar while building
    assert equal(items(plain), items(cached))
    entries = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(entries) == 4
    frames = np.load(entries[0])
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert {m["entry"] for m in manifest.values()} == {e.name for e in entries}
    assert all({"path", "size", "mtime_ns", "image_size"} <= set(m) for m in manifest.values())


def test_batched_fetch_equals_items(data, tmp_path):
    """What a DataLoader fetches (`__getitems__`: uint8 frames, a uint8 batch, normalised by the consumer) equals stacked items."""
    for cache in (None, str(tmp_path / "cache")):
        ds = MobileVLAH5Dataset(str(data), cache_dir=cache, **KW)
        idx = [3, 0, 9, 15]
        raw = ds.__getitems__(idx)
        assert raw[0]["frames"].dtype == np.uint8 and raw[0]["frames"].shape == (4, 32, 32, 3)
        batch = stack_rgb(raw)
        assert batch.dtype == torch.uint8 and batch.shape == (4, 4, 3, 32, 32)
        assert torch.equal(normalise_batch(batch), torch.stack([ds[i]["rgb"] for i in idx]))


def test_built_once_and_rebuilt_when_a_source_changes(data, tmp_path):
    cache = str(tmp_path / "cache")
    first = MobileVLAH5Dataset(str(data), cache_dir=cache, **KW)
    assert first.cache.build(first.episodes, progress=False) == 0  # everything already there
    again = MobileVLAH5Dataset(str(data), cache_dir=cache, **KW)
    assert again.cache.build(again.episodes, progress=False) == 0
    target = first.episodes[1].path
    replacement = generate_episodes(tmp_path / "other", 3, seed=7, frame_size=(48, 80), length=12)[2]
    os.replace(replacement, target)  # same name, other content, other size / mtime
    changed = MobileVLAH5Dataset(str(data), cache_dir=cache, **KW)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4  # the stale entry was replaced, not kept
    plain = MobileVLAH5Dataset(str(data), **KW)
    assert equal(items(plain), items(changed))
    assert first.episodes[1].path == target and first.index[4] == (1, 0)
    with pytest.raises(EpisodeError, match=f"{target}: failed to read frames 0:4 after the dataset was built"):
        first[4]  # the dataset built before the change lost its (stale) entry: the file is named, not misread
    other_size = MobileVLAH5Dataset(str(data), cache_dir=cache, **{**KW, "image_size": 24})
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8 and other_size[0]["rgb"].shape == (4, 3, 24, 24)


def test_workers_read_the_cache(data, tmp_path, tokenizer):
    cached = MobileVLAH5Dataset(str(data), tokenizer, cache_dir=str(tmp_path / "cache"), **KW)
    plain = MobileVLAH5Dataset(str(data), tokenizer, **KW)
    got = list(DataLoader(cached, batch_size=5, num_workers=2, collate_fn=cached.collater))
    want = list(DataLoader(plain, batch_size=5, num_workers=0, collate_fn=plain.collater))
    assert len(got) == len(want) == 4  # 4 episodes x 4 windows, batches of 5
    for a, b in zip(got, want):
        assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["action_chunck"], b["action_chunck"])
        assert a["skipped"] == [] and a["episode"] == b["episode"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
