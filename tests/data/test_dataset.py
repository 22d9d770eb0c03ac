"""MobileVLAH5Dataset: batch contract, windows, V4/V5 colour order, scaling, instructions, split, workers, bad input."""

from __future__ import annotations

import re
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from robovlms_mobile.data.dataset import InvalidEpisodesError, MobileVLAH5Dataset
from robovlms_mobile.data.format import instruction_for
from robovlms_mobile.data.prompt import DEFAULT_PROMPT_TEMPLATE
from robovlms_mobile.data.transforms import CLIP_MEAN, CLIP_STD, normalise_batch

from bad_episodes import V5_TEXT, frames, ramp_actions, v4_name, write_bad_files, write_v4, write_v5

RED = (255, 0, 0)


def make(data_dir, tokenizer=None, **kwargs) -> MobileVLAH5Dataset:
    return MobileVLAH5Dataset(str(data_dir), tokenizer, **{"split": "all", **kwargs})


def unnormalise(rgb: torch.Tensor) -> torch.Tensor:
    """Undo CLIP normalisation of (..., 3, H, W) -> values in [0, 1]."""
    return rgb * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)


def frame_index(rgb_frame: torch.Tensor) -> int:
    """Which frame of `frames()` a preprocessed (3, S, S) frame is, from its red channel."""
    return round(unnormalise(rgb_frame)[0, 0, 0].item() * 255 / 10)


def spaced(text: str) -> str:
    """Whitespace-normalised text; the tokenizer decodes `<grounding>An` as `<grounding> An`."""
    return " ".join(text.replace("<grounding>", "<grounding> ").split())


def names(ds: MobileVLAH5Dataset) -> set[str]:
    return {e.path.name for e in ds.episodes}


def same_batches(a: list[dict], b: list[dict]) -> bool:
    """Equal batches; `rgb` compared as the model gets it (a DataLoader's uint8, items' float: both normalised once)."""
    def value(batch: dict, k: str):
        return normalise_batch(batch[k]) if k == "rgb" else batch[k]

    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(value(x, k), value(y, k)) if torch.is_tensor(x[k]) else x[k] == y[k] for k in x)
        for x, y in zip(a, b)
    )


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir).tokenizer


@pytest.fixture(scope="module")
def ramp_dir(tmp_path_factory):
    """A mixed folder: one V4 (BGR, instruction from the name) and one V5 episode, 20 frames each."""
    d = tmp_path_factory.mktemp("ramp")
    write_v4(d / v4_name(0, "left"), ramp_actions(20))
    write_v5(d / "v5_episode_right.h5", -ramp_actions(20))
    return d


# --- 1. batch contract -------------------------------------------------------------------------------------------


def test_batch_contract(ramp_dir, tokenizer):
    """Collated batches have upstream's keys/shapes; labels are the file's actions[:, :2] / 1.15, chunked t..t+9."""
    ds = make(ramp_dir, tokenizer)
    assert len(ds) == 6
    texts = {v4_name(0, "left"): instruction_for(1, "left"), "v5_episode_right.h5": V5_TEXT}
    starts = []
    assert DEFAULT_PROMPT_TEMPLATE == "<grounding>An image of a robot {instruction}"
    for batch in DataLoader(ds, batch_size=4, collate_fn=ds.collater):
        B = len(batch["episode"])
        assert batch["rgb"].shape == (B, 8, 3, 224, 224) and batch["rgb"].dtype == torch.uint8  # normalised by the consumer
        batch["rgb"] = normalise_batch(batch["rgb"])
        assert batch["rgb"].min() < 0 and 0 <= unnormalise(batch["rgb"]).min() <= unnormalise(batch["rgb"]).max() <= 1
        assert batch["text"].ndim == 2 and batch["text"].shape == batch["text_mask"].shape and len(batch["text"]) == B
        assert batch["action"].shape == (B, 17, 2) and batch["action"].dtype == torch.float32
        assert batch["action_chunck"].shape == (B, 8, 10, 2)
        assert batch["chunck_mask"].shape == (B, 8, 10) and batch["chunck_mask"].dtype == torch.bool
        assert batch["chunck_mask"].all() and "action" in batch["data_source"]
        for b, name in enumerate(batch["episode"]):
            with h5py.File(ramp_dir / name, "r") as f:
                raw = torch.from_numpy(f["actions"][:, :2]) / 1.15
            start = frame_index(batch["rgb"][b, 0])
            starts.append((name, start))
            assert [frame_index(x) for x in batch["rgb"][b]] == list(range(start, start + 8))
            torch.testing.assert_close(batch["action"][b], raw[start : start + 17])
            chunks = torch.stack([raw[start + t : start + t + 10] for t in range(8)])
            torch.testing.assert_close(batch["action_chunck"][b], chunks)
            assert batch["raw_text"][b] == texts[name]
            mask = batch["text_mask"][b].bool()
            assert mask[0] and not (mask[1:] & ~mask[:-1]).any()  # right padded
            decoded = tokenizer.decode(batch["text"][b][mask], skip_special_tokens=True)
            assert spaced(decoded) == spaced(DEFAULT_PROMPT_TEMPLATE.format(instruction=texts[name]))
    assert sorted(starts) == sorted((n, s) for n in texts for s in range(3))


