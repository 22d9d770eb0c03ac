"""Synthetic episodes: exact V4 / V5 file layout, BGR on disk, side-dependent plans, determinism."""

import re
from dataclasses import replace

import h5py
import numpy as np
import pytest

from robovlms_mobile.data.format import V4_SCENARIOS as DEFAULT_SCENARIOS
from robovlms_mobile.data.format import Scenario, instruction_for
from robovlms_mobile.data.synthetic import generate_episodes, make_episode, plan_actions
from robovlms_mobile.data.writers import event_types_for, write_episode_v4, write_episode_v5

SIZE = (36, 64)
V4_NAME = re.compile(
    r"^episode_\d{8}_\d{6}_(1box|2box)_(hori|vert)_(left|right)_(core|variant)_(close|medium|far)\.h5$"
)
LINEAR = np.float32([0.0, 1.15, -1.15])


def _read(path, *keys):
    with h5py.File(path, "r") as f:
        return [f[k][()] for k in keys]


@pytest.fixture(scope="module")
def v4_files(tmp_path_factory):
    return generate_episodes(tmp_path_factory.mktemp("v4"), 8, seed=3, frame_size=SIZE)


@pytest.fixture(scope="module")
def v5_files(tmp_path_factory):
    return generate_episodes(tmp_path_factory.mktemp("v5"), 8, seed=3, frame_size=SIZE, generation="v5")


def test_v4_layout(v4_files):
    for path in v4_files:
        with h5py.File(path, "r") as f:
            assert set(f.keys()) == {"images", "actions", "action_event_types", "language_instruction"}
            img, act, ev, instr = f["images"], f["actions"], f["action_event_types"], f["language_instruction"]
            assert img.shape == (18, *SIZE, 3) and img.dtype == np.uint8
            assert img.compression == "gzip" and img.chunks == (1, *SIZE, 3)
            assert act.shape == (18, 3) and act.dtype == np.float32
            assert ev.shape == (18,) and h5py.check_string_dtype(ev.dtype).encoding == "utf-8"
            events = [e.decode() for e in ev[()]]
            assert events[0] == "episode_start" and set(events[1:]) <= {"start_action", "stop_action"}
            assert events == event_types_for(act[()])
            assert instr.shape == (1,) and instr.dtype == np.dtype("S256")
            sc = Scenario.from_name(path)
            assert instr[0].decode() == instruction_for(sc.n_boxes, sc.side)
            attrs = dict(f.attrs)
            assert {"episode_name", "num_frames", "total_duration", "action_chunk_size", "obstacle_layout_type",
                    "collection_datetime"} <= set(attrs)
            assert attrs["episode_name"] == path.stem and attrs["num_frames"] == 18
            assert attrs["total_duration"] == pytest.approx(18 * 0.4)
            assert attrs["obstacle_layout_type"] == f"{sc.n_boxes}box_{sc.layout}"


def test_v5_layout(v5_files):
    turned = False
    for path in v5_files:
        with h5py.File(path, "r") as f:
            assert set(f.keys()) == {"observations", "actions", "language_instruction"}
            img = f["observations/images"]
            assert img.shape == (18, *SIZE, 3) and img.dtype == np.uint8 and img.chunks == (1, *SIZE, 3)
            assert img.compression == "gzip"
            act = f["actions"][()]
            assert act.shape == (18, 3) and act.dtype == np.float32
            assert f["language_instruction"].dtype.kind == "S" and f["language_instruction"].shape == (1,)  # [text.encode()], as save_h5
            assert {"scenario", "pattern", "distance", "end_pos"} <= set(f.attrs)
            sc = Scenario.from_name(path)
            assert f.attrs["scenario"] == f"{sc.n_boxes}box_{sc.layout}_{sc.side}"
            assert (f.attrs["pattern"], f.attrs["distance"]) == (sc.variant, sc.distance)
        assert np.isin(act[:, 2], np.float32([0.0, 0.2, -0.2])).all()
        turned |= bool(act[:, 2].any())
    assert turned, "V5 episodes should turn (angular_z +-0.2) now and then"


