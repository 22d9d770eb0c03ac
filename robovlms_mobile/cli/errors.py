"""The one policy that turns an error into an exit code and a single line on stderr.

- 0: done; 2: the input was refused (a file, key, field or flag), with one line saying which and
  what was expected; 130: interrupted; 143: stopped by SIGTERM (one line: what was saved); 1: anything else, also one line (set
  ROBOVLMS_MOBILE_DEBUG=1 for the traceback). A traceback is never the answer to bad input.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from robovlms_mobile.errors import StoppedBySignal, clip

MAX_PATH_ECHO = 1024  # a path the user gave is shown as it is up to this length, clipped beyond
DEBUG_ENV = "ROBOVLMS_MOBILE_DEBUG"


class UsageError(ValueError):
    """Bad user input detected by a command itself (a flag, a combination of flags, a file)."""


# Error types that mean "your input was refused". The plugin's own (ConfigError, CheckpointError,
# InvalidEpisodesError, OutputDirError, BaseModelError, ...) subclass one of these, so none is listed.
# UsageError and UnicodeError are ValueErrors; FileNotFoundError, PermissionError and h5py/PIL read errors are OSErrors.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with ' | ')."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        name = str(exc.filename)
        text = f"{name if len(name) <= MAX_PATH_ECHO else clip(name)}: {exc.strerror}"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(prog: str, func: Callable[[], int | None]) -> int:
    """Run one command (`prog`: its full name, e.g. `robovlms-mobile data validate`) under the policy above."""
    try:
        return int(func() or 0)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except StoppedBySignal as exc:
        print(f"{prog}: stopped: {one_line(exc)}", file=sys.stderr)
        return 143
    except Exception as exc:  # noqa: BLE001 - this is the one place that decides what the user sees
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        if isinstance(exc, USER_ERRORS):
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