# --- 2. windows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window, chunk, length, n_windows", [(8, 10, 20, 3), (8, 10, 18, 1), (4, 5, 20, 12), (4, 5, 9, 1)])
def test_windows(tmp_path, tokenizer, window, chunk, length, n_windows):
    """An episode yields length - (window + chunk) + 1 windows; shapes follow window and chunk."""
    write_v4(tmp_path / v4_name(), ramp_actions(length))
    ds = make(tmp_path, tokenizer, window_size=window, fwd_pred_next_n=chunk)
    assert len(ds) == n_windows
    (batch,) = DataLoader(ds, batch_size=n_windows, collate_fn=ds.collater)
    assert batch["rgb"].shape == (n_windows, window, 3, 224, 224)
    assert batch["action"].shape == (n_windows, window + chunk - 1, 2)
    assert batch["action_chunck"].shape == (n_windows, window, chunk, 2)
    assert batch["chunck_mask"].shape == (n_windows, window, chunk) and batch["chunck_mask"].all()
    raw = torch.from_numpy(ramp_actions(length)[:, :2]) / 1.15
    starts = [frame_index(rgb[0]) for rgb in normalise_batch(batch["rgb"])]
    assert sorted(starts) == list(range(n_windows))
    for b, s in enumerate(starts):
        torch.testing.assert_close(batch["action_chunck"][b], torch.stack([raw[s + t : s + t + chunk] for t in range(window)]))


# --- 3. generations: V4 BGR on disk, V5 RGB ----------------------------------------------------------------------


def test_v4_bgr_and_v5_rgb_both_come_out_rgb(tmp_path):
    """The same pure-red scene, stored BGR (V4) and RGB (V5), is red in both datasets' frames."""
    red = frames(18, RED)
    v4 = write_v4(tmp_path / v4_name(0, "left"), ramp_actions(18), images=red)
    v5 = write_v5(tmp_path / "v5_right.h5", ramp_actions(18), images=red)
    with h5py.File(v4, "r") as f4, h5py.File(v5, "r") as f5:
        assert tuple(f4["images"][0, 0, 0]) == (0, 0, 255) and tuple(f5["observations/images"][0, 0, 0]) == RED
    ds = make(tmp_path)
    assert sorted(e.generation for e in ds.episodes) == ["v4", "v5"] and len(ds) == 2
    for i in range(len(ds)):
        pixels = unnormalise(ds[i]["rgb"])[:, :, 0, 0]  # (window, 3)
        torch.testing.assert_close(pixels, torch.tensor([[1.0, 0.0, 0.0]]).expand_as(pixels), atol=1e-3, rtol=0)


# --- 4. action scaling ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_speed, value, expected", [(1.15, 1.15, 1.0), (1.15, -1.15, -1.0), (2.3, 1.15, 0.5), (2.3, -2.3, -1.0)])
def test_action_scaling(tmp_path, max_speed, value, expected):
    """Linear velocities are divided by max_speed (angular_z dropped), and the scale is recorded."""
    actions = np.zeros((18, 3), np.float32)
    actions[:, :2], actions[:, 2] = value, 0.2
    write_v4(tmp_path / v4_name(), actions)
    ds = make(tmp_path, max_speed=max_speed)
    assert ds.action_scale == {"max_speed": max_speed, "axes": ["linear_x", "linear_y"]}
    out = ds[0]["actions"]
    assert out.shape == (17, 2) and out.dtype == torch.float32 and out.abs().max() <= 1.0
    torch.testing.assert_close(out, torch.full_like(out, expected))


