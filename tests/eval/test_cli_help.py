"""The new commands answer --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("robovlms-mobile"))


@pytest.mark.parametrize("command", [["sim"], ["sim", "show"], ["eval"], ["eval", "offline"], ["eval", "closed-loop"], ["sweep"]])
def test_help(command):
    out = subprocess.run([CLI, *command, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: robovlms-mobile" in out.stdout
