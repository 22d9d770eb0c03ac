"""`robovlms-mobile data`: one command group in the main entry point, --help on every subcommand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robovlms_mobile.cli import build_parser, main

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
SUBCOMMANDS = ["validate", "stats", "split", "show", "convert"]


def test_data_group_in_the_installed_entry_point():
    top = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0 and "data" in top.stdout
    out = subprocess.run([CLI, "data", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: robovlms-mobile data" in out.stdout
    for name in SUBCOMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["data", name, "--help"])
    assert info.value.code == 0
    assert f"usage: robovlms-mobile data {name}" in capsys.readouterr().out


def test_missing_subcommand_is_a_one_line_usage_error(capsys):
    assert main(["data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SUBCOMMAND" in err[0] and err[0].startswith("robovlms-mobile data: error:")
