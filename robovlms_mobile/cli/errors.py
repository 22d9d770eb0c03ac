"""The one policy that turns an error into an exit code and a single line on stderr.

- 0: done; 2: the input was refused (a file, key, field or flag), with one line saying which and
  what was expected; 130: interrupted; 1: anything else, also one line (set
  ROBOVLMS_MOBILE_DEBUG=1 for the traceback). A traceback is never the answer to bad input.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_ENV = "ROBOVLMS_MOBILE_DEBUG"


class UsageError(ValueError):
    """Bad user input detected by a command itself (a flag, a combination of flags, a file)."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Error types that mean 'your input was refused' (imported lazily: `--help` stays light)."""
    types: list[type[BaseException]] = [UsageError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
                                         NotADirectoryError, FileExistsError, UnicodeError,
                                         OSError]  # an unreadable input file (h5py, PIL) is an OSError
    for module, name in (("robovlms_mobile.config", "ConfigError"),
                         ("robovlms_mobile.data.dataset", "InvalidEpisodesError"),
                         ("robovlms_mobile.launcher", "OutputDirError"),
                         ("robovlms_mobile.checkpoint", "CheckpointError"),
                         ("robovlms_mobile.model.model_folder", "BaseModelError")):
        mod = sys.modules.get(module)  # only modules the command imported can have raised their errors
        if mod is not None and isinstance(getattr(mod, name, None), type):
            types.append(getattr(mod, name))
    return tuple(types)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with ' | ')."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
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
    except Exception as exc:  # noqa: BLE001 - this is the one place that decides what the user sees
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        if isinstance(exc, _user_error_types()):
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
