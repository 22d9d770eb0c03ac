"""`robovlms-mobile config check FILE`: the parser; the report is `config/report.py`."""

from __future__ import annotations

import argparse

from robovlms_mobile.cli.options import command, command_group


def _cmd_check(args: argparse.Namespace) -> int:
    from robovlms_mobile.config.report import check_file

    return check_file(args.file)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `config check`."""
    inner = command_group(sub, "config", help="inspect experiment configs", description="Inspect experiment configs.")
    c = command(inner, "check", _cmd_check, help="per key, what it does in this package",
                       description="Print, per key of a config (parents merged), what it does here: used, mapped to "
                                   "one of our keys, no effect here, or unknown (an error, exit 2).")
    c.add_argument("file", help="JSON experiment config")
