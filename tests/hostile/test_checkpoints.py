"""Hostile checkpoints against the CLI: every refusal is one stderr line, exit 2, no traceback, nothing lost.

Cases (issue 11 items 1 and 6): a stored `tokenizer.type` + `subfolder` aimed at upstream's rmtree
fallback, `auto_map` code in a model folder a checkpoint names, a `__reduce__` payload with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (also through `train --resume`), empty / truncated / corrupt /
random files, stale window/chunk, unknown format version, wrong trainer type, values outside the
whitelist. Each canary (a folder, a file a payload would create) is checked after the run.

One case per guard runs the installed `robovlms-mobile` in a subprocess (`run_cli`); the other
variants call the same entry point, `robovlms_mobile.cli.main`, in this process (`main_in_process`:
the same argument parsing, loader and error policy, without an interpreter start each). The slow
matrix at the end runs every variant as a subprocess on every CLI path.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from drive_fixtures import tiny_checkpoint  # noqa: F401  (session fixture)
from robovlms_mobile.checkpoint.format import PLUGIN_KEY

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


def main_in_process(capsys, monkeypatch, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`robovlms-mobile ARGS` through `cli.main` in this process; exit code and captured output."""
    from robovlms_mobile.cli import main

    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code != 0, exactly one non-empty stderr line containing every needle, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert len(lines) == 1, proc.stderr[-4000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def hostile_copy(source: Path, out: Path, edit) -> Path:
    """`source` with its stored `mobile_vla` entry changed by `edit(entry)`, saved as `out`."""
    ckpt = torch.load(source, weights_only=True)
    edit(ckpt[PLUGIN_KEY])
    torch.save(ckpt, out)
    return out


def point_at(entry: dict, folder: Path) -> None:
    """Make the stored config name `folder` as its backbone and tokenizer folder."""
    cfg = entry["config"]
    cfg["model_path"] = cfg["vlm"]["pretrained_model_name_or_path"] = str(folder)
    cfg["tokenizer"]["pretrained_model_name_or_path"] = str(folder)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def canary_model(tiny_model_dir, tmp_path) -> Path:
    """A copy of the tiny Kosmos-2 folder that must survive every run."""
    folder = tmp_path / "canary-model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


class Payload:
    """Unpickling this creates the file `path` (what an attacker's code could do)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- stored config: tokenizer fallback, custom code ---------------------------------------------------------


def subfolder_checkpoint(source: Path, canary_model: Path, tmp_path: Path) -> Path:
    """A checkpoint whose stored tokenizer (type + subfolder) sends upstream's fallback to rmtree `canary_model`."""

    def edit(entry):
        point_at(entry, canary_model)
        entry["config"]["tokenizer"].update(type="AutoTokenizer", subfolder="not-here")

    return hostile_copy(source, tmp_path / "subfolder.ckpt", edit)


def test_stored_tokenizer_subfolder_cannot_delete_the_base_model_dir(tiny_checkpoint, canary_model, tmp_path):
    """Upstream's fallback would rmtree the tokenizer path (= --base-model-dir) and write a tokenizer there."""
    before = tree(canary_model)
    ckpt = subfolder_checkpoint(tiny_checkpoint, canary_model, tmp_path)
    proc = run_cli("eval", "offline", ckpt, tmp_path, "--base-model-dir", canary_model, "--no-progress")
    assert_one_line_error(proc, "robovlms-mobile eval offline: error:", "tokenizer.subfolder")
    assert tree(canary_model) == before


def test_stored_tokenizer_path_with_a_failing_tokenizer_is_not_deleted(tiny_checkpoint, canary_model, tmp_path, capsys,
                                                                       monkeypatch):
    """No --base-model-dir: the folder the checkpoint names fails to load; it is reported, never rmtree'd or rewritten."""
    (canary_model / "tokenizer.json").write_text("{broken")
    before = {p: (canary_model / p).read_bytes() for p in tree(canary_model) if (canary_model / p).is_file()}
    ckpt = hostile_copy(tiny_checkpoint, tmp_path / "named.ckpt", lambda e: point_at(e, canary_model))
    proc = main_in_process(capsys, monkeypatch, "eval", "offline", ckpt, tmp_path, "--no-progress")
    assert_one_line_error(proc, "processor does not load", str(canary_model))
    assert {p: (canary_model / p).read_bytes() for p in before} == before and tree(canary_model) == sorted(before)


@pytest.mark.parametrize("json_file", ["config.json", "tokenizer_config.json"])
def test_auto_map_in_a_folder_the_checkpoint_names_is_not_imported(tiny_checkpoint, canary_model, tmp_path, json_file,
                                                                   capsys, monkeypatch):
    """eval without --base-model-dir: the folder named in the checkpoint carries custom code; it never runs."""
    canary = tmp_path / "imported.txt"
    (canary_model / "evil_model.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    meta = json.loads((canary_model / json_file).read_text())
    meta["auto_map"] = {"AutoModelForVision2Seq": "evil_model.EvilModel", "AutoTokenizer": ["evil_model.Tok", None],
                        "AutoConfig": "evil_model.EvilConfig", "AutoProcessor": "evil_model.EvilProcessor"}
    (canary_model / json_file).write_text(json.dumps(meta))
    ckpt = hostile_copy(tiny_checkpoint, tmp_path / "automap.ckpt", lambda e: point_at(e, canary_model))
    args = ("eval", "closed-loop", ckpt, "--episodes", "1", "--out", tmp_path / "out", "--no-progress")
    proc = run_cli(*args) if json_file == "config.json" else main_in_process(capsys, monkeypatch, *args)
    assert_one_line_error(proc, "auto_map", json_file)
    assert not canary.exists()


@pytest.mark.parametrize("section, key, value, needle", [
    ("vlm", "type", "AutoModel", "vlm.type"),
    ("tokenizer", "type", "PreTrainedTokenizerFast", "tokenizer.type"),
    ("tokenizer", "additional_special_tokens", ["<evil>"], "additional_special_tokens"),
    ("act_head", "hidden_size", "32", "act_head.hidden_size"),
    ("train_setup", "predict_caption", True, "train_setup.predict_caption"),
])
def test_stored_config_values_outside_the_whitelist(tiny_checkpoint, tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                    section, key, value, needle):
    ckpt = hostile_copy(tiny_checkpoint, tmp_path / "value.ckpt", lambda e: e["config"][section].__setitem__(key, value))
    proc = main_in_process(capsys, monkeypatch, "serve", ckpt, "--base-model-dir", tiny_model_dir, "--port", "1")
    assert_one_line_error(proc, "robovlms-mobile serve: error:", needle)


# ---- the file itself --------------------------------------------------------------------------------------


def test_pickle_payload_with_force_no_weights_only_env_is_refused_by_train_resume(tiny_checkpoint, tiny_config, tmp_path):
    """Lightning leaves weights_only to torch's default, which this variable flips; the plugin passes True."""
    canary = tmp_path / "unpickled.txt"
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["payload"] = Payload(canary)
    torch.save(ckpt, tmp_path / "evil.ckpt")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config))
    proc = run_cli("train", config, "--resume", tmp_path / "evil.ckpt", "--output-dir", tmp_path / "run", "--no-progress",
                   env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert_one_line_error(proc, "robovlms-mobile train: error:", "refusing to load", "evil.ckpt")
    assert not canary.exists()


def test_pickle_payload_with_force_no_weights_only_env_is_refused_by_eval(tmp_path, capsys, monkeypatch):
    canary = tmp_path / "unpickled.txt"
    torch.save({"state_dict": {}, PLUGIN_KEY: Payload(canary)}, tmp_path / "evil.ckpt")
    proc = main_in_process(capsys, monkeypatch, "eval", "offline", tmp_path / "evil.ckpt", tmp_path,
                           env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert_one_line_error(proc, "refusing to load")
    assert not canary.exists()


def _broken_files(source: Path, folder: Path) -> dict[str, Path]:
    data = source.read_bytes()
    rng = np.random.default_rng(0)
    weights = torch.load(source, weights_only=True)["state_dict"]
    largest = max(weights.values(), key=lambda t: t.numel()).contiguous()
    start = data.index(largest.numpy().tobytes()[:256])  # that tensor's stored bytes; its first values become NaN
    corrupt = bytearray(data)
    corrupt[start : start + 64] = b"\xff" * 64
    files = {"empty": b"", "truncated": data[: len(data) // 2], "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "zip-header-then-random": b"PK\x03\x04" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "corrupt-middle": bytes(corrupt), "json": json.dumps({"state_dict": {}}).encode()}
    out = {}
    for name, content in files.items():
        (folder / f"{name}.ckpt").write_bytes(content)
        out[name] = folder / f"{name}.ckpt"
    return out


BROKEN = {"empty": "empty file", "truncated": "truncated", "random": "not a torch checkpoint",
          "zip-header-then-random": "truncated", "corrupt-middle": "non-finite", "json": "not a torch checkpoint"}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_files_are_one_line_errors(tiny_checkpoint, tmp_path, capsys, monkeypatch, name):
    path = _broken_files(tiny_checkpoint, tmp_path)[name]
    if name == "truncated":
        proc = run_cli("serve", path, "--port", "1")
    elif name == "random":
        proc = run_cli("eval", "offline", path, tmp_path)
    else:
        proc = main_in_process(capsys, monkeypatch, "eval", "offline", path, tmp_path)
    line = assert_one_line_error(proc, str(path), BROKEN[name])
    assert "pickle" not in line.lower()  # random bytes are not "pickled objects"


# ---- what a checkpoint may make the loader allocate (issue 21) ------------------------------------------------


def _resaved(source: Path, out: Path, edit) -> Path:
    ckpt = torch.load(source, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, out)
    return out


def _first_weight(ckpt: dict) -> str:
    return sorted(ckpt["state_dict"])[0]


def _stride0(ckpt: dict) -> None:  # 10^9 float32 values over one stored value: 4 GB once anything touches it
    ckpt["state_dict"][_first_weight(ckpt)] = torch.zeros(1).expand(10**9)


def _overlapping(ckpt: dict) -> None:  # rows that share all but one of their values: 1000x larger than the storage
    ckpt["state_dict"][_first_weight(ckpt)] = torch.zeros(1100).as_strided((1000, 100), (1, 1))


def _stride0_optimizer_state(ckpt: dict) -> None:
    ckpt["optimizer_states"] = [{"state": {0: {"exp_avg": torch.zeros(1).expand(10**9)}}, "param_groups": []}]


def _nested(ckpt: dict) -> None:
    node: list = []
    ckpt["hostile"] = node
    for _ in range(200):
        node.append([])
        node = node[0]


def _deflated(source: Path, out: Path) -> Path:
    """Every record of the checkpoint written with deflate (the 18 MB file that inflates to 4 GiB is one such record)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return out


def _declared_past_the_end(source: Path, out: Path, size: int = 0xFFFF0000) -> Path:
    """The first tensor record's central-directory entry declares `size` bytes (about 4 GiB); nothing else changes."""
    data = bytearray(source.read_bytes())
    i = 0
    while True:
        i = data.index(b"PK\x01\x02", i)
        name_len = struct.unpack_from("<H", data, i + 28)[0]
        if data[i + 46: i + 46 + name_len].endswith(b"/data/0"):
            break
        i += 4
    struct.pack_into("<II", data, i + 20, size, size)  # compressed and uncompressed size
    out.write_bytes(bytes(data))
    return out


ARCHIVES = {
    "stride-0 tensor": (lambda src, out: _resaved(src, out, _stride0), "(a stride-0 or overlapping view that would expand)"),
    "overlapping view": (lambda src, out: _resaved(src, out, _overlapping), "declares shape (1000, 100) with strides (1, 1)"),
    "stride-0 optimizer state": (lambda src, out: _resaved(src, out, _stride0_optimizer_state),
                                 "tensor 'optimizer_states.0.state.0.exp_avg' declares shape (1000000000,)"),
    "nested 200 deep": (lambda src, out: _resaved(src, out, _nested), "is nested more than 64 levels deep"),
    "deflated records": (_deflated, "is compressed (zip method 8); torch.save writes stored records"),
    "record declared past the end": (_declared_past_the_end, "declares 4294901760 bytes at offset"),
}


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_archive_that_would_allocate_gigabytes_is_one_line(tiny_checkpoint, tmp_path, capsys, monkeypatch, name):
    build, needle = ARCHIVES[name]
    path = build(tiny_checkpoint, tmp_path / "hostile.ckpt")
    proc = main_in_process(capsys, monkeypatch, "eval", "offline", path, tmp_path)
    assert_one_line_error(proc, str(path), needle)


PEAK = """
import resource, sys
from robovlms_mobile.checkpoint.format import CheckpointError, load_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(sys.argv[1])
except CheckpointError as exc:
    print("refused:", exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.parametrize("name", ["stride-0 tensor", "stride-0 optimizer state", "deflated records"])
def test_refused_archive_costs_no_more_memory_than_its_size(tiny_checkpoint, tmp_path, name):
    """The refusal comes before any expansion: the loader's peak memory rises by less than 64 MB (the expansion: 4 GB)."""
    path = ARCHIVES[name][0](tiny_checkpoint, tmp_path / "hostile.ckpt")
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, timeout=300)
    refused, rise = out.stdout.strip().splitlines()[-2:]
    assert refused.startswith("refused:") and int(rise) < 64 * 2**20 + path.stat().st_size, out.stdout + out.stderr[-2000:]


def test_missing_checkpoint_is_one_line(tmp_path, capsys, monkeypatch):
    assert_one_line_error(main_in_process(capsys, monkeypatch, "eval", "offline", tmp_path / "nope.ckpt", tmp_path),
                          "does not exist")


# ---- metadata that disagrees ------------------------------------------------------------------------------


def _stale_chunk(entry):
    entry["config"]["fwd_pred_next_n"] = 5
    entry["config"]["act_head"]["fwd_pred_next_n"] = 5
    entry["shape"]["chunk"] = 5


def _stale_window(entry):
    entry["config"]["window_size"] = 4


@pytest.mark.parametrize("edit, needles", [
    (_stale_chunk, ("stale checkpoint", "chunk (fwd_pred_next_n) 5", "20 values")),
    (_stale_window, ("stale checkpoint", "recorded window 8", "says 4")),
    (lambda e: e.__setitem__("format_version", 2), ("checkpoint format 2", "reads format 1")),
    (lambda e: e["config"].__setitem__("trainer_type", "BaseTrainer"), ("trainer_type 'BaseTrainer'", "MobileVLATrainer")),
    (lambda e: e["action_scale"].__setitem__("max_speed", float("inf")), ("action_scale.max_speed",)),
    (lambda e: e.__setitem__("instructions", ["go left", 3]), ("instructions",)),
], ids=["stale-chunk", "stale-window", "format-version", "trainer-type", "max-speed-inf", "instruction-not-a-string"])
def test_metadata_that_disagrees_is_one_line(tiny_checkpoint, tiny_model_dir, tmp_path, capsys, monkeypatch, edit, needles):
    ckpt = hostile_copy(tiny_checkpoint, tmp_path / "meta.ckpt", edit)
    args = ("eval", "offline", ckpt, tmp_path, "--base-model-dir", tiny_model_dir)
    proc = run_cli(*args) if edit is _stale_chunk else main_in_process(capsys, monkeypatch, *args)
    assert_one_line_error(proc, str(ckpt), *needles)


def test_train_resume_with_another_chunk_is_one_line(tiny_checkpoint, tiny_config, tmp_path, capsys, monkeypatch):
    tiny_config["fwd_pred_next_n"] = tiny_config["act_head"]["fwd_pred_next_n"] = 6
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config))
    proc = main_in_process(capsys, monkeypatch, "train", config, "--resume", tiny_checkpoint, "--output-dir",
                           tmp_path / "run", "--no-progress")
    assert_one_line_error(proc, "robovlms-mobile train: error:", "trained with chunk 10", "fwd_pred_next_n 6")


@pytest.mark.parametrize("command", ["serve", "train-resume", "closed-loop"])
def test_broken_file_on_every_cli_path_in_process(tiny_checkpoint, tiny_config, tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                   command):
    """The fast version of the slow matrix below: one broken file per CLI path, through `cli.main` in this process."""
    path = _broken_files(tiny_checkpoint, tmp_path)["corrupt-middle"]
    if command == "serve":
        proc = main_in_process(capsys, monkeypatch, "serve", path, "--base-model-dir", tiny_model_dir, "--port", "1")
    elif command == "closed-loop":
        proc = main_in_process(capsys, monkeypatch, "eval", "closed-loop", path, "--out", tmp_path / "out", "--no-progress")
    else:
        (tmp_path / "config.json").write_text(json.dumps(tiny_config))
        proc = main_in_process(capsys, monkeypatch, "train", tmp_path / "config.json", "--resume", path,
                               "--output-dir", tmp_path / "run", "--no-progress")
    assert_one_line_error(proc, str(path), BROKEN["corrupt-middle"])


# ---- the same refusals on the other CLI paths (slow: one interpreter start each) ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["empty", "truncated", "random", "corrupt-middle"])
@pytest.mark.parametrize("command", ["serve", "train-resume", "closed-loop"])
def test_broken_files_on_every_cli_path(tiny_checkpoint, tiny_config, tiny_model_dir, tmp_path, name, command):
    path = _broken_files(tiny_checkpoint, tmp_path)[name]
    if command == "serve":
        proc = run_cli("serve", path, "--base-model-dir", tiny_model_dir, "--port", "1")
    elif command == "closed-loop":
        proc = run_cli("eval", "closed-loop", path, "--out", tmp_path / "out", "--no-progress")
    else:
        (tmp_path / "config.json").write_text(json.dumps(tiny_config))
        proc = run_cli("train", tmp_path / "config.json", "--resume", path, "--output-dir", tmp_path / "run", "--no-progress")
    assert_one_line_error(proc, str(path), BROKEN[name])


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "offline"])
def test_pickle_payload_with_env_on_every_cli_path(tiny_model_dir, tmp_path, command):
    canary = tmp_path / "unpickled.txt"
    torch.save({"state_dict": {}, PLUGIN_KEY: Payload(canary)}, tmp_path / "evil.ckpt")
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    args = ["serve", tmp_path / "evil.ckpt", "--base-model-dir", tiny_model_dir, "--port", "1"] if command == "serve" else \
        ["eval", "offline", tmp_path / "evil.ckpt", tmp_path, "--base-model-dir", tiny_model_dir]
    assert_one_line_error(run_cli(*args, env=env), "refusing to load")
    assert not canary.exists()


