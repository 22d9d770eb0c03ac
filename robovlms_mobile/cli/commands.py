"""The parser: every command and its `--help`; errors go through `cli.errors.run_command`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robovlms_mobile.cli.errors import run_command
from robovlms_mobile.cli.options import (OneLineParser, add_progress_option, command, frame_size, nonnegative_float, positive_int,
                                         seed_list)
from robovlms_mobile.recipes.demo import DEMO_SEEDS
from robovlms_mobile.task import FRAME_SIZE
from robovlms_mobile.cli.config import add_parser as add_config_parser
from robovlms_mobile.cli.data import add_parser as add_data_parser
from robovlms_mobile.cli.eval import add_parser as add_eval_parser
from robovlms_mobile.cli.sim import add_parser as add_sim_parser
from robovlms_mobile.cli.sweep import add_parser as add_sweep_parser
from robovlms_mobile.cli.serve import add_parser as add_drive_parsers


def _cmd_train(args: argparse.Namespace) -> int:
    from robovlms_mobile.eval.sections import SECTION_CALLBACKS
    from robovlms_mobile.train.launcher import train

    result = train(args.config, output_dir=args.output_dir, resume=args.resume, max_steps=args.max_steps,
                   max_epochs=args.max_epochs, devices=args.devices, progress=not args.no_progress,
                   section_callbacks=SECTION_CALLBACKS, stall_timeout_min=args.stall_timeout)
    if result["trainer"].is_global_zero:
        print(json.dumps({k: result[k] for k in ("output_dir", "last_checkpoint", "global_step", "metrics")}, indent=2))
    return 0


def _cmd_rehearse(args: argparse.Namespace) -> int:
    from robovlms_mobile.outputs import claim

    if args.json:  # refused before the (heavy) imports and the long run: not onto the config, not over a user's file
        claim(args.json, [args.config], flag="--json")
    from robovlms_mobile.recipes.rehearse import run_cli

    return run_cli(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from robovlms_mobile.recipes.demo import run_demo

    run_demo(args.config, max_steps=args.max_steps, progress=not args.no_progress, seeds=args.seeds)
    return 0


def _cmd_make_tiny_model(args: argparse.Namespace) -> int:
    import tempfile

    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2
    from robovlms_mobile.outputs import check_folder, place_files

    out = check_folder(args.dir, flag="DIR")
    if args.pretrain:  # the pretrained one: from the content-keyed cache (built there if absent), copied to DIR
        from robovlms_mobile.model.pretrain import STAMP, pretrained_tiny_kosmos2

        source = pretrained_tiny_kosmos2(args.cache_dir, progress=True)
        with tempfile.TemporaryDirectory(prefix=".robovlms-build-", dir=out) as tmp:  # the cache's files minus its stamp
            for p in source.iterdir():
                if p.is_file() and p.name != STAMP:
                    (Path(tmp) / p.name).write_bytes(p.read_bytes())
            place_files(tmp, out)
        print(f"pretrained tiny Kosmos-2 ({source.name}, recipe in pretrain.json) written to {args.dir}")
        return 0
    with tempfile.TemporaryDirectory(prefix=".robovlms-build-", dir=out) as tmp:  # built aside, then placed file by file
        build_tiny_kosmos2(Path(tmp), seed=args.seed)
        place_files(tmp, out)
    print(f"tiny Kosmos-2 written to {out}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.synthetic import generate_episodes

    files = generate_episodes(args.dir, args.n, seed=args.seed, frame_size=args.frame_size, length=args.length, generation=args.generation)
    print(f"wrote {len(files)} {args.generation.upper()} episodes to {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = OneLineParser(prog="robovlms-mobile", description="Train and run 2-DOF navigation VLAs on upstream RoboVLMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = command(sub, "train", _cmd_train, help="train from a config (CPU or GPU)", description="Train through upstream RoboVLMs' pipeline.")
    p.add_argument("config", help="JSON experiment config (upstream format, e.g. configs/mobile_vla_lora.json)")
    p.add_argument("--output-dir", help="checkpoints and logs (default: <output_root>/<exp_name>)")
    p.add_argument("--resume", help="checkpoint to resume from, or 'last' for <output-dir>/last.ckpt")
    p.add_argument("--max-steps", type=positive_int, help="override trainer.max_steps")
    p.add_argument("--max-epochs", type=positive_int, help="override trainer.max_epochs")
    p.add_argument("--devices", type=positive_int, help="processes/GPUs on this node; > 1 runs DDP (gloo on CPU, NCCL on GPU)")
    p.add_argument("--stall-timeout", type=nonnegative_float, metavar="MIN",
                   help="end the run with one line naming the rank and step when no rank made progress for MIN "
                        "minutes (overrides stall_timeout_min, default 30; 0: off)")
    add_progress_option(p)

    p = command(sub, "rehearse", _cmd_rehearse, help="build, train K steps, save and reload the config's model at real size on CPU",
                     description="Kosmos-2 at its published size with random weights (no download): K real training "
                                 "steps on synthetic episodes, checkpoint save + reload, memory per phase, GPU estimate.")
    p.add_argument("config", help="JSON experiment config (e.g. configs/mobile_vla_lora.json)")
    p.add_argument("--steps", type=int, default=2, help="optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="CPU batch (default: %(default)s; the config's batch "
                   "enters the GPU estimate)")
    p.add_argument("--model-dir", help="where the random full-size Kosmos-2 is written once and reused "
                   "(default: ~/.cache/robovlms-mobile/kosmos-2-patch14-224-random, ~6.7 GB)")
    p.add_argument("--tiny", action="store_true", help="use the tiny Kosmos-2 instead (a quick check of the pipeline)")
    p.add_argument("--gradient-checkpointing", choices=("config", "on", "off"), default="config",
                   help="in the training steps (default: the config's train_setup.gradient_checkpointing)")
    p.add_argument("--no-checkpointing-check", action="store_true", help="skip the gradient-checkpointing comparison")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--max-rss-gb", type=float, default=12.0, help="stop with an error when this process's RSS passes "
                   "this (GiB), or when the machine has under 1 GiB available (default: %(default)s; 0 = no limit)")
    p.add_argument("--json", help="also write every figure to this JSON file")

    p = command(sub, "demo", _cmd_demo, help="the embedded default: episodes + pretrained tiny model, LoRA, closed loop",
                     description="Simulate expert episodes, get the pretrained tiny Kosmos-2 (cached), train LoRA on CPU, "
                                 "drive 24 held-out episodes: success trained / instruction blanked / untrained as mean ± std over the "
                                 "training seeds (trained side by side), per-part times.")
    p.add_argument("--config", default="configs/tiny_cpu.json", help="demo config (default: %(default)s)")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps")
    p.add_argument("--seeds", type=seed_list, default=DEMO_SEEDS,
                   help=f"training seeds, comma-separated (default: {','.join(map(str, DEMO_SEEDS))})")
    add_progress_option(p)

    p = command(sub, "make-tiny-model", _cmd_make_tiny_model, help="build a tiny random Kosmos-2 + tokenizer offline",
                     description="Write a tiny, randomly initialised Kosmos-2 and its processor to DIR (no download).")
    p.add_argument("dir", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain", action="store_true",
                   help="pretrain it on grounded captions of simulator frames (model/pretrain.py), through the cache")
    p.add_argument("--cache-dir", help="pretrained-model cache (default: $ROBOVLMS_MOBILE_CACHE or .cache/robovlms-mobile)")

    p = command(sub, "generate-episodes", _cmd_generate, help="write procedurally drawn episodes in the robot's format",
                     description="Write synthetic episodes (V4 or V5 HDF5) for demos and tests.")
    p.add_argument("dir", help="output folder")
    p.add_argument("-n", type=positive_int, default=40, help="number of episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-size", type=frame_size, default=FRAME_SIZE, help="HxW (the robot records 720x1280; default: %(default)s)")
    p.add_argument("--length", type=positive_int, default=18, help="frames per episode (default: %(default)s)")
    p.add_argument("--generation", choices=("v4", "v5"), default="v4")
    add_data_parser(sub)
    add_config_parser(sub)
    add_drive_parsers(sub)
    add_sim_parser(sub)
    add_eval_parser(sub)
    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command under the one error policy (`cli.errors.run_command`), return its exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a flag refused in one line by OneLineParser
        return exc.code if isinstance(exc.code, int) else 0
    return run_command(args._prog, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
