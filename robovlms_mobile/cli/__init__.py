"""`robovlms-mobile <command>`: one entry point, shared option groups, one error-to-exit-code policy.

The parser lives in `cli.commands`; sub-command modules (`data.cli`, `serve.cli`, ...) import only
`cli.options` and `cli.errors`, so this package imports nothing heavy at start-up.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (`robovlms-mobile`)."""
    from robovlms_mobile.cli.commands import main as run

    return run(argv)


def build_parser():
    """The argument parser for every command (see `cli.commands.build_parser`)."""
    from robovlms_mobile.cli.commands import build_parser as build

    return build()
