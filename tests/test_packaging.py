"""The wheel a user installs: package, patches, pin and start-up hook; no URL dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("robovlms_mobile-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("robovlms_mobile_autoload.pth", "robovlms_mobile_autoload.py", "robovlms_mobile/UPSTREAM_VERSION",
                     "robovlms_mobile/patches/kosmos2_inputs_embeds.py", "robovlms_mobile/train/registry.py"):
        assert required in names, required
    assert not any(n.startswith(("tests/", "configs/", "benchmarks/")) for n in names)
    pth = zipfile.ZipFile(wheel).read("robovlms_mobile_autoload.pth").decode().strip()
    assert pth == "import robovlms_mobile_autoload"
    pinned = zipfile.ZipFile(wheel).read("robovlms_mobile/UPSTREAM_VERSION").decode().strip()
    assert pinned == (REPO / "UPSTREAM_VERSION").read_text().strip()
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [l for l in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if l.startswith("Requires-Dist:")]
    assert requires and not [r for r in requires if "://" in r or "robovlms" in r.lower().split(":")[1].split()[0]]
