"""Option types and option groups shared by the commands (one definition per flag)."""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable

API_KEY_ENV = "ROBOVLMS_MOBILE_API_KEY"
ORIGINAL_API_KEY_ENV = "VLA_API_KEY"  # the lab's earlier server and robot client read this one
STRATEGIES = ("receding", "reuse", "ensemble")
DTYPES = ("fp32", "bf16", "int8")  # runtime.precision's, repeated so `--help` imports no torch (tested equal)
DEFAULT_ENSEMBLE_DECAY = 0.01  # runtime.chunking's default, repeated so `--help` imports no numpy (tested equal)
EXECUTIONS = ("sync", "async")  # runtime.executor's, repeated for the same reason (tested equal)
MERGES = ("latest", "ensemble", "crossfade")
DEFAULT_CROSSFADE_STEPS = 3


# ---- value types: a bad value is an argparse error naming the flag ---------------------------
def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def frame_size(text: str) -> tuple[int, int]:
    """`144x256` -> (144, 256), each side at least 8 pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"frame size {text!r}: expected HxW, e.g. 144x256") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"frame size {text!r}: each side must be at least 8 pixels")
    return h, w


def seed_list(text: str) -> tuple[int, ...]:
    """`0,1,2` -> (0, 1, 2): distinct integers >= 0."""
    try:
        seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1,2, got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return seeds


# ---- option groups ----------------------------------------------------------------------------
def command_group(subparsers: argparse._SubParsersAction, name: str, help: str, description: str) -> argparse._SubParsersAction:
    """`robovlms-mobile NAME SUBCOMMAND`: the group's parser; returns its sub-command registry."""
    group = subparsers.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


def command(subparsers: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], *, help: str,
            description: str) -> argparse.ArgumentParser:
    """`robovlms-mobile [GROUP] NAME`: its parser, bound to the handler `func` that `main` calls."""
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """`--no-progress`."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_base_model_option(p: argparse.ArgumentParser) -> None:
    """`--base-model-dir`: the one meaning, everywhere a checkpoint is loaded."""
    p.add_argument("--base-model-dir", help="the Kosmos-2 folder the checkpoint was trained on (default: the model "
                                            "folder named in the checkpoint, checked like any local folder)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """`--base-model-dir`, `--device` and `--dtype`: where the frozen backbone comes from, where and how the model runs."""
    add_base_model_option(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    add_dtype_option(p)


def add_dtype_option(p: argparse.ArgumentParser) -> None:
    """`--dtype`: the inference precision of a checkpoint loaded in this process."""
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="inference precision: fp32 = as trained; bf16 = weights in bfloat16 + autocast (half the "
                        "memory); int8 = dynamic int8 on every Linear layer except the LoRA adapters (CPU only) "
                        "(default: %(default)s)")


def add_strategy_options(p: argparse.ArgumentParser) -> None:
    """`--strategy`, `--reuse-steps`, `--ensemble-decay`: how each predicted chunk is used."""
    p.add_argument("--strategy", choices=STRATEGIES, default="receding",
                   help="how each chunk is used: receding = query every tick, execute step 0; reuse = query every "
                        "--reuse-steps ticks; ensemble = query every tick, exponentially weighted average of the "
                        "overlapping chunks (default: %(default)s)")
    p.add_argument("--reuse-steps", type=positive_int, default=5,
                   help="steps executed per query with --strategy reuse (default: %(default)s)")
    p.add_argument("--ensemble-decay", type=nonnegative_float, default=DEFAULT_ENSEMBLE_DECAY,
                   help="weight exp(-decay * i), i = 0 for the oldest chunk, with --strategy ensemble (default: %(default)s)")


def add_execution_options(p: argparse.ArgumentParser, *, ensemble_decay: bool = True) -> None:
    """`--execution`, `--merge`, `--query-threshold`, `--crossfade-steps` (and `--ensemble-decay`): sync or async chunks.

    `ensemble_decay=False` where `add_strategy_options` already defines `--ensemble-decay` (one flag, both uses).
    """
    p.add_argument("--execution", choices=EXECUTIONS, default="sync",
                   help="sync = wait for each answer, then act; async = keep executing the queued chunk while the "
                        "next query runs on the newest frame (default: %(default)s)")
    p.add_argument("--merge", choices=MERGES, default="latest",
                   help="async: how a late chunk joins the queue after its first d (delay) actions are dropped: "
                        "latest = it replaces the queue; ensemble = exponentially weighted average of every "
                        "prediction for a step (--ensemble-decay); crossfade = linear blend over --crossfade-steps "
                        "(default: %(default)s)")
    p.add_argument("--query-threshold", type=positive_int,
                   help="async: start the next query when fewer actions than this are queued (default: the chunk "
                        "length, i.e. whenever no query is in flight)")
    p.add_argument("--crossfade-steps", type=positive_int, default=DEFAULT_CROSSFADE_STEPS,
                   help="async with --merge crossfade: steps over which the old plan fades into the new (default: %(default)s)")
    if ensemble_decay:
        p.add_argument("--ensemble-decay", type=nonnegative_float, default=DEFAULT_ENSEMBLE_DECAY,
                       help="weight exp(-decay * i), i = 0 for the oldest prediction, with --merge ensemble "
                            "(default: %(default)s)")
    p.add_argument("--committed", choices=("auto", "off"), default="auto",
                   help="async: auto = tell a head trained with act_head.committed_steps the actions that run while "
                        "its query is out (training-time RTC); off = never (default: %(default)s)")


def execution_spec(args: argparse.Namespace, strategy=None):
    """The runtime.executor.ExecutionSpec the execution options describe (`strategy`: sync's chunk strategy)."""
    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.executor import ExecutionSpec

    return ExecutionSpec(args.execution, args.merge, args.query_threshold, args.crossfade_steps, args.ensemble_decay,
                         strategy or StrategySpec())


def add_client_options(p: argparse.ArgumentParser) -> None:
    """`--api-key` and `--api`: how a command talks to a policy server given with `--server`."""
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or os.environ.get(ORIGINAL_API_KEY_ENV),
                   help=f"with --server (default: ${API_KEY_ENV}, else ${ORIGINAL_API_KEY_ENV})")
    p.add_argument("--api", choices=("native", "original"), default="native",
                   help="with --server: native = robovlms-mobile serve (/reset + /act episodes); original = the lab's "
                        "earlier inference server (POST /predict, one global history) (default: %(default)s)")


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`, exit 2) instead of usage + error."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """Also record the innermost command's name (`robovlms-mobile data validate`) as `_prog`."""
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "_prog"):  # the innermost sub-parser finishes first
            namespace._prog = self.prog
        return namespace, extras

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print one line naming the flag and what was expected; exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
