"""`robovlms-mobile eval offline CKPT DATA` and `robovlms-mobile eval closed-loop CKPT`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robovlms_mobile.cli.errors import UsageError
from robovlms_mobile.cli.options import (add_base_model_option, add_client_options, add_dtype_option,
                                         add_execution_options, add_progress_option, command, command_group, execution_spec,
                                         frame_size,
                                         positive_float, positive_int, nonnegative_int)
from robovlms_mobile.outputs import write_text
from robovlms_mobile.cli.sim import scenario_arg
from robovlms_mobile.task import FRAME_SIZE



def _out_dir(args: argparse.Namespace, kind: str, inputs: list) -> Path:
    """The output folder, checked before any work: not an input, and its report.json new or the tool's own."""
    from robovlms_mobile.outputs import check_folder, claim

    if args.out:
        out = Path(args.out)
    else:
        base = Path(args.checkpoint).parent if getattr(args, "checkpoint", None) else Path("runs")
        out = base / f"eval_{kind}"
    out = check_folder(out, inputs)
    claim(out / "report.json", inputs)
    return out


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The files an eval command reads: the checkpoint and the episode files (a folder: every .h5 under it)."""
    found = [Path(args.checkpoint)] if getattr(args, "checkpoint", None) else []
    for data in (getattr(args, "data", None), getattr(args, "train_data", None)):
        if data:
            data = Path(data)
            found += sorted(data.rglob("*.h5")) if data.is_dir() else [data]
    return found


def _cmd_offline(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    out = _out_dir(args, "offline", inputs)  # before the (heavy) imports and the checkpoint
    from robovlms_mobile.eval.offline import evaluation_windows, offline_report
    from robovlms_mobile.eval.plots import plot_offline
    from robovlms_mobile.runtime.loader import load_for_inference

    module, meta = load_for_inference(args.checkpoint, args.base_model_dir, dtype=args.dtype)
    dataset = evaluation_windows(module, meta, args.data, split=args.split, val_ratio=args.val_ratio,
                                 split_seed=args.split_seed)
    report = offline_report(module, dataset, meta, batch_size=args.batch_size, progress=not args.no_progress)
    report.update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split)
    report["plots"] = [str(p) for p in plot_offline(report, out)]
    write_text(out / "report.json", json.dumps(report, indent=2), inputs)
    keys = [k for k in report if k.startswith(("mae_l", "rmse_", "sign_", "instruction_sensitivity_l", "lateral"))]
    print(json.dumps({"report": str(out / "report.json"), **{k: report[k] for k in keys}}))
    return 0


def _notice(message: str) -> None:
    import sys

    print(f"robovlms-mobile eval closed-loop: notice: {message}", file=sys.stderr)


def _drive_settings(args: argparse.Namespace, drive: dict | None) -> tuple[tuple[int, int], str, int]:
    """Frame size, world distribution and seed: the checkpoint's unless a flag says otherwise (then a notice)."""
    from robovlms_mobile.sim.splits import OOD_SEED, TEST_SEED, split_of
    from robovlms_mobile.task import STEP_S

    drive = drive or {}
    trained_size = tuple(drive["frame_size"]) if drive.get("frame_size") else None
    size = args.frame_size or trained_size or FRAME_SIZE
    if args.frame_size and trained_size and tuple(args.frame_size) != trained_size:
        _notice(f"--frame-size {size[0]}x{size[1]} differs from the {trained_size[0]}x{trained_size[1]} frames the checkpoint was trained on")
    worlds = args.worlds or drive.get("worlds") or "iid"
    if args.worlds and drive.get("worlds") and args.worlds != drive["worlds"]:
        _notice(f"--worlds {args.worlds}: the checkpoint was trained on {drive['worlds']} worlds")
    if drive.get("step_s") not in (None, STEP_S):
        _notice(f"the checkpoint was trained at {drive['step_s']} s per step; this simulator steps {STEP_S} s")
    seed = args.seed if args.seed is not None else (OOD_SEED if worlds == "ood" else TEST_SEED)
    if split_of(seed) == "data":
        _notice(f"--seed {seed} is a data seed: these worlds may be training worlds, not held out")
    return size, worlds, seed


