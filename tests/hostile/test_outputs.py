"""Hostile outputs, caches and duplicates (issue 21): what the tool writes, the folders it trusts, the files it counts.

- Nothing the tool writes lands on its inputs (by resolved path or inode), and no write replaces a
  file it did not write (`--overwrite` names each one it replaces): real CLI runs in subprocesses,
  the input or the user's file checked byte for byte afterwards.
- A cache never trusts its folder: a manifest naming absolute or `../` paths deletes nothing outside,
  a malformed manifest is rebuilt with a notice, a user's `.x.<pid>.tmp` survives, links are not read.
- One run per output folder (a lock with the pid; a dead process's lock taken over with a notice);
  a second `train` into a folder holding a run is refused unless `--resume` continues it, and the
  checkpoint a run reports is the one it wrote; `output_root` `~` is expanded, `/` and `/etc` refused.
- Same frames and actions with another instruction is a variant (kept, split together); identical
  including the instruction is a duplicate (a warning, counted once).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from robovlms_mobile.data.cache import FrameCache
from robovlms_mobile.data.scan import check_files
from robovlms_mobile.data.synthetic import generate_episodes
from robovlms_mobile.data.writers import write_episode_v5
from robovlms_mobile.outputs import FolderLock, OutputError, check_output_root, claim, written

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
TIMEOUT = 300  # a hang guard only: the machine is shared


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def refused(out: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, one error line naming `words`, no traceback."""
    lines = [line for line in out.stderr.splitlines() if "error:" in line]
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(w in lines[0] for w in words), (words, lines[0])


@pytest.fixture
def episodes(tmp_path) -> Path:
    d = tmp_path / "eps"
    generate_episodes(d, 4, seed=3, frame_size=(16, 16), length=6)
    return d


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- nothing written lands on an input ------------------------------------------------------------------------------

def test_split_out_onto_an_episode_is_refused(episodes):
    before = _snapshot(episodes)
    target = sorted(episodes.glob("*.h5"))[1]
    refused(cli("data", "split", episodes, "--out", target, "--no-progress"), "--out", target.name, "input")
    assert _snapshot(episodes) == before


def test_validate_json_onto_an_episode_is_refused(episodes):
    before = _snapshot(episodes)
    target = sorted(episodes.glob("*.h5"))[0]
    refused(cli("data", "validate", episodes, "--json", target, "--no-progress"), "--json", target.name, "input")
    assert _snapshot(episodes) == before


def test_outputs_reaching_an_input_through_a_link_are_refused(episodes, tmp_path):
    """A symbolic link and a hard link to an episode are that episode (compared by resolved path and inode)."""
    target = sorted(episodes.glob("*.h5"))[0]
    before = target.read_bytes()
    (tmp_path / "soft.json").symlink_to(target)
    os.link(target, tmp_path / "hard.json")
    refused(cli("data", "split", episodes, "--out", tmp_path / "soft.json", "--no-progress"), "soft.json")
    refused(cli("data", "validate", episodes, "--json", tmp_path / "hard.json", "--no-progress"), "hard.json")
    assert target.read_bytes() == before


def test_reports_never_replace_a_file_the_tool_did_not_write(episodes, tmp_path):
    """A user's file at --json / --out is kept; the tool's own report from an earlier run is replaced."""
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}\n')
    refused(cli("data", "validate", episodes, "--json", mine, "--no-progress"), "notes.json", "not written by robovlms-mobile")
    refused(cli("data", "split", episodes, "--out", mine, "--no-progress"), "notes.json", "not written by robovlms-mobile")
    assert mine.read_text() == '{"mine": true}\n'
    ours = tmp_path / "split.json"
    assert cli("data", "split", episodes, "--out", ours, "--no-progress").returncode == 0
    assert cli("data", "split", episodes, "--out", ours, "--no-progress", "--seed", "1").returncode == 0  # its own: replaced
    assert json.loads(ours.read_text())["seed"] == 1
    ours.write_text(ours.read_text() + " ")  # changed by the user since: no longer the tool's
    refused(cli("data", "split", episodes, "--out", ours, "--no-progress"), "split.json")


