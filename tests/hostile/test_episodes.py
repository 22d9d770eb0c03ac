"""Hostile episode files, globs and cache folders (issue 11): each case named; a clear one-line refusal, no hang.

One folder holds a valid episode and one hostile file per case; `data validate` runs once over it
in a subprocess with a timeout, and every case must have its own error row naming the file. The
same files fail the training preflight (before any model is built); CLI flags, globs and the
frame cache get their own cases.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from helpers import jpeg_declaring, jpeg_with_repeated_scans
from robovlms_mobile.data.cache import FrameCache
from robovlms_mobile.data.dataset import InvalidEpisodesError, MobileVLAH5Dataset
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.writers import event_types_for, write_episode_v4

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
T, SIZE = 18, (16, 16)
ATTRS = {"obstacle_layout_type": "1box_hori", "collection_datetime": "2025-01-06T09:00:00"}
TAG = "_1box_hori_left_core_medium.h5"  # names give an instruction: only the defect is wrong
TIMEOUT = 300  # a hang guard only: the machine is shared


def _frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (T, *SIZE, 3), dtype=np.uint8)


def _actions() -> np.ndarray:
    return np.tile(np.float32([1.15, 0.0, 0.0]), (T, 1))


def _plain(path: Path, seed: int = 0, **datasets) -> Path:
    """A V4 file whose datasets are given (the rest valid), written without the package's writer checks."""
    with h5py.File(path, "w") as f:
        f.create_dataset("actions", data=_actions())
        for key, value in datasets.items():
            value(f, key) if callable(value) else f.create_dataset(key, data=value)
        if "images" not in f and "observations" not in f:
            f.create_dataset("images", data=_frames(seed))
    return path


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _huge_jpeg_header(side: int = 60000) -> bytes:
    """A small valid JPEG whose SOF0 header claims side x side pixels."""
    data = bytearray(_jpeg(np.full((8, 8, 3), 128, np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


def _jpeg_frames(bad: dict[int, bytes]) -> list[bytes]:
    """The episode's frames as JPEG, with frame t replaced by bad[t]."""
    return [bad.get(t, _jpeg(frame)) for t, frame in enumerate(_frames())]


def _tiny_chunks(f, key):
    f.create_dataset(key, data=_frames(), chunks=(1, 1, 1, 1))  # T*16*16*3 = 13,824 one-byte chunks


def _events(values):
    def write(f, key):
        f.create_dataset(key, data=values, dtype=h5py.string_dtype("utf-8"))
    return write


def _vlen(items: list[bytes]):
    def write(f, key):
        ds = f.create_dataset(key, (len(items),), dtype=h5py.vlen_dtype(np.uint8))
        for i, b in enumerate(items):
            ds[i] = np.frombuffer(b, np.uint8)
    return write


def _unknown_filter(f, key):
    ds = f.create_dataset(key, (T, *SIZE, 3), np.uint8, chunks=(1, *SIZE, 3), compression=32099, allow_unknown_filter=True)
    for t in range(T):
        ds.id.write_direct_chunk((t, 0, 0, 0), _frames()[t].tobytes())


def _unwritten(shape, chunks):
    def write(f, key):
        f.create_dataset(key, shape, np.uint8, chunks=chunks, compression="gzip")
        if chunks:
            f[key][0] = 7  # one chunk written
    return write


def _virtual_missing_source(f, key):
    layout = h5py.VirtualLayout(shape=(T, *SIZE, 3), dtype=np.uint8)
    layout[:] = h5py.VirtualSource("missing_source.h5", "images", shape=(T, *SIZE, 3))
    f.create_virtual_dataset(key, layout, fillvalue=0)


def _external_storage(tmp: Path):
    raw = tmp / "raw_frames.bin"
    raw.write_bytes(_frames().tobytes())

    def write(f, key):
        f.create_dataset(key, (T, *SIZE, 3), np.uint8, external=[(str(raw), 0, raw.stat().st_size)])
    return write


def _link(kind: str, target: str):
    def write(f, key):
        f[key] = h5py.ExternalLink(target, "/images") if kind == "external" else h5py.SoftLink(target)
    return write


def _instruction(value):
    def write(f, key):
        if value == "group":
            f.create_group(key)
        else:
            f.create_dataset(key, data=value)
    return write


def build_cases(d: Path) -> dict[str, tuple[str, str]]:
    """Write one hostile file per case into d; returns {case: (file name, expected message part)}."""
    fifo = d.parent / f"{d.name}-images.fifo"
    os.mkfifo(fifo)
    other = write_episode_v4(d.parent / f"{d.name}-other.h5", _frames(9), _actions(), event_types_for(_actions()),
                             instruction=None, attrs=ATTRS)
    cases = {
        "images_external_link_to_fifo": ({"images": _link("external", str(fifo))}, "is an external link to"),
        "images_external_link_to_file": ({"images": _link("external", str(other))}, "episode files must hold their own data"),
        "images_soft_link": ({"data": _frames(1), "images": _link("soft", "/data")}, "is a soft link"),
        "virtual_dataset_missing_source": ({"images": _virtual_missing_source}, "is a virtual dataset"),
        "external_raw_storage": ({"images": _external_storage(d.parent)}, "keeps its raw data in external file(s)"),
        "million_frames_declared": ({"images": _unwritten((10**6, *SIZE, 3), (1, *SIZE, 3))}, "declares shape (1000000, 16, 16, 3) but stores only 1 of its 1000000 chunks"),
        "unwritten_chunks": ({"images": _unwritten((9000, *SIZE, 3), (1, *SIZE, 3))}, "stores only 1 of its 9000 chunks"),
        "contiguous_never_written": ({"images": lambda f, k: f.create_dataset(k, (T, *SIZE, 3), np.uint8)}, "but stores 0 bytes"),
        "unavailable_filter": ({"images": _unknown_filter}, "HDF5 filter 32099"),
        "zero_by_zero_frames": ({"images": np.zeros((T, 0, 0, 3), np.uint8)}, "frames are 0x0"),
        "instruction_group": ({"language_instruction": _instruction("group")}, "'language_instruction' is a group"),
        "instruction_100kb": ({"language_instruction": _instruction(np.array(["x" * 100_000], dtype=object))},
                              "the limit is 512"),
        "instruction_not_utf8": ({"language_instruction": _instruction(np.array([b"\xff\xfe go"]))}, "not valid UTF-8"),
        "instruction_number": ({"language_instruction": _instruction(np.array([42]))}, "expected a UTF-8 string"),
        "jpeg_header_bomb": ({"observations/images": _vlen([_huge_jpeg_header()] * T)}, "declares 60000x60000 pixels; the limit is 8192"),
        "jpeg_not_jpeg": ({"observations/images": _vlen([b"GIF89a not a jpeg"] * T)}, "is not usable: not JPEG data"),
        "jpeg_empty_frame": ({"observations/images": _vlen([b""] * T)}, "has 0 bytes"),
        # issue 21: work a small input can demand, frames that cannot be decoded, values echoed back
        "images_one_byte_chunks": ({"images": _tiny_chunks}, "is stored in 13824 chunks of shape (1, 1, 1, 1); expected at most 82"),
        "jpeg_declares_8000x8000": ({"observations/images": _vlen([jpeg_declaring(_jpeg(f), 8000, 8000) for f in _frames()])},
                                    "declares 8000x8000 pixels in"),
        "jpeg_2000_scans": ({"observations/images": _vlen(_jpeg_frames({3: jpeg_with_repeated_scans(_frames()[0], 2000)}))},
                            "JPEG frame 3 of '/observations/images' is not usable: progressive JPEG with more than 32 scans"),
        "jpeg_truncated_frame": ({"observations/images": _vlen(_jpeg_frames({7: _jpeg(_frames()[7])[:-40]}))},
                                 "JPEG frame 7 of '/observations/images' is not usable: truncated JPEG"),
        "jpeg_no_scan": ({"observations/images": _vlen(_jpeg_frames({0: b"\xff\xd8\xff\xd9"}))}, "no frame header or no scan"),
        "jpeg_frame_of_another_size": ({"observations/images": _vlen(_jpeg_frames({5: _jpeg(np.zeros((32, 16, 3), np.uint8))}))},
                                       "JPEG frames have different sizes"),
        "event_type_1mb": ({"action_event_types": _events(["episode_start"] + ["x" * 1_000_000] + ["stop_action"] * (T - 2))},
                           "unknown value(s) ['xxxxxxxxxx"),
        "instruction_zero_width": ({"language_instruction": _instruction(np.array(["\u200b\u200b\u200b".encode()]))},
                                   "3 invisible character(s) (U+200B ...)"),
        "instruction_control_chars": ({"language_instruction": _instruction(np.array([b"\x01\x02\x7f"]))},
                                      "invisible character(s) (U+0001 ...)"),
    }
    out = {}
    for case, (datasets, expected) in cases.items():
        name = f"{case}{TAG}"
        _plain(d / name, **datasets)
        out[case] = (name, expected)
    with h5py.File(d / f"actions_declared_unwritten{TAG}", "w") as f:
        f.create_dataset("images", data=_frames(3))
        f.create_dataset("actions", (T, 3), np.float32, chunks=(1, 3))
    out["actions_declared_unwritten"] = (f"actions_declared_unwritten{TAG}", "stores only 0 of its 18 chunks")
    write_episode_v4(d / f"episode_20250106_090000{TAG}", _frames(5), _actions(), event_types_for(_actions()),
                     instruction=None, attrs=ATTRS)  # the one valid file
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile") / "data"
    d.mkdir()
    cases = build_cases(d)
    started = time.monotonic()
    out = subprocess.run([CLI, "data", "validate", str(d), "--no-progress"], capture_output=True, text=True, timeout=TIMEOUT)
    return d, cases, out, time.monotonic() - started


CASE_NAMES = ["images_external_link_to_fifo", "images_external_link_to_file", "images_soft_link",
              "virtual_dataset_missing_source", "external_raw_storage", "million_frames_declared", "unwritten_chunks",
              "contiguous_never_written", "unavailable_filter", "zero_by_zero_frames", "instruction_group",
              "instruction_100kb", "instruction_not_utf8", "instruction_number", "jpeg_header_bomb", "jpeg_not_jpeg",
              "jpeg_empty_frame", "actions_declared_unwritten", "images_one_byte_chunks", "jpeg_declares_8000x8000",
              "jpeg_2000_scans", "jpeg_truncated_frame", "jpeg_no_scan", "jpeg_frame_of_another_size", "event_type_1mb",
              "instruction_zero_width", "instruction_control_chars"]
MAX_LINE = 1000  # characters: no refusal row echoes a value in full


@pytest.mark.parametrize("case", CASE_NAMES)
def test_validate_refuses(hostile, case):
    d, cases, out, _ = hostile
    name, expected = cases[case]
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(str(d / name)) and " error " in line]
    assert len(rows) == 1 and expected in rows[0], (case, rows, out.stdout[-3000:])
    assert len(rows[0]) < MAX_LINE, rows[0][:2000]
    assert f"{len(CASE_NAMES) + 1} file(s): 1 ok, 0 with warnings only, {len(CASE_NAMES)} with errors" in out.stdout


def test_training_preflight_refuses_them_before_the_model(hostile):
    """The same files fail `preflight_data` (no frame decoding), one line each, before anything is built."""
    from robovlms_mobile.train.launcher import preflight_data

    d, cases, _, _ = hostile
    configs = {"window_size": 8, "fwd_pred_next_n": 10,
               "train_dataset": {"type": "MobileVLAH5Dataset", "data_dir": str(d), "split": "all"}}
    with pytest.raises(InvalidEpisodesError) as err:
        preflight_data(configs)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{len(CASE_NAMES)} invalid episode file(s):"
    for case, (name, expected) in cases.items():
        (line,) = [x for x in lines if f"{d / name}: " in x]
        assert expected in line and len(line) < MAX_LINE, (case, line[:2000])


@pytest.mark.parametrize("args, expected", [
    (["--pattern", "../../../etc/*"], "must stay inside the data folder"),
    (["--pattern", "/etc/*"], "must stay inside the data folder"),
    (["--max-speed", "nan"], "argument --max-speed: expected a finite number, got 'nan'"),
    (["--window", "-5"], "argument --window: expected an integer >= 1, got -5"),
], ids=["pattern_parent_dirs", "pattern_absolute", "max_speed_nan", "window_negative"])
def test_cli_flags_refused(hostile, args, expected):
    d, *_ = hostile
    out = subprocess.run([CLI, "data", "validate", str(d), "--no-progress", *args], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr


def test_fifo_given_as_episode_file(tmp_path):
    fifo = tmp_path / "episode.h5"
    os.mkfifo(fifo)
    out = subprocess.run([CLI, "data", "validate", str(fifo)], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "episode.h5" in out.stderr
    (check,) = check_files([fifo], min_length=2, max_speed=1.15)  # called directly: refused, not opened
    assert check.errors[0].message.endswith("not a regular file (a FIFO, device or folder?)")


def test_dataset_episode_pattern_stays_inside(hostile):
    d, *_ = hostile
    with pytest.raises(ValueError, match="must stay inside the data folder"):
        MobileVLAH5Dataset(str(d), split="all", episode_pattern="../*/*.h5")


def test_cache_refuses_what_it_cannot_hold(hostile, tmp_path):
    d, cases, *_ = hostile
    (ep,) = [c.episode for c in check_files(sorted(d.glob("episode_*.h5")), min_length=2, max_speed=1.15)]
    with pytest.raises(OSError, match=r"cache_dir .*the frame cache needs .* MB .* the bound is"):
        FrameCache(tmp_path / "cache", 224, max_bytes=1000).build([ep], progress=False)
    assert not list((tmp_path / "cache").iterdir())


KILL_SCRIPT = """
import sys, time
from robovlms_mobile.data import cache as c
from robovlms_mobile.data.scan import check_files
eps = [ch.episode for ch in check_files(sorted(__import__('pathlib').Path(sys.argv[1]).glob('*.h5')), min_length=2, max_speed=9)]
slow = c.resize_frames
def resize(*a, **k):
    print('writing', flush=True); time.sleep(30); return slow(*a, **k)
c.resize_frames = resize
c.FrameCache(sys.argv[2], 32).build(eps, progress=False)
"""


def test_cache_killed_mid_entry_leaves_no_temp_file(hostile, tmp_path):
    """A build killed while writing an entry leaves nothing behind; a stale named temp file of a dead process is removed."""
    d, *_ = hostile
    data = tmp_path / "one"
    data.mkdir()
    src = next(d.glob("episode_*.h5"))
    (data / src.name).write_bytes(src.read_bytes())
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(data), str(cache)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # inside an entry's write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=TIMEOUT)
    assert sorted(p.name for p in cache.iterdir()) == []
    stale = cache / ".robovlms-cache-999999999-episode-0123456789abcdef01234567.npy.tmp"  # a named temp file (file systems without O_TMPFILE), its process gone
    stale.write_bytes(b"x" * 100)
    (ep,) = [c.episode for c in check_files([data / src.name], min_length=2, max_speed=1.15)]
    assert FrameCache(cache, 32).build([ep], progress=False) == 1
    assert not stale.exists() and len(list(cache.glob("*.npy"))) == 1


def test_json_report_counts(hostile, tmp_path):
    """The report names every case as an error (machine-readable count for docs/data.md)."""
    d, *_ = hostile
    out = subprocess.run([CLI, "data", "validate", str(d), "--no-progress", "--no-frames", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=TIMEOUT)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert out.returncode == 1 and doc["summary"]["errors"] == len(CASE_NAMES)


def test_loader_checks_each_frame_header_against_the_episode(tmp_path):
    """A frame replaced after the check (another size) is refused by the loader before decoding, naming file and frame."""
    from robovlms_mobile.data.decode import ImageError
    from robovlms_mobile.data.frames import read_frames_stored
    from robovlms_mobile.data.writers import write_episode_v5

    path = write_episode_v5(tmp_path / "target_left_straight_path__core__fixed_left.h5", _frames(), _actions(),
                            instruction="go to the left target", storage="jpeg",
                            attrs={"scenario": "target_left_straight_path", "pattern": "core", "distance": "fixed",
                                   "end_pos": "left"})
    (check,) = check_files([path], min_length=2, max_speed=1.15)
    with h5py.File(path, "r+") as f:
        f["observations/images"][4] = np.frombuffer(_jpeg(np.zeros((32, 16, 3), np.uint8)), np.uint8)
    with h5py.File(path, "r") as f, pytest.raises(ImageError) as err:
        read_frames_stored(f, check.episode, 0, T, min_size=8)
    assert str(err.value) == (f"{path}: JPEG frame 4 of 'observations/images': the JPEG image declares 16x32 pixels; "
                              "expected 16x16 (the episode's frame size)")


def test_content_hash_reads_each_chunk_once_in_grid_order(tmp_path):
    """The hash over many chunks (one walk, not one lookup per index) is the sha256 of the chunks in grid order, as before."""
    import hashlib

    from robovlms_mobile.data.fields import content_hash

    n = 600
    images = np.random.default_rng(1).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)
    path = tmp_path / "many_chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 4, 4, 3), compression="gzip")
        f.create_dataset("actions", data=np.zeros((n, 3), np.float32))
    with h5py.File(path, "r") as f:
        expected = hashlib.sha256(f"{f['images'].shape}|{f['images'].dtype}|{f['actions'].shape}|{f['actions'].dtype}".encode())
        expected.update(np.zeros((n, 3), np.float32).tobytes())
        for t in range(n):
            expected.update(f["images"].id.read_direct_chunk((t, 0, 0, 0))[1])
        assert content_hash(path, f["images"], f["actions"]) == expected.hexdigest()