@pytest.mark.slow
def test_stored_tokenizer_subfolder_on_serve_and_closed_loop(tiny_checkpoint, canary_model, tmp_path):
    before = tree(canary_model)
    ckpt = subfolder_checkpoint(tiny_checkpoint, canary_model, tmp_path)
    assert_one_line_error(run_cli("serve", ckpt, "--base-model-dir", canary_model, "--port", "1"), "tokenizer.subfolder")
    assert_one_line_error(run_cli("eval", "closed-loop", ckpt, "--out", tmp_path / "o", "--no-progress"), "tokenizer.subfolder")
    assert tree(canary_model) == before


@pytest.mark.slow
def test_auto_map_in_base_model_dir_on_serve_and_offline(tiny_checkpoint, canary_model, tmp_path):
    canary = tmp_path / "imported.txt"
    (canary_model / "evil_model.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    meta = json.loads((canary_model / "config.json").read_text())
    meta["auto_map"] = {"AutoModelForVision2Seq": "evil_model.EvilModel", "AutoConfig": "evil_model.EvilConfig"}
    (canary_model / "config.json").write_text(json.dumps(meta))
    assert_one_line_error(run_cli("serve", tiny_checkpoint, "--base-model-dir", canary_model, "--port", "1"), "auto_map")
    assert_one_line_error(run_cli("eval", "offline", tiny_checkpoint, tmp_path, "--base-model-dir", canary_model), "auto_map")
    assert not canary.exists()
