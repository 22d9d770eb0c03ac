"""Every benchmark in benchmarks/ runs end to end at tiny sizes (`--smoke`), so one that breaks fails `make test`.

Only the output format is asserted (the last line's keys, positive figures), never a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drive_fixtures import tiny_checkpoint  # noqa: F401  (session fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"
# benchmark -> the keys of its last line, in order
LAST_LINE = {
    "async_exec.py": ["idle_ratio_sync", "idle_ratio_async", "success_async_d5_over_d0", "jerk_async_over_sync"],
    "checkpoint_size.py": ["ckpt_ratio_tiny", "ckpt_ratio_real"],
    "inference_tick.py": ["tick_ratio_reuse5"],
    "loader.py": ["uncached_over_naive", "cached_over_naive", "cached_normalised_on_cpu_over_naive", "jpeg_over_raw"],
    "realsize.py": ["stream_over_window", "bf16_over_fp32", "int8_over_fp32", "peak_rss_gb"],
    "serve.py": ["overhead_p50_ms", "overhead_p99_ms", "overhead_p50_ms_8clients", "overhead_p99_ms_8clients"],
    "startup.py": ["startup_ratio", "hook_us", "activation_ratio"],
    "train_step.py": ["step_ratio"],
}
NOT_POSITIVE = {"overhead_p50_ms", "overhead_p99_ms", "overhead_p50_ms_8clients", "overhead_p99_ms_8clients"}  # differences


def run_benchmark(name: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "ignore", "HOME": str(tmp_path)}  # HOME: no cache shared with other runs
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)  # cwd: as `make bench` runs them (configs name their parent from it)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def last_line(name: str, stdout: str) -> dict[str, float]:
    """The benchmark's `key=value ...` last line, checked against LAST_LINE."""
    last = dict(kv.split("=") for kv in stdout.strip().splitlines()[-1].split())
    assert list(last) == LAST_LINE[name], stdout[-2000:]
    values = {k: float(v) for k, v in last.items()}
    assert all(v > 0 for k, v in values.items() if k not in NOT_POSITIVE), values
    return values


def test_every_benchmark_has_a_smoke_run():
    """A new benchmark must be added here (and to SMOKE) or this fails (`_*.py`: helpers the benchmarks import)."""
    assert sorted(p.name for p in BENCHMARKS.glob("[!_]*.py")) == sorted(LAST_LINE) == sorted(SMOKE)


# benchmark -> its tiny-size flags (checkpoint_size.py is tiny as it is: one tiny model, the real one on the meta device)
SMOKE = {"async_exec.py": ["--tiny", "--delays", "0,5"], "startup.py": ["--smoke"], "loader.py": ["--smoke"], "train_step.py": ["--smoke"], "checkpoint_size.py": [],
         "inference_tick.py": ["--smoke"], "serve.py": ["--smoke"],
         "realsize.py": ["--tiny", "--inference-only", "all", "--queries", "1", "--window-queries", "1"]}


@pytest.mark.parametrize("name", ["startup.py", "loader.py", "train_step.py", "checkpoint_size.py"])
def test_benchmark_smoke(name, tmp_path):
    last_line(name, run_benchmark(name, *SMOKE[name], tmp_path=tmp_path).stdout)


@pytest.mark.parametrize("name", ["inference_tick.py", "serve.py"])
def test_policy_benchmark_smoke(name, tiny_checkpoint, tiny_model_dir, tmp_path):  # noqa: F811
    proc = run_benchmark(name, *SMOKE[name], "--checkpoint", str(tiny_checkpoint), "--base-model-dir", str(tiny_model_dir),
                         tmp_path=tmp_path)
    last_line(name, proc.stdout)


def test_realsize_inference_only_all_on_the_tiny_model(tmp_path):
    """The real-size benchmark's interleaved fp32 / bf16 / int8 mode, on the tiny model (its output format, not its times)."""
    proc = run_benchmark("realsize.py", *SMOKE["realsize.py"], tmp_path=tmp_path)
    assert "models resident: fp32, bf16, int8 (" in proc.stdout and "round-robin fp32, bf16, int8" in proc.stdout
    last_line("realsize.py", proc.stdout)
    diffs = [float(x) for x in re.findall(r"max abs chunk difference vs fp32 ([0-9.]+) m/s", proc.stdout)]
    assert len(diffs) == 2 and all(d < 0.01 for d in diffs)  # bf16 and int8 against fp32 on the same frames


def test_async_exec_benchmark_smoke_on_the_tiny_model(tmp_path):
    """benchmarks/async_exec.py --tiny: every (execution, merge, delay) row and the summary line's keys."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONWARNINGS": "ignore", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "async_exec.py"), *SMOKE["async_exec.py"]],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if " delay " in line and "success_rate=" in line]
    # per checkpoint and mean: sync at delays 0 and 5, sync reuse at delay 0, three merges async at delay 5
    assert len(rows) == 2 * 6 and sum(" reuse " in r for r in rows) == 2
    last = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert list(last) == LAST_LINE["async_exec.py"]
    assert float(last["idle_ratio_sync"]) > 0  # sync waits 5 steps for every answer
    assert float(last["idle_ratio_async"]) <= float(last["idle_ratio_sync"])
