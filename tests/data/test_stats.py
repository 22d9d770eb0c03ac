"""`data stats`: scenario counts, lengths, action classes and per-axis values, as PNG plots and Markdown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robovlms_mobile.data.stats import ACTION_CLASSES, action_class, collect
from robovlms_mobile.data.format import V4_SCENARIOS as DEFAULT_SCENARIOS
from robovlms_mobile.data.synthetic import generate_episodes

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


@pytest.mark.parametrize("action, expected", [
    ((1.15, 0, 0), "forward"), ((-1.15, 0, 0), "backward"), ((0, 1.15, 0), "left"), ((0, -1.15, 0), "right"),
    ((1.15, 1.15, 0), "forward_left"), ((1.15, -1.15, 0), "forward_right"), ((-1.15, 1.15, 0), "backward_left"),
    ((-1.15, -1.15, 0), "backward_right"), ((0, 0, 0.2), "rotation"), ((0, 0, 0), "stop"), ((1.15, 0, 0.2), "forward"),
])
def test_action_class(action, expected):
    assert action_class(np.array(action, np.float32)) == expected
    assert expected in ACTION_CLASSES


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 V4 episodes of 18 frames (the first 12 scenarios), 4 V5 of 14 frames, and one unreadable file."""
    d = tmp_path_factory.mktemp("stats")
    generate_episodes(d / "v4", 12, frame_size=(24, 32))
    generate_episodes(d / "v5", 4, seed=1, frame_size=(24, 32), length=14, generation="v5")
    (d / "v4" / "broken.h5").write_text("not hdf5")
    return d


def test_counts_match_the_files(folder):
    stats = collect(sorted(folder.rglob("*.h5")), progress=False)
    assert stats["episodes"] == 16 and stats["generations"] == {"v4": 12, "v5": 4}
    assert [Path(p).name for p, _ in stats["skipped"]] == ["broken.h5"]
    scen = list(DEFAULT_SCENARIOS[:12]) + list(DEFAULT_SCENARIOS[:4])
    assert stats["scenario"]["side"] == {"left": 8, "right": 8}
    assert stats["scenario"]["boxes"] == {f"{n}box": sum(s.n_boxes == n for s in scen) for n in (1, 2)}
    assert stats["scenario"]["distance"] == {d: sum(s.distance == d for s in scen) for d in ("close", "medium", "far")}
    assert stats["lengths"] == {14: 4, 18: 12}
    assert sum(stats["action_classes"].values()) == 12 * 18 + 4 * 14
    assert stats["action_classes"]["forward_left"] > 0 and stats["action_classes"]["forward_right"] > 0
    assert stats["action_classes"]["backward"] == 0
    assert stats["events"]["episode_start"] == 12  # V4 only
    assert len(stats["axis_values"]["linear_y"]) == 12 * 18 + 4 * 14
    assert set(np.unique(stats["axis_values"]["angular_z"])) <= {-0.2, 0.0, np.float32(0.2)} | {np.float32(-0.2)}


def test_cli_writes_plots_and_markdown(folder, tmp_path):
    out = subprocess.run([CLI, "data", "stats", str(folder), "--out", str(tmp_path / "stats"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = (tmp_path / "stats" / "summary.md").read_text()
    assert summary in out.stdout and "16 episode(s): 12 V4, 4 V5" in summary
    assert "| left | 8 | 50.0% |" in summary and "| 14 | 4 | 25.0% |" in summary and "broken.h5" in summary
    for name in ("scenarios", "lengths", "action_classes", "axes"):
        png = tmp_path / "stats" / f"{name}.png"
        assert f"![{name}]({name}.png)" in summary
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 100
