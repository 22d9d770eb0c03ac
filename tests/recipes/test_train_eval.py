"""`recipes.train_eval.spread`: the mean ± std over training seeds that every closed-loop figure is reported as."""

from __future__ import annotations

import pytest

from robovlms_mobile.recipes.train_eval import spread


def test_spread_over_seeds():
    runs = [{"closed_loop": {"trained": {"success_rate": r}, "untrained": {"success_rate": 0.0}}} for r in (0.5, 0.75, 1.0)]
    table = spread(runs)
    assert table["trained"]["mean"] == pytest.approx(0.75) and table["trained"]["std"] == pytest.approx((1 / 24) ** 0.5)
    assert (table["trained"]["min"], table["trained"]["max"], table["trained"]["per_seed"]) == (0.5, 1.0, [0.5, 0.75, 1.0])
    assert table["untrained"] == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "per_seed": [0.0, 0.0, 0.0]}