def test_channel_order_on_disk(tmp_path):
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[:, 2:5, 2:5] = (255, 0, 0)  # pure red, RGB
    actions = np.zeros((2, 3), np.float32)
    attrs4 = {"obstacle_layout_type": "1box_hori", "collection_datetime": "2025-01-01T00:00:00"}
    p4 = write_episode_v4(tmp_path / "a.h5", frames, actions, ["episode_start", "stop_action"], instruction=None,
                          attrs=attrs4)
    attrs5 = {"scenario": "1box_hori_left", "pattern": "core", "distance": "close", "end_pos": np.zeros(2)}
    p5 = write_episode_v5(tmp_path / "b.h5", frames, actions, instruction="go", attrs=attrs5)
    (v4,) = _read(p4, "images")
    (v5,) = _read(p5, "observations/images")
    assert (v4[:, 3, 3] == (0, 0, 255)).all()  # BGR, as OpenCV wrote it
    assert (v5[:, 3, 3] == (255, 0, 0)).all()  # RGB
    with h5py.File(p4, "r") as f:
        assert "language_instruction" not in f


def test_generated_v4_frames_are_bgr_of_rendered(v4_files):
    sc = Scenario.from_name(v4_files[0])
    ep = make_episode(sc, seed=[3, 0, 0], frame_size=SIZE)
    (img,) = _read(v4_files[0], "images")
    np.testing.assert_array_equal(img[..., ::-1], ep.images)


def test_writers_reject_bad_input(tmp_path):
    frames, actions = np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 3), np.float32)
    attrs = {"obstacle_layout_type": "1box_hori", "collection_datetime": "x"}
    with pytest.raises(ValueError, match="event_types"):
        write_episode_v4(tmp_path / "a.h5", frames, actions, ["start_action"] * 2, instruction=None, attrs=attrs)
    with pytest.raises(ValueError, match="attrs missing"):
        write_episode_v4(tmp_path / "a.h5", frames, actions, ["episode_start", "stop_action"], instruction=None,
                         attrs={})
    with pytest.raises(ValueError, match="attrs missing"):
        write_episode_v5(tmp_path / "b.h5", frames, actions, instruction="go", attrs={})
    with pytest.raises(ValueError, match="uint8"):
        write_episode_v5(tmp_path / "b.h5", frames.astype(np.float32), actions, instruction="go", attrs={})


def test_left_right_opposite_linear_y(v4_files):
    for sc in DEFAULT_SCENARIOS:
        left, _ = plan_actions(replace(sc, side="left"), np.random.default_rng(0))
        right, _ = plan_actions(replace(sc, side="right"), np.random.default_rng(0))
        assert left[:, 1].sum() > 0 > right[:, 1].sum(), sc.tag
        np.testing.assert_array_equal(left[:, 1], -right[:, 1])
        np.testing.assert_array_equal(left[:, 0], right[:, 0])
    for path in v4_files:
        (act,) = _read(path, "actions")
        assert np.sign(act[:, 1].sum()) == (1 if Scenario.from_name(path).side == "left" else -1)


def test_action_values(v4_files, v5_files):
    for path in v4_files + v5_files:
        (act,) = _read(path, "actions")
        assert np.isin(act[:, :2], LINEAR).all()
        assert not act[0].any() and not act[-1].any()  # episode_start frame, stop at the end
        assert (act[1:-1, 0] != 0).any() and (act[:, 1] != 0).any()
    for path in v4_files:
        assert not _read(path, "actions")[0][:, 2].any()


def test_distance_changes_forward_steps():
    fwd = {d: plan_actions(Scenario(distance=d), np.random.default_rng(0))[0][:, 0].astype(bool).sum()
           for d in ("close", "medium", "far")}
    assert fwd["close"] < fwd["medium"] < fwd["far"]