def test_action_above_max_speed_names_the_file(tmp_path):
    """An action faster than max_speed fails construction, naming that file only; a larger max_speed accepts it."""
    fast = ramp_actions(18)
    fast[5, 1] = -1.3
    bad = write_v4(tmp_path / v4_name(0, "left"), fast)
    write_v4(tmp_path / v4_name(1, "right"), ramp_actions(18))
    with pytest.raises(InvalidEpisodesError) as info:
        make(tmp_path)
    assert [e.path for e in info.value.errors] == [bad]
    assert str(bad) in str(info.value) and "max_speed" in str(info.value) and v4_name(1, "right") not in str(info.value)
    assert len(make(tmp_path, max_speed=1.3)) == 2


# --- 5. instruction ------------------------------------------------------------------------------------------------


def test_instruction_from_file_else_name_never_from_actions(tmp_path):
    """`language_instruction` wins; otherwise the name's side is used, even when the actions move the other way."""
    leftward = ramp_actions(18)
    leftward[:, 1] = 1.15  # +linear_y: the robot moves left
    rightward = leftward * np.float32([1, -1, 1])
    write_v4(tmp_path / v4_name(0, "right", boxes=2), leftward)
    write_v4(tmp_path / v4_name(1, "left"), rightward)
    write_v4(tmp_path / v4_name(2, "right"), leftward, images=frames(18, variant=1), instruction="stop in front of the bottle")
    ds = make(tmp_path)
    got = {ds[i]["episode"]: ds[i]["instruction"] for i in range(len(ds))}
    assert got == {
        v4_name(0, "right", boxes=2): instruction_for(2, "right"),
        v4_name(1, "left"): instruction_for(1, "left"),
        v4_name(2, "right"): "stop in front of the bottle",
    }
    assert "right" in got[v4_name(0, "right", boxes=2)] and "left" not in got[v4_name(0, "right", boxes=2)]


# --- 6. split ------------------------------------------------------------------------------------------------------

SIDED = [(i, "left" if i < 10 else "right") for i in range(20)]


@pytest.fixture(scope="module")
def split_dirs(tmp_path_factory):
    """The same 10 left + 10 right episodes written in two different orders into two folders."""
    dirs = tmp_path_factory.mktemp("forward"), tmp_path_factory.mktemp("backward")
    for d, order in zip(dirs, (SIDED, SIDED[::-1])):
        for i, side in order:  # distinct recordings: identical files would be duplicates
            write_v4(d / v4_name(i, side), ramp_actions(18), images=frames(18, variant=i))
    return dirs


def test_split_disjoint_and_complete(split_dirs):
    """Train and val share no episode and together are every file; 'all' is every file; is_training picks the split."""
    d = split_dirs[0]
    train, val, every = (names(make(d, split=s, val_ratio=0.2)) for s in ("train", "val", "all"))
    assert not train & val and train | val == every == {p.name for p in d.iterdir()} and len(every) == 20
    assert len(make(d, split="all")) == 20
    assert names(MobileVLAH5Dataset(str(d), val_ratio=0.2, is_training=True)) == train
    assert names(MobileVLAH5Dataset(str(d), val_ratio=0.2, is_training=False)) == val


def test_split_deterministic_order_independent_and_seeded(split_dirs):
    """The same seed gives the same split whatever order files were created in; another seed gives another."""
    forward, backward = split_dirs
    for split in ("train", "val"):
        first = names(make(forward, split=split, val_ratio=0.2, split_seed=0))
        assert first == names(make(forward, split=split, val_ratio=0.2, split_seed=0))
        assert first == names(make(backward, split=split, val_ratio=0.2, split_seed=0))
    assert names(make(forward, split="val", val_ratio=0.2, split_seed=0)) != names(
        make(forward, split="val", val_ratio=0.2, split_seed=1)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_stratified_by_side(split_dirs, seed):
    """With 10 left + 10 right and val_ratio 0.2, val holds 2 left and 2 right."""
    val = names(make(split_dirs[0], split="val", val_ratio=0.2, split_seed=seed))
    assert Counter("left" if "_left_" in n else "right" for n in val) == {"left": 2, "right": 2}


# --- 7. DataLoader workers and DistributedSampler -----------------------------------------------------------------


def test_worker_batches_equal_in_process_batches(ramp_dir, tokenizer):
    """A 1-worker DataLoader yields exactly the batches of an in-process one."""
    ds = make(ramp_dir, tokenizer)

    def batches(workers):
        sampler = SequentialSampler(ds)
        return list(DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=ds.collater))

    in_process = batches(0)  # leaves open file handles in this process, which the worker must not reuse
    assert len(in_process) == 3 and same_batches(in_process, batches(1))