def _cmd_closed_loop(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    out = _out_dir(args, "closed_loop", inputs)  # before the (heavy) imports and the checkpoint
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.eval.plots import plot_closed_loop
    from robovlms_mobile.runtime.in_process import BlankInstruction, InProcessPolicy
    from robovlms_mobile.eval.references import read_training_episodes, reference_policy, training_keys
    from robovlms_mobile.runtime.client import RemotePolicy
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, OOD_SCENARIOS

    blind = args.reference in ("replay", "forward")
    if args.server and args.checkpoint:
        raise UsageError("give a checkpoint or --server URL (one of them)")
    if not blind and (args.checkpoint is None) == (args.server is None):
        raise UsageError("give a checkpoint or --server URL (one of them)")
    if args.server and args.dtype != "fp32":
        raise UsageError("--dtype applies to a checkpoint loaded in this process, not to --server (the server has its own)")
    if args.server and (args.blank_instruction or args.reference in ("instruction_blanked", "untrained")):
        raise UsageError("--blank-instruction and --reference instruction_blanked/untrained need an in-process checkpoint "
                         "(the server refuses an empty instruction)")
    policy, drive = None, None
    if args.delay_from_server and not args.server:
        raise UsageError("--delay-from-server needs --server (it measures each answer's wall time)")
    if args.delay_from_server and args.delay_steps:
        raise UsageError("give --delay-steps or --delay-from-server, not both")
    if args.server:
        policy = RemotePolicy.connect(args.server, args.api_key or None, api=args.api, timeout=args.timeout)
    elif args.checkpoint:
        policy = InProcessPolicy.from_checkpoint(args.checkpoint, args.base_model_dir, chunk_steps=args.chunk_steps,
                                                 dtype=args.dtype)
        drive = policy.meta.drive
    base = policy  # before any execution wrapper: references read its module
    execution = None
    if policy is not None and (args.execution == "async" or args.delay_steps or args.delay_from_server):
        policy, execution = _executed(policy, args)
    if args.blank_instruction:
        policy = BlankInstruction(policy)
    size, worlds, seed = _drive_settings(args, drive)
    train_data = args.train_data or (drive or {}).get("train_data")
    episodes_on_disk = None
    if train_data and Path(train_data).is_dir():
        try:
            episodes_on_disk = read_training_episodes(train_data)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--train-data {train_data}: {exc}") from None
    elif args.train_data:
        raise UsageError(f"--train-data {args.train_data}: not a folder of episode files")
    if args.reference == "replay" and episodes_on_disk is None:
        raise UsageError("--reference replay needs the training episodes: --train-data DIR (the checkpoint names none that exists)")
    if args.reference:
        untrained = (InProcessPolicy.untrained(base.module.configs, args.chunk_steps)
                     if args.reference == "untrained" else None)
        policy = reference_policy(args.reference, trained=policy, untrained=untrained, episodes=episodes_on_disk)
    scenarios = args.scenarios or (OOD_SCENARIOS if worlds == "ood" else DEFAULT_SCENARIOS)
    try:
        report = evaluate_closed_loop(policy, scenarios, args.episodes, seed=seed, worlds=worlds,
                                      frame_size=size, max_steps=args.max_steps, gif_dir=out / "gifs",
                                      gifs=args.gifs, train_keys=training_keys(episodes_on_disk) if episodes_on_disk else None,
                                      progress=not args.no_progress)
    except (ConnectionError, RuntimeError) as exc:
        if not args.server:
            raise
        raise UsageError(str(exc)) from None
    report["policy"] = {"checkpoint": args.checkpoint, "server": args.server, "api": args.api if args.server else None,
                        "reference": args.reference, "blank_instruction": args.blank_instruction,
                        "dtype": None if args.server else args.dtype, "chunk_steps": args.chunk_steps, "train_data": train_data,
                        "execution": execution.describe() if execution else {"execution": "sync", "direct": True},
                        "delay_steps": "from_server" if args.delay_from_server else args.delay_steps,
                        "committed_steps": (getattr(base, "committed_steps", 0)
                                            if args.committed == "auto" and args.execution == "async" else 0)}
    report["plot"] = str(plot_closed_loop(report, out / "closed_loop.png"))
    write_text(out / "report.json", json.dumps(report, indent=2), inputs)
    extra = {"seen_in_training": report["seen_in_training"]} if "seen_in_training" in report else {}
    print(json.dumps({"report": str(out / "report.json"), **{k: v for k, v in report["overall"].items()}, **extra}))
    return 0


def _executed(policy, args: argparse.Namespace):
    """`policy` driven through the chunk executor, its answers delayed; returns (policy, ExecutionSpec)."""
    from robovlms_mobile.eval.execution import ExecutedPolicy
    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.client import PolicyServerError
    from robovlms_mobile.task import STEP_S

    spec = execution_spec(args, StrategySpec("reuse", reuse_steps=args.chunk_steps))
    if args.server:
        try:
            chunk_size = int(policy.client.health()["policy"]["chunk_size"])
        except (ConnectionError, PolicyServerError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"--server {args.server}: /health gave no policy chunk_size ({exc})") from None
        source = policy.predict_chunk
    else:
        chunk_size, source = policy.meta.chunk, policy.predict_chunk
    committed = getattr(policy, "committed_steps", 0) if args.committed == "auto" and args.execution == "async" else 0
    if args.delay_steps > chunk_size:
        raise UsageError(f"--delay-steps must be in 0..{chunk_size} (the chunk length), got {args.delay_steps}")
    try:
        return ExecutedPolicy(source, policy.reset, chunk_size, spec, delay_steps=args.delay_steps,
                              step_s=STEP_S if args.delay_from_server else None, committed_steps=committed), spec
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `eval offline` and `eval closed-loop`."""
    sub = command_group(subparsers, "eval", help="evaluate a checkpoint offline or in the closed-loop simulator",
                        description="Offline metrics on episode files, or driving in the simulator.")

    o = command(sub, "offline", _cmd_offline, help="MAE / RMSE / sign agreement / per-step error / instruction sensitivity on DATA",
                     description="Evaluate CKPT on the episode files in DATA: un-normalised per-axis errors, sign "
                                 "agreement, error per chunk step, and instruction sensitivity (side swapped). "
                                 "Writes report.json and plots.")
    o.add_argument("checkpoint", help="plugin checkpoint (e.g. runs/demo/last.ckpt)")
    o.add_argument("data", help="folder of episode files (V4 or V5)")
    o.add_argument("--split", choices=("all", "train", "val"), default="all", help="which episodes of DATA (default: %(default)s)")
    o.add_argument("--val-ratio", type=float, default=0.1, help="for --split train/val (default: %(default)s)")
    o.add_argument("--split-seed", type=int, default=0)
    o.add_argument("--batch-size", type=positive_int, default=8)
    o.add_argument("--out", help="output folder (default: <checkpoint folder>/eval_offline)")
    add_base_model_option(o)
    add_dtype_option(o)
    add_progress_option(o)

    c = command(sub, "closed-loop", _cmd_closed_loop, help="drive N seeded episodes per scenario in the simulator",
                     description="Drive the simulator with CKPT (in process) or a policy server (--server): success, "
                                 "collision and wrong-side rates, final error, path length vs the scripted expert; "
                                 "writes report.json, a plot and a few GIFs.")
    c.add_argument("checkpoint", nargs="?", help="plugin checkpoint (omit with --server)")
    c.add_argument("--server", metavar="URL", help="policy server base URL: POST URL/reset and URL/act (URL/predict "
                                                   "with --api original)")
    add_client_options(c)
    c.add_argument("--timeout", type=positive_float, default=30.0, help="with --server: seconds per request (default: %(default)s)")
    c.add_argument("--episodes", type=positive_int, default=4, help="seeded worlds per scenario (default: %(default)s)")
    c.add_argument("--scenarios", type=scenario_arg, nargs="+", help="default: 1box and 2box, left/right, close/medium/far "
                                                                        "(with --worlds ood: 2box_vert, a layout never in training)")
    c.add_argument("--seed", type=int, help="world seeds are [SEED, k] (default: the test split's, 1000; 3000 with --worlds ood; "
                                            "sim/splits.py)")
    c.add_argument("--worlds", choices=("iid", "ood"), help="world distribution (default: the checkpoint's, iid); ood: colours, "
                                                           "distances and layout never in training")
    c.add_argument("--reference", choices=("replay", "forward", "image_frozen", "instruction_blanked", "untrained"),
                   help="drive a reference instead of the policy: replay (nearest training episode, open loop; no checkpoint "
                        "needed), forward (forward until blocked, then stop; none needed), image_frozen, instruction_blanked, "
                        "untrained (of CKPT's architecture)")
    c.add_argument("--train-data", metavar="DIR", help="training episodes, for --reference replay and the share of held-out "
                                                       "expert key sequences seen in training (default: the checkpoint's)")
    c.add_argument("--max-steps", type=positive_int, default=40, help="steps before a timeout (default: %(default)s)")
    c.add_argument("--chunk-steps", type=positive_int, default=1,
                   help="sync: execute this many steps of each predicted chunk (default: %(default)s)")
    add_execution_options(c)
    c.add_argument("--delay-steps", type=nonnegative_int, default=0,
                   help="simulated inference delay: each answer arrives this many steps (0.4 s each) after its frame, "
                        "0..chunk length (default: %(default)s)")
    c.add_argument("--delay-from-server", action="store_true",
                   help="with --server: each answer arrives after the wall time it really took, in steps rounded up")
    c.add_argument("--frame-size", type=frame_size, help="HxW camera frames (default: the size the checkpoint was trained "
                                                           "on; 144x256 when it does not say)")
    c.add_argument("--gifs", type=nonnegative_int, default=4, help="rollouts saved as GIF (default: %(default)s)")
    c.add_argument("--blank-instruction", action="store_true", help="give the policy an empty instruction (ablation)")
    c.add_argument("--out", help="output folder (default: <checkpoint folder>/eval_closed_loop)")
    add_base_model_option(c)
    add_dtype_option(c)
    add_progress_option(c)
