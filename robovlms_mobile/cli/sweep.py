"""`robovlms-mobile sweep BASE_CONFIG --set key=v1,v2 ...`: the parser; the work is `recipes/sweep.py`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robovlms_mobile.cli.options import add_progress_option, command, frame_size, positive_int, seed_list
from robovlms_mobile.cli.sim import scenario_arg
from robovlms_mobile.task import FRAME_SIZE


def _cmd_sweep(args: argparse.Namespace) -> int:
    from robovlms_mobile.recipes.sweep import parse_set, run_sweep

    sets = [parse_set(s) for s in args.set]
    rows = run_sweep(args.base_config, sets, args.output_dir, max_steps=args.max_steps, max_epochs=args.max_epochs,
                     episodes=args.episodes, scenarios=args.scenarios, frame_size=args.frame_size, seeds=args.seeds,
                     progress=not args.no_progress)
    print((Path(args.output_dir) / "results.md").read_text())
    print(json.dumps({"runs": len(rows), "results": str(Path(args.output_dir) / "results.csv")}))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `sweep`."""
    p = command(subparsers, "sweep", _cmd_sweep, help="train and evaluate a grid of config values",
                            description="Train every combination of the --set values through the launcher, evaluate each "
                                        "offline (val split) and in closed loop, write results.csv / results.md and plots.")
    p.add_argument("base_config", help="JSON experiment config the grid starts from")
    p.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2",
                   help="dotted config key and comma-separated values, e.g. train_setup.lora_r=8,16,32 (repeatable)")
    p.add_argument("--output-dir", default="runs/sweep", help="one folder per run plus the tables (default: %(default)s)")
    p.add_argument("--max-steps", type=positive_int, help="override trainer.max_steps for every run")
    p.add_argument("--max-epochs", type=positive_int, help="override trainer.max_epochs for every run")
    p.add_argument("--seeds", type=seed_list, help="train each combination once per seed (side by side) and tabulate "
                   "the closed-loop mean and std over them, with the instruction blanked and untrained (no offline columns)")
    p.add_argument("--episodes", type=positive_int, default=2, help="closed-loop worlds per scenario (default: %(default)s)")
    p.add_argument("--scenarios", type=scenario_arg, nargs="+", help="closed-loop scenarios (default: the 12 standard ones)")
    p.add_argument("--frame-size", type=frame_size, default=FRAME_SIZE, help="closed-loop camera HxW (default: %(default)s)")
    add_progress_option(p)