def test_distributed_sampler_shards(ramp_dir, tokenizer):
    """Two ranks get disjoint indices covering the dataset, and a 1-worker loader per rank yields those items."""
    ds = make(ramp_dir, tokenizer)
    shards = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(len(ds)))
    for rank, shard in enumerate(shards):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=False)
        got = list(DataLoader(ds, batch_size=2, sampler=sampler, num_workers=1, collate_fn=ds.collater))
        expected = [ds.collater([ds[i] for i in shard[j : j + 2]]) for j in range(0, len(shard), 2)]
        assert same_batches(got, expected)


# --- 8. bad input ----------------------------------------------------------------------------------------------------


def test_bad_files_all_reported_at_construction(tmp_path):
    """One InvalidEpisodesError at construction lists every bad file with its problem, and no good file."""
    good = [write_v4(tmp_path / v4_name(0, "left"), ramp_actions(18)).name,
            write_v5(tmp_path / "v5_good_right.h5", ramp_actions(18)).name]
    expected = write_bad_files(tmp_path)
    with pytest.raises(InvalidEpisodesError) as info:
        make(tmp_path)
    err, message = info.value, str(info.value)
    problems = {e.path.name: e.problem for e in err.errors}
    assert set(problems) == set(expected) and message.startswith(f"{len(expected)} invalid episode file(s)")
    for name, defect in expected.items():
        assert defect.text in problems[name], (name, problems[name])
        assert f"{tmp_path / name}: {problems[name]}" in message
    assert not any(g in message for g in good)


def test_missing_or_empty_folder(tmp_path):
    """A missing folder and a folder with no episode files raise FileNotFoundError naming the path."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no episodes here")
    for d in (empty, tmp_path / "missing"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(d))):
            make(d)


def test_unknown_split(ramp_dir):
    """An unknown split value is a ValueError naming 'split'."""
    with pytest.raises(ValueError, match="'split'"):
        make(ramp_dir, split="test")


# --- frame strides (asynchronous execution's window spacing) ------------------------------------------------------


def test_frame_strides_space_the_window_and_label_only_its_newest_position(ramp_dir, tmp_path):
    ds = MobileVLAH5Dataset(str(ramp_dir), None, split="train", val_ratio=0.5, frame_strides=[3])
    stride1 = MobileVLAH5Dataset(str(ramp_dir), None, split="train", val_ratio=0.5)
    assert len(ds) == len(stride1) == 6  # two 20-frame episodes: windows ending at frames 7, 8, 9
    item, plain = ds[2], stride1[2]
    assert [frame_index(f) for f in item["rgb"]] == [0, 0, 0, 0, 0, 3, 6, 9]  # 9 - 3 * (7 - i), frame 0 repeated in front
    assert [frame_index(f) for f in plain["rgb"]] == list(range(2, 10))
    assert item["action_mask"].tolist() == [False] * 7 + [True] * 10  # the newest position's chunk: steps 9..18
    assert torch.equal(item["actions"][7:], plain["actions"][7:]) and not item["actions"][:7].any()
    cached = MobileVLAH5Dataset(str(ramp_dir), None, split="train", val_ratio=0.5, frame_strides=[3],
                                cache_dir=str(tmp_path / "cache"))
    assert [frame_index(f) for f in cached[2]["rgb"]] == [0, 0, 0, 0, 0, 3, 6, 9]  # the cache reads the same frames
    for d in (ds, cached):  # frame 0 is not on the stride: it is read apart for the positions before the episode
        assert [frame_index(f) for f in d[1]["rgb"]] == [0, 0, 0, 0, 0, 2, 5, 8]
    for split in ("val", "all"):  # a training aid: validation windows stay consecutive
        other = MobileVLAH5Dataset(str(ramp_dir), None, split="all", frame_strides=[3], is_training=split != "val")
        assert [frame_index(f) for f in other[0]["rgb"]] == list(range(8))
    for bad in ([], [0], "3", [1.5], [True]):
        with pytest.raises(ValueError, match="dataset key 'frame_strides'"):
            MobileVLAH5Dataset(str(ramp_dir), None, split="train", val_ratio=0.5, frame_strides=bad)
