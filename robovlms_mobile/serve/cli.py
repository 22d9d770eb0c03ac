"""`robovlms-mobile serve CHECKPOINT` (and `ros-bridge`): argument parsing only; heavy imports happen on run."""

from __future__ import annotations

import argparse
import os
import sys

API_KEY_ENV = "ROBOVLMS_MOBILE_API_KEY"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# runtime.chunking's STRATEGIES / DEFAULT_ENSEMBLE_DECAY, repeated so `--help` imports no numpy (a test keeps them equal)
STRATEGIES = ("receding", "reuse", "ensemble")
DEFAULT_ENSEMBLE_DECAY = 0.01


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the commands that drive the robot: `serve` here, `ros-bridge` from robovlms_mobile.ros.cli."""
    from robovlms_mobile.ros.cli import add_parser as add_ros_parser

    p = subparsers.add_parser(
        "serve", help="HTTP policy server for a checkpoint (POST /act, POST /reset, GET /health)",
        description="Serve a plugin checkpoint over HTTP (FastAPI on uvicorn). The checkpoint is loaded with "
                    "weights_only=True; one with a pickled payload is refused.")
    p.add_argument("checkpoint", help="plugin checkpoint (e.g. runs/demo/last.ckpt)")
    p.add_argument("--base-model-dir", help="the Kosmos-2 folder the checkpoint was trained on (default: the model_path "
                                            "stored in the checkpoint)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only; "
                                                        "0.0.0.0 exposes the server on every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require this key in 'X-API-Key' or 'Authorization: Bearer' (default: ${API_KEY_ENV}; "
                        f"prefer the variable: arguments are visible to other users in the process list)")
    p.add_argument("--strategy", choices=STRATEGIES, default="receding",
                   help="how each chunk is used: receding = query every tick, execute step 0; reuse = query every "
                        "--reuse-steps ticks; ensemble = query every tick, exponentially weighted average of the "
                        "overlapping chunks (default: %(default)s)")
    p.add_argument("--reuse-steps", type=int, default=5, help="steps executed per query with --strategy reuse (default: %(default)s)")
    p.add_argument("--ensemble-decay", type=float, default=DEFAULT_ENSEMBLE_DECAY,
                   help="weight exp(-decay * i), i = 0 for the oldest chunk, with --strategy ensemble (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    p.add_argument("--max-episodes", type=int, default=64, help="episodes kept; least recently used evicted (default: %(default)s)")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default: %(default)s)")
    p.add_argument("--max-image-side", type=int, default=4096, help="largest image side in pixels (default: %(default)s)")
    p.add_argument("--max-image-pixels", type=int, default=3840 * 2160, help="largest image area (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=run_serve)
    add_ros_parser(subparsers)


def run_serve(args: argparse.Namespace) -> int:
    """Load the checkpoint and serve it until interrupted; one-line errors for a bad checkpoint or folder."""
    from robovlms_mobile.checkpoint import UnsafeCheckpointError
    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.loader import BaseModelError

    try:
        strategy = StrategySpec(args.strategy, reuse_steps=args.reuse_steps, ensemble_decay=args.ensemble_decay)
        strategy.build(10 if args.strategy != "reuse" else max(args.reuse_steps, 1))  # parameter checks only
        for name in ("max_episodes", "max_image_side", "max_image_pixels"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if args.max_body_mb <= 0:
            raise ValueError("--max-body-mb must be > 0")
        policy = _load_policy(args, strategy)
    except (UnsafeCheckpointError, BaseModelError, FileNotFoundError, ValueError) as exc:
        print(f"robovlms-mobile serve: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from robovlms_mobile.serve.app import ServerSettings, create_app
    from robovlms_mobile.serve.images import ImageLimits

    settings = ServerSettings(api_key=args.api_key or None, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                              image=ImageLimits(args.max_image_side, args.max_image_pixels), max_episodes=args.max_episodes)
    if args.host not in LOOPBACK and settings.api_key is None:
        print(f"robovlms-mobile serve: warning: listening on {args.host} without an API key (set ${API_KEY_ENV})", file=sys.stderr)
    print(f"robovlms-mobile serve: {args.checkpoint} on http://{args.host}:{args.port} "
          f"(strategy {strategy.describe()}, device {policy.device}, API key {'on' if settings.api_key else 'off'})", flush=True)
    uvicorn.run(create_app(policy, settings), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, server_header=False)
    return 0


def _load_policy(args: argparse.Namespace, strategy: object):
    import torch

    from robovlms_mobile.runtime.policy import MobileVLAPolicy

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    return MobileVLAPolicy.from_checkpoint(args.checkpoint, base_model_dir=args.base_model_dir, strategy=strategy, device=device)
