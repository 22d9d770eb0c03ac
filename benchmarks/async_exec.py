"""Asynchronous vs synchronous chunk execution under simulated inference delay, on the demo's closed loop.

Each trained checkpoint (default: the three `make demo` seeds, runs/demo/seed-<n>/last.ckpt; when
none exists, one is trained with the demo's recipe at seed 0) drives the demo's 24 held-out
episodes (12 scenarios x 2 worlds, 72x128 frames) once per (execution, merge, delay):
sync = wait for every answer (receding horizon: one query per step, the robot stands while it
waits), async = keep executing the queued chunk while the next query runs (one query in flight,
its answer D steps after its frame, first D actions dropped, merged by latest / ensemble /
crossfade). Delay is simulated in steps of 0.4 s (eval/execution.py), so every figure is
deterministic; rows are means over the checkpoints. One reference row, `sync reuse delay 0`,
executes as many steps of each chunk as the largest delay from a fresh frame with no delay: what
the chunk is worth open loop, apart from its age. A head trained with `act_head.committed_steps`
is told the committed actions (`--no-committed`: not); `--history-frames W` caps the head's window.

Last line: `idle_ratio_sync= idle_ratio_async= success_async_d5_over_d0= jerk_async_over_sync=`
- idle_ratio_*: idle steps / all steps at the largest delay (sync, and async with --merge latest), the
  wait for the first answer included (rows also give gap_steps: idle steps after the first action);
- success_async_d5_over_d0: async success at the largest delay over sync success at delay 0;
- jerk_async_over_sync: mean |Δv| per step, async over sync, at the largest delay.
`--tiny`: a 2-step tiny checkpoint, one scenario, a few steps (the output format, for tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
warnings.filterwarnings("ignore")
DEMO_CHECKPOINTS = [REPO / "runs" / "demo" / f"seed-{s}" / "last.ckpt" for s in (0, 1, 2)]
KEYS = ("success_rate", "spl", "collision_rate", "idle_ratio", "gap_steps", "jerk")


def tiny_checkpoint(tmp: Path) -> Path:
    """A tiny plugin checkpoint after 2 training steps (format only: it does not drive well)."""
    from conftest import make_tiny_config

    from robovlms_mobile.config import load_config
    from robovlms_mobile.data.synthetic import generate_episodes
    from robovlms_mobile.train.launcher import train
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    model_dir = build_tiny_kosmos2(tmp / "model")
    generate_episodes(tmp / "episodes", 4, frame_size=(72, 128))
    cfg = make_tiny_config(load_config(REPO / "configs" / "tiny_cpu.json"), model_dir, tmp / "episodes", tmp)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = train(cfg, output_dir=tmp / "run", max_steps=2, progress=False)
    return Path(result["last_checkpoint"])


def demo_checkpoints(max_steps: int | None = None) -> list[Path]:
    """The demo's seed checkpoints that exist; trains seed 0 with the demo's recipe when there is none."""
    found = [p for p in DEMO_CHECKPOINTS if p.is_file()]
    if found:
        return found
    from robovlms_mobile.config import load_config
    from robovlms_mobile.recipes.demo import prepare
    from robovlms_mobile.train.launcher import train

    print(f"no trained checkpoint under runs/demo: training one (the demo's recipe, seed 0, max_steps {max_steps})",
          flush=True)
    config = load_config(REPO / "configs" / "tiny_cpu.json")
    prepare(config, {})
    out = DEMO_CHECKPOINTS[0].parent
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = train({**config, "seed": 0}, output_dir=out, max_steps=max_steps, progress=False)
    print(f"trained {result['global_step']} steps: {out / 'last.ckpt'}", flush=True)
    return [out / "last.ckpt"]


def drive(policy, execution, delay: int, scenarios, episodes: int, max_steps: int, frame_size, committed: bool = True) -> dict:
    """Closed-loop figures of `policy` under one execution and delay (`committed`: tell a head that takes them)."""
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.eval.execution import ExecutedPolicy

    executed = ExecutedPolicy(policy.predict_chunk, policy.reset, policy.meta.chunk, execution, delay_steps=delay,
                              committed_steps=policy.committed_steps if committed else 0)
    report = evaluate_closed_loop(executed, scenarios, episodes, frame_size=frame_size, max_steps=max_steps)
    return {k: report["overall"][k] for k in KEYS} | {"queries": executed.executor.queries}


def main() -> None:
    """Run every (execution, merge, delay) on every checkpoint; print the rows and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", type=Path, help="trained checkpoints (default: the demo's seeds)")
    parser.add_argument("--delays", default="0,2,5", help="delays in steps, comma-separated; the last is the goal's")
    parser.add_argument("--merges", default="latest,ensemble,crossfade")
    parser.add_argument("--episodes", type=int, default=2, help="worlds per scenario (default: the demo's 2)")
    parser.add_argument("--max-steps", type=int, help="when it trains its own checkpoint: stop after this many steps")
    parser.add_argument("--history-frames", type=int,
                        help="frames the head's window keeps at inference, 1..window (default: the window); fewer is "
                             "in distribution (training judges every window position)")
    parser.add_argument("--no-committed", action="store_true",
                        help="never tell the head the committed actions (for a head trained with act_head.committed_steps)")
    parser.add_argument("--tiny", action="store_true", help="format check: tiny 2-step checkpoint, 1 scenario, 8 steps")
    args = parser.parse_args()

    import torch

    from robovlms_mobile.recipes.demo import DEMO_FRAME_SIZE as FRAME_SIZE
    from robovlms_mobile.eval.closed_loop import MAX_STEPS
    from robovlms_mobile.runtime.in_process import InProcessPolicy
    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.executor import ExecutionSpec
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS

    torch.set_num_threads(1)
    delays = [int(d) for d in args.delays.split(",")]
    merges = args.merges.split(",")
    scenarios, episodes, max_steps = DEFAULT_SCENARIOS, args.episodes, MAX_STEPS
    tmp = tempfile.TemporaryDirectory()
    if args.tiny:
        checkpoints, scenarios, episodes, max_steps = [tiny_checkpoint(Path(tmp.name))], DEFAULT_SCENARIOS[:1], 1, 8
    else:
        os.chdir(REPO)  # the demo config's paths are relative to the repository
        checkpoints = args.checkpoints or demo_checkpoints(args.max_steps)
    # async at delay 0 (a query every step, latest wins) is the receding horizon, i.e. sync at delay 0: not rerun
    # sync "reuse": the largest delay's count of steps of each chunk from a fresh frame, no delay: what the chunk is
    # worth open loop, apart from the delay (async executes steps d..9 of a chunk from a frame d steps old)
    runs = ([("sync", "receding", d) for d in delays] + [("sync", "reuse", 0)]
            + [("async", m, d) for m in merges for d in delays if d > 0])
    rows: dict[tuple[str, str, int], list[dict]] = {run: [] for run in runs}
    for ckpt in checkpoints:
        policy = InProcessPolicy.from_checkpoint(ckpt, history_frames=args.history_frames)
        if policy.committed_steps:
            print(f"{ckpt.parent.name}: head takes {policy.committed_steps} committed actions"
                  f"{' (not told: --no-committed)' if args.no_committed else ''}", flush=True)
        for execution, merge, delay in runs:
            spec = (ExecutionSpec("async", merge) if execution == "async" else
                    ExecutionSpec("sync", strategy=StrategySpec(merge, reuse_steps=max(delays[-1], 1))))
            row = drive(policy, spec, delay, scenarios, episodes, max_steps, FRAME_SIZE, not args.no_committed)
            rows[(execution, merge, delay)].append(row)
            print(f"{ckpt.parent.name}: {execution:<5} {merge:<9} delay {delay}: "
                  + " ".join(f"{k}={row[k]:.3f}" for k in KEYS) + f" queries={row['queries']}", flush=True)
    print(f"\nmeans over {len(checkpoints)} checkpoint(s), {len(scenarios) * episodes} episodes each:")
    mean = {run: {k: statistics.fmean(r[k] for r in rs) for k in KEYS} for run, rs in rows.items()}
    for (execution, merge, delay), m in mean.items():
        print(f"  {execution:<5} {merge:<9} delay {delay}: " + " ".join(f"{k}={m[k]:.3f}" for k in KEYS))
    d0, dn = delays[0], delays[-1]
    sync0, syncn, asyncn = mean[("sync", "receding", d0)], mean[("sync", "receding", dn)], mean[("async", merges[0], dn)]
    ratio = asyncn["success_rate"] / sync0["success_rate"] if sync0["success_rate"] else float("nan")
    jerk = asyncn["jerk"] / syncn["jerk"] if syncn["jerk"] else float("nan")
    print(f"goal (async {merges[0]} at delay {dn} within 0.05 of sync at delay {d0}): "
          f"{asyncn['success_rate']:.3f} vs {sync0['success_rate']:.3f} -> "
          f"{'met' if asyncn['success_rate'] >= sync0['success_rate'] - 0.05 else 'NOT met'}")
    print(f"idle_ratio_sync={syncn['idle_ratio']:.3f} idle_ratio_async={asyncn['idle_ratio']:.3f} "
          f"success_async_d{dn}_over_d{d0}={ratio:.3f} jerk_async_over_sync={jerk:.3f}")


if __name__ == "__main__":
    main()
