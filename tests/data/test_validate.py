"""`robovlms-mobile data validate`: a table naming every bad file, a JSON report, exit 0 only without errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robovlms_mobile.data.synthetic import generate_episodes

from bad_episodes import write_bad_files

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The installed entry point in a subprocess."""
    return subprocess.run([CLI, "data", "validate", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def run_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same CLI in this process (cheaper for variations)."""
    from robovlms_mobile.cli import main

    capsys.readouterr()
    rc = main(["data", "validate", *args, "--no-progress"])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Generated good episodes, the malformed-file generator's output and two warnings-only files, in one folder."""
    d = tmp_path_factory.mktemp("mixed")
    good = generate_episodes(d, 3, frame_size=(36, 64))
    return d, write_bad_files(d, warnings=True), [p.name for p in good]


def test_table_and_report_name_every_problem(mixed, tmp_path):
    d, expected, good = mixed
    out = run(str(d), "--json", str(tmp_path / "report.json"), "--no-progress")
    assert out.returncode == 1, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split() == ["FILE", "GEN", "SEVERITY", "PROBLEM"]
    for name, defect in expected.items():
        assert any(name in r and defect.severity in r and defect.text in r for r in rows), (name, defect)
    assert not any(g in r for g in good for r in rows[1:-2])  # good files have no row
    n_err = sum(d.severity == "error" for d in expected.values())
    assert f"{len(expected) + 4} file(s): 4 ok, 2 with warnings only, {n_err} with errors" in out.stdout  # + original

    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["summary"] == {"files": len(expected) + 4, "ok": 4, "warnings_only": 2, "errors": n_err}
    assert doc["settings"] == {"min_length": 2, "full_length": 18, "max_speed": 1.15, "pattern": "*.h5", "frames_checked": True}
    by_file = {Path(f["file"]).name: f for f in doc["files"]}
    for name, defect in expected.items():
        entry = by_file[name]
        assert entry["status"] == defect.severity
        assert any(p["code"] == defect.code and defect.text in p["message"] for p in entry["problems"]), entry
    for name in good:
        assert by_file[name]["status"] == "ok" and by_file[name]["generation"] == "v4" and by_file[name]["num_frames"] == 18
        assert len(by_file[name]["content_hash"]) == 64


def test_warnings_alone_exit_zero(tmp_path, capsys):
    """Black / constant frames are reported but allowed; --no-frames skips decoding them."""
    d = tmp_path / "d"
    d.mkdir()
    expected = write_bad_files(d, warnings=True)
    for name, defect in expected.items():
        if defect.severity == "error":
            (d / name).unlink()
    (d / "episode_20250107_090000_1box_vert_right_core_far.h5").unlink()
    out = run_here(capsys, str(d))
    assert out.returncode == 0, out.stdout
    assert "are black" in out.stdout and "one flat colour" in out.stdout and "2 with warnings only" in out.stdout
    quick = run_here(capsys, str(d), "--no-frames")
    assert quick.returncode == 0 and "black" not in quick.stdout


def test_length_limit_from_flags_or_config(tmp_path, base_config, capsys):
    """Short episodes warn (they train masked); --require-full-chunks or the config key refuses them.

    window + chunk come from --window/--chunk, else from --config (its window_size and fwd_pred_next_n).
    """
    eps = str(tmp_path / "eps")
    generate_episodes(eps, 2, frame_size=(36, 64), length=12)
    out = run_here(capsys, eps)
    assert out.returncode == 0 and "12 frames < window + chunk = 18: trains with the missing future steps masked" in out.stdout
    out = run_here(capsys, eps, "--require-full-chunks")
    assert out.returncode == 1 and "need at least window + chunk = 18 (require_full_chunks)" in out.stdout
    assert run_here(capsys, eps, "--window", "4", "--chunk", "8").stdout.endswith("2 ok, 0 with warnings only, 0 with errors\n")
    cfg = dict(base_config, window_size=5, fwd_pred_next_n=8)
    cfg["train_dataset"] = dict(cfg["train_dataset"], require_full_chunks=True)
    cfg.pop("parent", None)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    out = run_here(capsys, eps, "--config", str(tmp_path / "cfg.json"))
    assert out.returncode == 1 and "need at least window + chunk = 13" in out.stdout
    assert run_here(capsys, eps, "--config", str(tmp_path / "cfg.json"), "--window", "4").returncode == 0


def test_duplicates_across_folders_and_missing_input(tmp_path, capsys):
    """Duplicates are found across every folder given (a warning: counted once, exit 0); a missing folder is one error line (exit 2)."""
    a, b = tmp_path / "a", tmp_path / "b"
    (src,) = generate_episodes(a, 1, frame_size=(36, 64))
    b.mkdir()
    (b / "copied.h5").write_bytes(src.read_bytes())
    out = run_here(capsys, str(a), str(b))
    assert out.returncode == 0 and "copied.h5" in out.stdout and f"duplicate of {src}" in out.stdout
    assert "warning" in next(line for line in out.stdout.splitlines() if "copied.h5" in line)
    missing = run(str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.strip().startswith("robovlms-mobile data validate: error:")
    assert "nope" in missing.stderr