def test_stats_and_show_keep_the_users_files(episodes, tmp_path):
    out = tmp_path / "stats"
    out.mkdir()
    (out / "summary.md").write_text("my notes\n")
    refused(cli("data", "stats", episodes, "--out", out, "--no-progress"), "summary.md")
    assert (out / "summary.md").read_text() == "my notes\n" and sorted(p.name for p in out.iterdir()) == ["summary.md"]
    src = sorted(episodes.glob("*.h5"))[0]
    odd = tmp_path / "shown" / "ep.gif"  # an episode named like show's GIF output, shown into its own folder
    odd.parent.mkdir()
    shutil.copy(src, odd)
    refused(cli("data", "show", odd, "--out", odd.parent), "ep.gif", "input")
    assert odd.read_bytes() == src.read_bytes()


def test_convert_refuses_two_sources_with_one_name_and_names_what_it_replaces(tmp_path):
    """Two V5 files of one name from two folders: the second is an error (not a silent replacement of the first);
    --overwrite over an earlier output names the file it replaced; a user's file is kept without it."""
    rng = np.random.default_rng(0)
    sources = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        sources.append(write_episode_v5(tmp_path / folder / "same_1box_hori_left_core_medium.h5",
                                        rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8),
                                        np.tile(np.float32([0.5, 0, 0]), (5, 1)), instruction="go left",
                                        attrs={"scenario": "1box_hori_left", "pattern": "core", "distance": "medium",
                                               "end_pos": np.zeros(2, np.float32)}))
    out_dir = tmp_path / "v4"
    out = cli("data", "convert", *sources, "--out", out_dir, "--overwrite", "--no-progress")
    assert out.returncode == 1 and "1 V4 file(s) written, 1 source(s) failed" in out.stdout, out.stdout + out.stderr
    assert "already written from" in out.stderr and str(sources[0]) in out.stderr
    assert sorted(p.name for p in out_dir.glob("*.h5")) == ["same_1box_hori_left_core_medium.h5"]
    with h5py.File(out_dir / "same_1box_hori_left_core_medium.h5") as f:
        assert f.attrs["source"] == "same_1box_hori_left_core_medium.h5"
    again = cli("data", "convert", sources[0], "--out", out_dir, "--overwrite", "--no-progress")
    assert again.returncode == 0 and "replaced the existing file" in again.stdout
    user = tmp_path / "v4b"
    user.mkdir()
    (user / sources[0].name).write_bytes(b"the user's own file")
    kept = cli("data", "convert", sources[0], "--out", user, "--no-progress")
    assert kept.returncode == 1 and "not written by robovlms-mobile" in kept.stderr
    assert (user / sources[0].name).read_bytes() == b"the user's own file"
    onto = cli("data", "convert", sources[0], "--out", sources[0].parent, "--overwrite", "--no-progress")
    assert onto.returncode == 1 and "one of the sources" in onto.stderr and (tmp_path / "a" / sources[0].name).exists()


def test_generate_episodes_keeps_the_users_files(tmp_path):
    d = tmp_path / "gen"
    (first,) = generate_episodes(tmp_path / "probe", 1, seed=0, frame_size=(16, 16), length=4)
    d.mkdir()
    (d / first.name).write_bytes(b"mine")
    refused(cli("generate-episodes", d, "-n", "1", "--frame-size", "16x16", "--length", "4"), first.name)
    assert (d / first.name).read_bytes() == b"mine"
    assert cli("generate-episodes", tmp_path / "probe", "-n", "1", "--frame-size", "16x16", "--length", "4").returncode == 0


@pytest.mark.slow
def test_make_tiny_model_keeps_the_users_files(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"mine": 1}')
    refused(cli("make-tiny-model", model), "config.json", "not written by robovlms-mobile")
    assert (model / "config.json").read_text() == '{"mine": 1}' and sorted(p.name for p in model.iterdir()) == ["config.json"]
    fresh = tmp_path / "model2"
    assert cli("make-tiny-model", fresh).returncode == 0
    assert cli("make-tiny-model", fresh, "--seed", "1").returncode == 0  # its own files: replaced


