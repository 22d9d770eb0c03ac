"""Contract (d): the upstream signatures and call sites the plugin relies on have not moved."""

from __future__ import annotations

import difflib
import json

from upstream_api import SNAPSHOT, snapshot


def test_upstream_api_matches_snapshot(upstream_dir):
    expected = SNAPSHOT.read_text()
    actual = json.dumps(snapshot(upstream_dir), indent=1, sort_keys=True) + "\n"
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "snapshot", "installed upstream"))
    assert not diff, (
        "upstream RoboVLMs moved under the plugin; review each change, then refresh with "
        "`python tests/upstream_api.py --update`:\n" + diff
    )


def test_every_call_site_is_present():
    sites = json.loads(SNAPSHOT.read_text())["call_sites"]
    missing = [f"{f}: {needle}" for f, needles in sites.items() for needle, found in needles.items() if not found]
    assert not missing, "snapshot records missing call sites:\n" + "\n".join(missing)
