"""check_episode / check_files: every defect named (code + message), all problems per file, content hashes, duplicates."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from robovlms_mobile.data.episode import EpisodeError, check_episode
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.synthetic import generate_episodes

from bad_episodes import TAG, frames, ramp_actions, textured_frames, write_bad_files, write_raw, write_v4, write_v5


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    return d, write_bad_files(d, warnings=True)


def test_generator_covers_at_least_12_kinds(bad_dir):
    _, expected = bad_dir
    errors = {d.code for d in expected.values() if d.severity == "error"}
    assert len(errors) >= 12 and len(expected) >= 18
    assert {"unreadable", "no_images", "no_actions", "image_shape", "image_dtype", "action_dtype", "count_mismatch",
            "non_finite", "over_speed", "too_short", "no_instruction", "event_types"} <= errors


def test_every_defect_is_named(bad_dir):
    """Each malformed file gets its own code and message; the valid original and the warnings-only files stay usable."""
    d, expected = bad_dir
    checks = {c.path.name: c for c in check_files(sorted(d.iterdir()), min_length=2, max_speed=1.15, frames=True)}
    for name, defect in expected.items():
        problems = [p for p in checks[name].problems if p.code == defect.code]
        assert problems, (name, checks[name].problems)
        assert any(defect.text in p.message and p.severity == defect.severity for p in problems), (name, problems)
        assert (checks[name].episode is None) == (defect.severity == "error")
    original = checks["episode_20250107_090000_1box_vert_right_core_far.h5"]
    assert original.problems == [] and original.episode is not None
    usable = {n for n, c in checks.items() if c.episode is not None}
    assert usable == {original.path.name} | {n for n, d in expected.items() if d.severity == "warning"}


def test_all_problems_of_one_file_are_collected(tmp_path):
    """A file with several defects lists them all, and the check's one error carries every message."""
    acts = ramp_actions(12)
    acts[2, 0], acts[3, 1] = np.nan, 2.0
    path = write_raw(tmp_path / "episode_20250106_090000_many.h5", {"images": frames(12), "actions": acts})
    check = check_episode(path, min_length=18, max_speed=1.15)
    assert [p.code for p in check.errors] == ["too_short", "non_finite", "over_speed", "no_instruction"]
    assert [p.code for p in check.warnings] == ["no_events"]
    with pytest.raises(EpisodeError) as info:
        raise check.error()
    assert info.value.path == path and [p.code for p in info.value.problems] == [p.code for p in check.errors]
    for p in check.errors:
        assert p.message in str(info.value)


def test_good_synthetic_episodes_have_no_problem(tmp_path):
    paths = generate_episodes(tmp_path, 4, frame_size=(36, 64)) + generate_episodes(tmp_path / "v5", 2, seed=1,
                                                                                    frame_size=(36, 64), generation="v5")
    for check in check_files(paths, min_length=18, max_speed=1.15, frames=True):
        assert check.problems == [] and check.episode is not None and len(check.content_hash) == 64
    episode = check_files(paths[:1], min_length=18, max_speed=1.15)[0].episode
    assert episode.scenario == "1box_hori_left_core_close" and episode.side == "left"
    v5 = check_files(paths[-1:], min_length=18, max_speed=1.15)[0].episode
    assert v5.generation == "v5" and v5.scenario == "1box_hori_right_core_close"  # from V5 attrs


def test_content_hash_follows_content_not_name(tmp_path):
    """A renamed copy has the same hash; changing one pixel or one action changes it; the instruction does not count."""
    a = write_v4(tmp_path / "a.h5", ramp_actions(18), images=textured_frames(18), instruction="go left")
    shutil.copy(a, tmp_path / "renamed.h5")
    b = write_v4(tmp_path / "b.h5", ramp_actions(18), images=textured_frames(18), instruction="something else")
    pixel = textured_frames(18)
    pixel[5, 3, 3, 1] ^= 1
    c = write_v4(tmp_path / "c.h5", ramp_actions(18), images=pixel)
    act = ramp_actions(18)
    act[7, 2] = 0.0
    e = write_v4(tmp_path / "e.h5", act, images=textured_frames(18))
    v5 = write_v5(tmp_path / "v5.h5", ramp_actions(18), images=textured_frames(18))
    h = {p.name: check_episode(p, min_length=1, max_speed=2).content_hash for p in (a, tmp_path / "renamed.h5", b, c, e, v5)}
    assert h["a.h5"] == h["renamed.h5"] == h["b.h5"]
    assert len({h["a.h5"], h["c.h5"], h["e.h5"], h["v5.h5"]}) == 4


def test_duplicates_keep_the_first_path(tmp_path):
    """Among identical files the first in path order is kept (the copies: a warning, left out), whatever order they are
    given in; files with errors are ignored."""
    first = write_v4(tmp_path / "a_first.h5", ramp_actions(18), images=textured_frames(18), instruction="go")
    for name in ("b_copy.h5", "c_copy.h5"):
        shutil.copy(first, tmp_path / name)
    paths = [tmp_path / n for n in ("c_copy.h5", "a_first.h5", "b_copy.h5")]
    checks = {c.path.name: c for c in check_files(paths, min_length=18, max_speed=1.15)}
    assert checks["a_first.h5"].problems == []
    for name in ("b_copy.h5", "c_copy.h5"):
        (p,) = checks[name].problems
        assert p.code == "duplicate" and p.severity == "warning" and str(first) in p.message and checks[name].episode is None
    short = check_files(paths, min_length=19, max_speed=1.15)  # every copy too short: none is a "duplicate"
    assert all([p.code for p in c.errors] == ["too_short"] for c in short)


def test_corrupt_chunk_inside_a_valid_file_is_an_error(tmp_path):
    """A file whose header reads but whose image bytes are damaged fails with a read error, not a crash."""
    path = write_v4(tmp_path / f"episode_20250106_090000{TAG}", ramp_actions(18), images=textured_frames(18))
    with h5py.File(path, "r") as f:
        offset = f["images"].id.get_chunk_info(3).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(64))
    check = check_episode(path, min_length=18, max_speed=1.15, frames=True)
    assert [p.code for p in check.errors] == ["unreadable"] and "HDF5 read failed" in check.errors[0].message
