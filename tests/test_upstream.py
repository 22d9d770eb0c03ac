"""The plugin finds upstream at the pin, or says exactly how to install it."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from robovlms_mobile import upstream

REPO = Path(__file__).resolve().parents[1]


def test_pinned_commit_matches_upstream_version_file_and_install():
    pinned = (REPO / "UPSTREAM_VERSION").read_text().strip()
    assert pinned == "8adc1d28d3565699eba90b7d97a97fb6001eb87d"
    assert upstream.pinned_commit() == pinned
    assert upstream.installed_commit() == pinned


def test_missing_upstream_is_a_one_line_error():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['robovlms'] = None; import robovlms_mobile"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("robovlms_mobile.upstream.UpstreamMissingError: robovlms-mobile needs upstream RoboVLMs")
    assert 'pip install --no-deps "robovlms @ git+https://github.com/Robot-VLAs/RoboVLMs@8adc1d28d3565699eba90b7d97a97fb6001eb87d"' in last


def test_other_upstream_commit_warns(monkeypatch):
    monkeypatch.setattr(upstream, "installed_commit", lambda: "0123456789abcdef0123")
    with pytest.warns(UserWarning, match="0123456789ab.*8adc1d28d356"):
        upstream.check_upstream()


def test_pinned_commit_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upstream.check_upstream()


def test_metadata_is_publishable():
    requires = md.requires("robovlms-mobile") or []
    assert not [r for r in requires if "://" in r or "@" in r], "no URL dependencies in package metadata"
    assert not [r for r in requires if r.lower().startswith("robovlms")]
    eps = md.entry_points(group="robovlms.plugins")
    assert [ep.value for ep in eps if ep.name == "mobile_vla"] == ["robovlms_mobile.train.registry:register"]
    scripts = md.entry_points(group="console_scripts")
    assert any(ep.name == "robovlms-mobile" for ep in scripts)
