"""The backbone probe: teacher-forced caption accuracies on held-out frames."""

from __future__ import annotations

from robovlms_mobile.model.probe import caption_probe
from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2


def test_probe_of_a_random_backbone_knows_no_location(tmp_path):
    out = caption_probe(build_tiny_kosmos2(tmp_path), poses=1)
    assert out["frames"] == 12 and out["caption_tokens"] > 100
    for key in ("word_accuracy", "location_accuracy", "location_guessed_a_location"):
        assert 0.0 <= out[key] <= 1.0
    assert out["location_accuracy"] < 0.05  # random: near 0 on locations