def test_eval_and_rehearse_outputs_refused_before_any_work(tmp_path):
    """eval's report.json over a user's file, rehearse --json onto its config: refused before a checkpoint is read."""
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"not read")
    out = tmp_path / "ev"
    out.mkdir()
    (out / "report.json").write_text("mine")
    refused(cli("eval", "closed-loop", ckpt, "--out", out), "report.json", "not written by robovlms-mobile")
    assert (out / "report.json").read_text() == "mine"
    config = tmp_path / "cfg.json"
    config.write_text("{}")
    refused(cli("rehearse", config, "--json", config), "--json", "input")
    assert config.read_text() == "{}"


# --- caches trust only their own names ------------------------------------------------------------------------------

def _episode(tmp_path: Path):
    (path,) = generate_episodes(tmp_path / "src", 1, seed=1, frame_size=(16, 16), length=4)
    (check,) = check_files([path], min_length=2, max_speed=9)
    return path, check.episode


def test_manifest_naming_paths_outside_deletes_nothing(tmp_path):
    path, ep = _episode(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    canary, inside = tmp_path / "canary.txt", cache / "mine.npy"
    canary.write_text("keep")
    inside.write_text("keep")  # in the folder, but not a name of the cache's form
    key = f"{path.resolve()}@16px"
    for old in (str(canary), "../canary.txt", "mine.npy", "sub/../../canary.txt"):
        (cache / "manifest.json").write_text(json.dumps({key: {"entry": old}}))
        FrameCache(cache, 16).build([ep], progress=False)
        assert canary.read_text() == "keep" and inside.read_text() == "keep"
        for entry in cache.glob("*-*.npy"):
            entry.unlink()  # rebuild next time round


@pytest.mark.parametrize("manifest", ["[1, 2]", '"text"', '{"k": "not an object"}', '{"k": {"entry": 5}}', "{not json"])
def test_malformed_manifest_is_rebuilt_with_a_notice(tmp_path, caplog, manifest):
    _, ep = _episode(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text(manifest)
    with caplog.at_level(logging.WARNING, logger="robovlms_mobile.data"):
        assert FrameCache(cache, 16).build([ep], progress=False) == 1
    assert "manifest.json" in caplog.text and "rebuilding" in caplog.text
    doc = json.loads((cache / "manifest.json").read_text())
    assert isinstance(doc, dict) and len(doc) == 1 and all(isinstance(v["entry"], str) for v in doc.values())


def test_users_temp_files_and_links_in_the_cache_folder_survive(tmp_path):
    path, ep = _episode(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    outside = tmp_path / "big.npy"
    np.save(outside, np.zeros((4, 16, 16, 3), np.uint8))
    users = [cache / ".notes.999999999.tmp", cache / ".draft.999999998.link", cache / ".robovlms-cache-999999997-notes.tmp"]
    for f in users:
        f.write_text("user's")
    fc = FrameCache(cache, 16)
    entry = fc.entry_path(path)
    entry.symlink_to(outside)  # a link at the entry's own name: never read, replaced by a real entry
    assert fc.build([ep], progress=False) == 1
    assert all(f.read_text() == "user's" for f in users)
    assert not entry.is_symlink() and np.load(outside).sum() == 0
    assert fc.frames(ep, 0, 4).shape == (4, 16, 16, 3)


def test_build_cached_never_trusts_what_it_finds_under_a_key(tmp_path, capsys):
    from robovlms_mobile.model.pretrain import build_cached

    root = tmp_path / "cache"
    users = tmp_path / "users"
    users.mkdir()
    (users / "done.json").write_text("user's")
    root.mkdir()
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "done.json").write_text("built")

    link = root / "thing-1"
    link.symlink_to(users, target_is_directory=True)  # a key that is a link to someone's folder
    assert (build_cached(link, build, "done.json") / "done.json").read_text() == "built"
    assert (users / "done.json").read_text() == "user's" and not link.is_symlink()
    assert "moved aside" in capsys.readouterr().err
    unstamped = root / "thing-2"
    unstamped.mkdir()
    (unstamped / "done.json").write_text("user's")  # `done` present, but not built by build_cached
    assert (build_cached(unstamped, build, "done.json") / "done.json").read_text() == "built"
    assert len(calls) == 2 and build_cached(unstamped, build, "done.json") and len(calls) == 2  # now a hit
    assert [p.name for p in root.iterdir() if ".untrusted-" in p.name and (p / "done.json").read_text() == "user's"]


# --- output folders --------------------------------------------------------------------------------------------------

def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, capsys):
    folder = tmp_path / "run"
    with FolderLock(folder):
        holder = subprocess.run([sys.executable, "-c", "import sys; from robovlms_mobile.outputs import FolderLock; "
                                 "FolderLock(sys.argv[1]).acquire()", str(folder)], capture_output=True, text=True,
                                timeout=TIMEOUT)
        assert holder.returncode != 0 and f"in use by process {os.getpid()}" in holder.stderr
    assert not (folder / ".robovlms-mobile.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / ".robovlms-mobile.lock").write_text(dead.stdout)
    with FolderLock(folder):
        assert "taking over the lock of process" in capsys.readouterr().err


def test_output_root_is_expanded_and_system_folders_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output_root("~/runs") == tmp_path / "runs"
    for bad in ("/", "/etc", "/usr/local/runs", "/proc/self", "~", "/bin/../etc", ""):
        with pytest.raises(OutputError, match="output_root"):
            check_output_root(bad)
    assert check_output_root(tmp_path / "runs") == tmp_path / "runs"


def test_train_refuses_a_system_output_root_before_building_anything(tiny_config):
    from robovlms_mobile.train.launcher import train

    for bad in ("/etc", "/", "/usr/share"):
        with pytest.raises(OutputError, match="output_root"):
            train({**tiny_config, "output_root": bad}, max_steps=1, progress=False)


@pytest.mark.slow
def test_train_output_root_etc_is_one_line(tmp_path):
    cfg = tmp_path / "cfg.json"
    repo = Path(__file__).resolve().parents[2]
    base = json.loads((repo / "configs" / "tiny_cpu.json").read_text())
    base["output_root"] = "/etc"
    cfg.write_text(json.dumps(base))
    out = cli("train", cfg, "--max-steps", "1", cwd=repo)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert any("/etc" in line and "error:" in line for line in out.stderr.splitlines()), out.stderr[-2000:]


def test_claim_and_written_record_only_unchanged_files(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    with pytest.raises(OutputError):
        claim(f)
    written(f)
    assert claim(f) == f
    f.write_text("changed")
    with pytest.raises(OutputError):
        claim(f)
    with pytest.raises(OutputError, match="is a folder"):
        claim(tmp_path)


HOLD = "import sys, time; from robovlms_mobile.outputs import FolderLock; FolderLock(sys.argv[1]).acquire(); " \
       "print('holding', flush=True); time.sleep(120)"


def test_previous_run_refused_and_last_ckpt_replaced_in_place(tmp_path, tiny_config):
    """The mechanics without training: a folder with a run's checkpoints is refused (not a user's .ckpt-less files),
    `fresh` deletes only the run's own checkpoint names, and every ModelCheckpoint replaces last.ckpt in place."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from robovlms_mobile.train.launcher import build_trainer, check_previous_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.ckpt.txt").write_text("mine")
    check_previous_run(out, None, fresh=False)  # nothing of a run: fine
    (out / "last.ckpt").write_bytes(b"x")
    (out / "epoch0-step4.ckpt").write_bytes(b"x")
    with pytest.raises(OutputError, match="already holds a run .*--resume last"):
        check_previous_run(out, None, fresh=False)
    check_previous_run(out, str(out / "last.ckpt"), fresh=False)  # continued explicitly
    check_previous_run(out, None, fresh=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.ckpt.txt"]
    trainer = build_trainer({**tiny_config, "checkpoint_every_n_steps": 2}, out, progress=False)
    checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    assert len(checkpoints) == 2 and not any(cb._enable_version_counter for cb in checkpoints)


@pytest.mark.slow
def test_second_train_into_one_folder_is_refused_and_resume_reports_its_own_checkpoint(tiny_config, tmp_path):
    """Run 1 writes last.ckpt; run 2 (no --resume) is refused before training; --resume last continues and
    replaces last.ckpt in place (no last-v1.ckpt): the reported checkpoint holds the step it reports."""
    import torch

    from robovlms_mobile.train.launcher import train

    tiny_config["trainer"]["max_epochs"] = 3  # room to continue after the first run's one step
    out = tmp_path / "run"
    first = train(tiny_config, output_dir=out, max_steps=1, progress=False)
    assert Path(first["last_checkpoint"]) == out / "last.ckpt"
    with pytest.raises(OutputError, match="already holds a run"):
        train(tiny_config, output_dir=out, max_steps=2, progress=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:  # a run in progress in another process: refused, and nothing of the folder is touched
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(OutputError, match=f"in use by process {holder.pid}"):
            train(tiny_config, output_dir=out, resume="last", max_steps=2, progress=False)
    finally:
        holder.kill()
        holder.wait(timeout=TIMEOUT)
    second = train(tiny_config, output_dir=out, resume="last", max_steps=2, progress=False)
    assert Path(second["last_checkpoint"]) == out / "last.ckpt" and not list(out.glob("last-v*.ckpt"))
    saved = torch.load(second["last_checkpoint"], map_location="cpu", weights_only=True)
    assert saved["global_step"] == second["global_step"] == 2
    assert not (out / ".robovlms-mobile.lock").exists()


# --- instruction variants and duplicates -----------------------------------------------------------------------------

def _variant(src: Path, dst: Path, instruction: str) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        if "language_instruction" in f:
            del f["language_instruction"]
        f.create_dataset("language_instruction", data=np.array([instruction.encode()], dtype="S256"))
    return dst


def test_instruction_variants_are_kept_and_split_together(tmp_path):
    d = tmp_path / "eps"
    paths = generate_episodes(d, 8, seed=5, frame_size=(16, 16), length=18)
    for i, src in enumerate(paths[:4]):
        _variant(src, d / f"zz_variant{i}_{src.name}", f"go around the box, take {i}")
    out = cli("data", "validate", d, "--no-progress", "--no-frames")
    assert out.returncode == 0 and "duplicate" not in out.stdout and "12 file(s): 12 ok" in out.stdout
    for seed in range(2):
        split = tmp_path / f"split{seed}.json"
        assert cli("data", "split", d, "--out", split, "--val", "0.3", "--seed", seed, "--no-progress").returncode == 0
        doc = json.loads(split.read_text())
        where = {e["file"]: s for s, entries in doc["splits"].items() for e in entries}
        assert len(where) == 12
        for i, src in enumerate(paths[:4]):
            assert where[src.name] == where[f"zz_variant{i}_{src.name}"]
    from robovlms_mobile.data.dataset import select_episodes

    for seed in range(6):
        val = {e.path.name for e in select_episodes(d, split="val", min_length=2, max_speed=9, val_ratio=0.3,
                                                    split_seed=seed)[0]}
        for i, src in enumerate(paths[:4]):
            assert (src.name in val) == (f"zz_variant{i}_{src.name}" in val)


def test_identical_copy_is_a_duplicate_notice_counted_once(tmp_path, caplog):
    d = tmp_path / "eps"
    paths = generate_episodes(d, 2, seed=6, frame_size=(16, 16), length=18)
    shutil.copy(paths[0], d / f"zz_copy_{paths[0].name}")
    out = cli("data", "validate", d, "--no-progress", "--no-frames")
    rows = [line for line in out.stdout.splitlines() if "duplicate of" in line]
    assert out.returncode == 0 and len(rows) == 1 and "warning" in rows[0]
    assert "3 file(s): 2 ok, 1 with warnings only, 0 with errors" in out.stdout
    split = cli("data", "split", d, "--out", tmp_path / "s.json", "--no-progress")
    assert split.returncode == 0 and "2 episodes" in split.stdout and "1 duplicate(s) counted once" in split.stdout
    from robovlms_mobile.data.dataset import select_episodes

    with caplog.at_level(logging.WARNING, logger="robovlms_mobile.data"):
        chosen, invalid = select_episodes(d, split="all", min_length=2, max_speed=9)
    assert len(chosen) == 2 and not invalid and caplog.text.count("duplicate episode file(s)") == 1
