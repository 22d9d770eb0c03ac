"""`robovlms-mobile serve CHECKPOINT` (and `ros-bridge`): argument parsing only; heavy imports happen on run."""

from __future__ import annotations

import argparse
import os
import sys

from robovlms_mobile.cli.options import (API_KEY_ENV, ORIGINAL_API_KEY_ENV,
                                         add_model_options, add_strategy_options, command, positive_int)
from robovlms_mobile.task import CHUNK

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_BODY_MB = 1024.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the commands that drive the robot: `serve` here, `ros-bridge` from robovlms_mobile.cli.ros."""
    from robovlms_mobile.cli.ros import add_parser as add_ros_parser

    p = command(
        subparsers, "serve", run_serve, help="HTTP policy server for a checkpoint (POST /act, POST /predict, POST /reset, GET /health)",
        description="Serve a plugin checkpoint over HTTP (FastAPI on uvicorn). The checkpoint is loaded with "
                    "weights_only=True; one with a pickled payload is refused.")
    p.add_argument("checkpoint", help="plugin checkpoint (e.g. runs/demo/last.ckpt)")
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only; "
                                                        "0.0.0.0 exposes the server on every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    p.add_argument("--api-key", default=None,
                   help=f"require this key in 'X-API-Key' or 'Authorization: Bearer' (default: ${API_KEY_ENV}, else "
                        f"${ORIGINAL_API_KEY_ENV}; prefer a variable: arguments are visible to other users in the process "
                        f"list). A key that is set but empty is an error, never 'no key'")
    p.add_argument("--instruction-map", metavar="JSON",
                   help="JSON file {robot instruction: trained instruction} (or a config file with an "
                        "'instruction_map' object): translates what the robot sends, e.g. 'center_straight'")
    add_strategy_options(p)
    p.add_argument("--max-episodes", type=positive_int, default=64, help="episodes kept; least recently used evicted (default: %(default)s)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default: %(default)s)")
    p.add_argument("--max-image-side", type=positive_int, default=4096, help="largest image side in pixels (default: %(default)s)")
    p.add_argument("--max-image-pixels", type=positive_int, default=3840 * 2160, help="largest image area (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_ros_parser(subparsers)


def run_serve(args: argparse.Namespace) -> int:
    """Load the checkpoint and serve it until interrupted; one-line errors for a bad checkpoint or folder."""
    from robovlms_mobile.runtime.chunking import StrategySpec

    from robovlms_mobile.serve.instructions import InstructionBook, load_instruction_map

    api_key = resolve_api_key(args.api_key, os.environ)
    check_flags(args)
    strategy = StrategySpec(args.strategy, reuse_steps=args.reuse_steps, ensemble_decay=args.ensemble_decay)
    strategy.build(max(args.reuse_steps, CHUNK))  # parameter checks only; the checkpoint's chunk is checked on load
    mapping = load_instruction_map(args.instruction_map) if args.instruction_map else {}
    policy, trained = _load_policy(args, strategy)
    import uvicorn

    from robovlms_mobile.serve.app import ServerSettings, create_app
    from robovlms_mobile.data.decode import ImageLimits

    settings = ServerSettings(api_key=api_key, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                              image=ImageLimits(args.max_image_side, args.max_image_pixels), max_episodes=args.max_episodes)
    book = InstructionBook(trained, mapping)
    if args.host not in LOOPBACK and settings.api_key is None:
        print(f"robovlms-mobile serve: warning: listening on {args.host} without an API key (set ${API_KEY_ENV})", file=sys.stderr)
    known = "not recorded in the checkpoint" if trained is None else f"{len(trained)} trained"
    print(f"robovlms-mobile serve: {args.checkpoint} on http://{args.host}:{args.port} "
          f"(strategy {strategy.describe()}, device {policy.device}, dtype {policy.dtype}, API key {'on' if settings.api_key else 'off'}, "
          f"instructions {known}, {len(mapping)} mapped)", flush=True)
    uvicorn.run(create_app(policy, settings, book), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, server_header=False)
    return 0


def resolve_api_key(flag: str | None, env: "os._Environ | dict[str, str]") -> str | None:
    """The key from --api-key, else $ROBOVLMS_MOBILE_API_KEY, else $VLA_API_KEY; None when none is set.

    A key that is set but empty (or blank) is an error: it must never silently turn authentication off.
    """
    for value, where in ((flag, "--api-key"), (env.get(API_KEY_ENV), f"${API_KEY_ENV}"),
                         (env.get(ORIGINAL_API_KEY_ENV), f"${ORIGINAL_API_KEY_ENV}")):
        if value is None:
            continue
        if not value.strip():
            raise ValueError(f"{where} is set but empty: give a key, or unset it to serve without one")
        return value
    return None


def check_flags(args: argparse.Namespace) -> None:
    """One-line ValueError naming the first flag out of range (the integer flags are checked by their types)."""
    if not args.host.strip():
        raise ValueError("--host is empty: give an address to bind (127.0.0.1 for this machine only, 0.0.0.0 for every "
                         "interface)")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if not 0 < args.max_body_mb <= MAX_BODY_MB:
        raise ValueError(f"--max-body-mb must be a number of MiB in (0, {MAX_BODY_MB}], got {args.max_body_mb}")


def _load_policy(args: argparse.Namespace, strategy: object):
    """(MobileVLAPolicy, the checkpoint's training instructions or None) from the one guarded load."""
    from robovlms_mobile.cli.options import resolve_device
    from robovlms_mobile.runtime.policy import MobileVLAPolicy
    from robovlms_mobile.serve.instructions import trained_instructions

    policy = MobileVLAPolicy.from_checkpoint(args.checkpoint, args.base_model_dir, strategy=strategy,
                                             device=resolve_device(args.device), dtype=args.dtype)
    return policy, trained_instructions(policy.metadata)