@pytest.mark.parametrize("length", [6, 14, 18, 25])
def test_length_is_exact(length):
    for sc in DEFAULT_SCENARIOS[::5]:
        ep = make_episode(sc, frame_size=SIZE, length=length)
        assert ep.images.shape == (length, *SIZE, 3) and ep.actions.shape == (length, 3)
        assert not ep.actions[-1].any()


def test_deterministic(tmp_path):
    a = generate_episodes(tmp_path / "a", 4, seed=5, frame_size=SIZE, with_instruction=0.5)
    b = generate_episodes(tmp_path / "b", 4, seed=5, frame_size=SIZE, with_instruction=0.5)
    c = generate_episodes(tmp_path / "c", 4, seed=6, frame_size=SIZE)
    assert [p.name for p in a] == [p.name for p in b] != [p.name for p in c]
    for pa, pb, pc in zip(a, b, c):
        with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
            assert set(fa.keys()) == set(fb.keys())
            for key in ("images", "actions"):
                assert fa[key][()].tobytes() == fb[key][()].tobytes(), key
            assert list(fa["action_event_types"][()]) == list(fb["action_event_types"][()])
            assert dict(fa.attrs) == dict(fb.attrs)
        assert _read(pa, "images")[0].tobytes() != _read(pc, "images")[0].tobytes()


def test_frames_change_over_time(v4_files):
    for path in v4_files:
        img, act = _read(path, "images", "actions")
        moved = np.flatnonzero(act[:-1, :2].any(axis=1))
        for t in moved:
            assert not np.array_equal(img[t], img[t + 1]), (path.name, t)
        assert not np.array_equal(img[0], img[-1])


def test_left_right_pairs_share_start_but_diverge(v4_files):
    left, right = (_read(p, "images")[0] for p in v4_files[:2])
    assert Scenario.from_name(v4_files[0]).side == "left" and Scenario.from_name(v4_files[1]).side == "right"
    np.testing.assert_array_equal(left[0], right[0])  # only the instruction tells them apart at the start
    assert np.abs(left[6].astype(int) - right[6]).mean() > 5  # the box drifts to opposite sides


def test_names_parse_and_balance(v4_files):
    names = [p.name for p in v4_files]
    assert len(set(names)) == len(names)
    sides = [V4_NAME.match(n).group(3) for n in names]
    assert sides == ["left", "right"] * 4
    assert [Scenario.from_name(p) for p in v4_files] == list(DEFAULT_SCENARIOS[:8])


def test_instruction_fraction(tmp_path):
    def count(paths):
        found = 0
        for path in paths:
            with h5py.File(path, "r") as f:
                found += "language_instruction" in f
        return found

    assert count(generate_episodes(tmp_path / "half", 10, frame_size=SIZE, length=4, with_instruction=0.5)) == 5
    assert count(generate_episodes(tmp_path / "none", 4, frame_size=SIZE, length=4, with_instruction=False)) == 0
    assert count(generate_episodes(tmp_path / "v5", 4, frame_size=SIZE, length=4, generation="v5",
                                   with_instruction=False)) == 4


def test_instruction_text():
    assert instruction_for(1, "left") == "go around the box on the left and stop in front of the bottle"
    assert instruction_for(2, "right") == "go around the boxes on the right and stop in front of the bottle"
    with pytest.raises(ValueError):
        instruction_for(3, "left")
    with pytest.raises(ValueError):
        Scenario(side="up")
    assert Scenario(2, "vert", "right", "variant", "far").tag == "2box_vert_right_variant_far"


def test_full_resolution(tmp_path):
    (path,) = generate_episodes(tmp_path, 1, frame_size=(720, 1280), length=3)
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (3, 720, 1280, 3) and f["images"].chunks == (1, 720, 1280, 3)
