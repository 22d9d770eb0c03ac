"""Where upstream RoboVLMs is, and whether it is the commit this plugin was built against."""

from __future__ import annotations

import json
import warnings
from importlib import metadata, util
from pathlib import Path

UPSTREAM_URL = "https://github.com/Robot-VLAs/RoboVLMs"

# The names the plugin registers in upstream's namespaces (train/registry.py), as configs and checkpoints spell them
DATASET_TYPE = "MobileVLAH5Dataset"
HEAD_TYPE = "MobileVLALSTMDecoder"
TRAINER_TYPE = "MobileVLATrainer"
CNN_TYPE = "RoboResNet"


class UpstreamMissingError(ImportError):
    """Upstream RoboVLMs is not importable."""


def pinned_commit() -> str:
    """The upstream commit in UPSTREAM_VERSION (shipped inside the wheel, or the repo root)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "UPSTREAM_VERSION", here.parent / "UPSTREAM_VERSION"):
        if candidate.is_file():
            return candidate.read_text().strip()
    raise FileNotFoundError("UPSTREAM_VERSION not found beside robovlms_mobile")


def install_hint() -> str:
    """The one command that installs upstream at the pinned commit."""
    return f'pip install --no-deps "robovlms @ git+{UPSTREAM_URL}@{pinned_commit()}"'


def installed_commit() -> str | None:
    """Commit recorded by pip in robovlms' direct_url.json, or None if unknown."""
    try:
        raw = metadata.distribution("robovlms").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    return info.get("vcs_info", {}).get("commit_id")


def check_upstream() -> None:
    """Raise a one-line error if robovlms is missing; warn if it is not the pinned commit."""
    if util.find_spec("robovlms") is None:
        raise UpstreamMissingError(
            f"robovlms-mobile needs upstream RoboVLMs; install it with: {install_hint()}"
        )
    commit, pinned = installed_commit(), pinned_commit()
    if commit is not None and commit != pinned:
        warnings.warn(
            f"robovlms is installed at commit {commit[:12]}, but robovlms-mobile is tested "
            f"against {pinned[:12]} (UPSTREAM_VERSION); reinstall with: {install_hint()}",
            stacklevel=2,
        )
