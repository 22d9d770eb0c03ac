"""`robovlms-mobile <command>`: one entry point, `--help` on every command."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from robovlms_mobile.data.cli import add_parser as add_data_parser
from robovlms_mobile.serve.cli import add_parser as add_drive_parsers


def _cmd_train(args: argparse.Namespace) -> int:
    from robovlms_mobile.launcher import train

    result = train(args.config, output_dir=args.output_dir, resume=args.resume, max_steps=args.max_steps,
                   max_epochs=args.max_epochs, devices=args.devices, progress=not args.no_progress)
    if result["trainer"].is_global_zero:
        print(json.dumps({k: result[k] for k in ("output_dir", "last_checkpoint", "global_step", "metrics")}, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from robovlms_mobile.demo import run_demo

    run_demo(args.config, max_steps=args.max_steps, progress=not args.no_progress)
    return 0


def _cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    if args.pretrain:  # the pretrained one: from the content-keyed cache (built there if absent), copied to DIR
        import shutil

        from robovlms_mobile.model.pretrain import pretrained_tiny_kosmos2

        source = pretrained_tiny_kosmos2(args.cache_dir, progress=True)
        shutil.copytree(source, args.dir, dirs_exist_ok=True)
        print(f"pretrained tiny Kosmos-2 ({source.name}, recipe in pretrain.json) written to {args.dir}")
        return 0
    out = build_tiny_kosmos2(Path(args.dir), seed=args.seed)
    print(f"tiny Kosmos-2 written to {out}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from robovlms_mobile.data.synthetic import generate_episodes

    h, w = (int(x) for x in args.frame_size.lower().split("x"))
    files = generate_episodes(args.dir, args.n, seed=args.seed, frame_size=(h, w), length=args.length, generation=args.generation)
    print(f"wrote {len(files)} {args.generation.upper()} episodes to {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="robovlms-mobile", description="Train and run 2-DOF navigation VLAs on upstream RoboVLMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train from a config (CPU or GPU)", description="Train through upstream RoboVLMs' pipeline.")
    p.add_argument("config", help="JSON experiment config (upstream format, e.g. configs/mobile_vla_lora.json)")
    p.add_argument("--output-dir", help="checkpoints and logs (default: <output_root>/<exp_name>)")
    p.add_argument("--resume", help="checkpoint to resume from, or 'last' for <output-dir>/last.ckpt")
    p.add_argument("--max-steps", type=int, help="override trainer.max_steps")
    p.add_argument("--max-epochs", type=int, help="override trainer.max_epochs")
    p.add_argument("--devices", type=int, help="processes/GPUs on this node; > 1 runs DDP (gloo on CPU, NCCL on GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="the embedded default: episodes + pretrained tiny model, LoRA, closed loop",
                       description="Simulate expert episodes, get the pretrained tiny Kosmos-2 (cached), train LoRA on CPU, "
                                   "drive 24 held-out episodes: success trained / instruction blanked / untrained, per-part times.")
    p.add_argument("--config", default="configs/tiny_cpu.json", help="demo config (default: %(default)s)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("make-tiny-model", help="build a tiny random Kosmos-2 + tokenizer offline",
                       description="Write a tiny, randomly initialised Kosmos-2 and its processor to DIR (no download).")
    p.add_argument("dir", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain", action="store_true",
                   help="pretrain it on grounded captions of simulator frames (model/pretrain.py), through the cache")
    p.add_argument("--cache-dir", help="pretrained-model cache (default: $ROBOVLMS_MOBILE_CACHE or .cache/robovlms-mobile)")
    p.set_defaults(func=_cmd_make_tiny_model)

    p = sub.add_parser("generate-episodes", help="write procedurally drawn episodes in the robot's format",
                       description="Write synthetic episodes (V4 or V5 HDF5) for demos and tests.")
    p.add_argument("dir", help="output folder")
    p.add_argument("-n", type=int, default=40, help="number of episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-size", default="144x256", help="HxW (the robot records 720x1280; default: %(default)s)")
    p.add_argument("--length", type=int, default=18, help="frames per episode (default: %(default)s)")
    p.add_argument("--generation", choices=("v4", "v5"), default="v4")
    p.set_defaults(func=_cmd_generate)
    add_data_parser(sub)
    add_drive_parsers(sub)
    importlib.import_module("robovlms_mobile.sim.cli").add_parser(sub)
    importlib.import_module("robovlms_mobile.eval.cli").add_parser(sub)
    importlib.import_module("robovlms_mobile.sweep").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; errors in user input print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        # imported only on failure, so `--help` and light commands stay fast
        from robovlms_mobile.config import ConfigError
        from robovlms_mobile.data.dataset import InvalidEpisodesError
        from robovlms_mobile.launcher import OutputDirError

        if isinstance(exc, (ConfigError, InvalidEpisodesError, FileNotFoundError, PermissionError, OutputDirError)):
            print(f"robovlms-mobile {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
