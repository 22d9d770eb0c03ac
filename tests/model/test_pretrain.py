"""Pretraining stage of the tiny Kosmos-2: grounded captions, caption loss, content-keyed cache."""

from __future__ import annotations

import json

import numpy as np

from robovlms_mobile.model.grounding import bottle_visible, grounded_caption, move_words
from robovlms_mobile.model.pretrain import RECIPE, cache_key, pretrained_tiny_kosmos2
from robovlms_mobile.sim.scenarios import build_world, parse_scenario

SIZE = (72, 128)
# a recipe small enough for a test: one world per standard scenario, tiny frames, a few steps
SMALL = dict(RECIPE, worlds_per_scenario=1, scenarios="default", frame_size=[36, 64], steps=30, batch_size=8)


def test_captions_say_what_is_where():
    world = build_world(parse_scenario("1box_left_medium"), [1000, 0])
    start = grounded_caption(world, *world.start, np.array([1.15, 0.0]), SIZE)
    assert start.startswith(" left side; next move: forward.<phrase> the box</phrase><object><patch_index_")
    assert "is ahead, far." in start and start.endswith("the bottle is hidden.")  # hidden behind the box at the start
    assert not bottle_visible(world, *world.start, SIZE)
    gx, gy = world.goal
    goal = grounded_caption(world, gx, gy, np.zeros(2), SIZE)
    assert goal.startswith(" left side; next move: stop.") and "<phrase> the bottle</phrase>" in goal and goal.endswith("is ahead, near.")
    beside = grounded_caption(world, world.boxes[0].x0 - 0.3, world.boxes[0].y1 + 0.35, np.array([1.15, 0.0]), SIZE)
    assert "the box</phrase>" in beside and "is on the right, near." in beside  # passing on the left: the box is to the right
    assert [move_words(a) for a in ([1.15, 1.15], [0, -1.15], [-1.15, 0], [0.1, 0.1])] == ["forward left", "right", "backward", "stop"]


def test_cache_key_follows_the_recipe():
    assert cache_key(RECIPE) == cache_key(dict(RECIPE)) and cache_key(RECIPE) != cache_key(dict(RECIPE, steps=301))


def test_pretraining_lowers_the_caption_loss_and_is_cached(tmp_path):
    path = pretrained_tiny_kosmos2(tmp_path, SMALL)
    record = json.loads((path / "pretrain.json").read_text())
    assert path.name == f"tiny-kosmos2-pretrained-{cache_key(SMALL)}" and record["cache_key"] == cache_key(SMALL)
    assert record["recipe"] == SMALL and record["data"]["frames"] > 100 and record["data"]["examples"]
    assert record["caption_loss"]["last_10"] < record["caption_loss"]["first_10"] - 0.5
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert pretrained_tiny_kosmos2(tmp_path, SMALL) == path and (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no build folder left behind
