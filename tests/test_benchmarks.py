"""The real-size benchmark's interleaved fp32 / bf16 / int8 mode, on the tiny model (its output format, not its times)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_realsize_inference_only_all_on_the_tiny_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "ignore", "HOME": str(tmp_path)}  # HOME: no cache shared with other runs
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "realsize.py"), "--tiny", "--inference-only",
                           "all", "--queries", "1", "--window-queries", "1"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert "models resident: fp32, bf16, int8 (" in proc.stdout and "round-robin fp32, bf16, int8" in proc.stdout
    last = dict(kv.split("=") for kv in lines[-1].split())
    assert list(last) == ["stream_over_window", "bf16_over_fp32", "int8_over_fp32", "peak_rss_gb"]
    assert all(float(v) > 0 for v in last.values())
    diffs = [float(x) for x in re.findall(r"max abs chunk difference vs fp32 ([0-9.]+) m/s", proc.stdout)]
    assert len(diffs) == 2 and all(d < 0.01 for d in diffs)  # bf16 and int8 against fp32 on the same frames


def test_async_exec_benchmark_smoke_on_the_tiny_model(tmp_path):
    """benchmarks/async_exec.py --tiny: every (execution, merge, delay) row and the summary line's keys."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "ignore", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "async_exec.py"), "--tiny", "--delays", "0,5"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if " delay " in line and "success_rate=" in line]
    assert len(rows) == 2 * 5  # per checkpoint and mean: sync at delays 0 and 5, three merges async at delay 5
    last = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert list(last) == ["idle_ratio_sync", "idle_ratio_async", "success_async_d5_over_d0", "jerk_async_over_sync"]
    assert float(last["idle_ratio_sync"]) > 0  # sync waits 5 steps for every answer
    assert float(last["idle_ratio_async"]) <= float(last["idle_ratio_sync"])
