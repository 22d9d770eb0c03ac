"""Pretraining stage of the tiny Kosmos-2: honest grounded captions, caption loss, content-keyed cache."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from robovlms_mobile.model.grounding import (CAPTION_WORDS, SceneObject, caption_objects, caption_words, check_caption,
                                             grounded_caption, patch_tokens, scene_objects, visible_objects)
from robovlms_mobile.model.pretrain import RECIPE, caption_frames, cache_key, pretrained_tiny_kosmos2
from robovlms_mobile.sim.expert import expert_episode
from robovlms_mobile.sim.render import render_frame
from robovlms_mobile.sim.scenarios import ALL_SCENARIOS, build_world, mirror, parse_scenario
from robovlms_mobile.task import ACTION_WORDS

SIZE = (72, 128)
# a recipe small enough for a test: a few scenes and worlds, tiny frames, a few steps
SMALL = dict(RECIPE, random_scenes=24, worlds_per_scenario=1, scenarios="default", poses_per_world=4,
             frame_size=[36, 64], steps=30, batch_size=8)
LEFT = tuple(sc for sc in ALL_SCENARIOS if sc.side == "left" and sc.distance == "medium")  # one per layout


def _poses(world) -> list[tuple[float, float]]:
    return [tuple(p) for p in expert_episode(world, SIZE, tail=1).trail]


@pytest.mark.parametrize("scenario", LEFT, ids=lambda sc: sc.tag)
def test_left_and_right_variants_at_one_pose_have_one_caption(scenario):
    """The two variants differ only in the instruction and where the bottle is: where the frames agree, so do the captions."""
    left, right = build_world(scenario, [1000, 0]), build_world(mirror(scenario), [1000, 0])
    assert left.instruction != right.instruction
    assert grounded_caption(left, *left.start, SIZE) == grounded_caption(right, *right.start, SIZE)  # the bottle hidden in both
    agree = 0
    for x, y in _poses(left) + _poses(right):
        a, b = grounded_caption(left, x, y, SIZE), grounded_caption(right, x, y, SIZE)
        if np.array_equal(render_frame(left, x, y, SIZE), render_frame(right, x, y, SIZE)):
            assert a == b
            agree += 1
        # the instruction, the side and the goal never enter: the same geometry told the other side has one caption
        assert a == grounded_caption(replace(left, side="right", instruction=right.instruction, goal=right.goal), x, y, SIZE)
    assert agree >= 2


def test_no_caption_contains_an_action_word():
    data = caption_frames(dict(SMALL, random_scenes=12, scenarios="all"))
    assert len(data["captions"]) == len(data["frames"]) > 100
    words = {w for c in data["captions"] for w in caption_words(c)}
    assert words and not words & ACTION_WORDS and words <= CAPTION_WORDS
    assert {"box", "bottle", "near", "far", "hidden"} <= words
    assert CAPTION_WORDS.isdisjoint(ACTION_WORDS)
    with pytest.raises(ValueError, match="'left' is an action word"):
        check_caption("<phrase> a red box</phrase> on the left.")


def test_captions_say_what_is_where():
    world = build_world(parse_scenario("1box_left_medium"), [1000, 0])
    start = grounded_caption(world, *world.start, SIZE)
    assert start.startswith("<phrase> a ") and " box</phrase><object><patch_index_" in start
    assert " the bottle is hidden. the floor is " in start  # hidden behind the box at the start
    goal = grounded_caption(world, *world.goal, SIZE)
    assert "bottle</phrase>" in goal and "near." in goal and " box</phrase>" not in goal  # passed it
    box = world.boxes[0]
    beside = visible_objects(scene_objects(world), box.x0 - 0.3, box.y1 + 0.35, SIZE)
    assert beside and beside[0][0] == 0 and beside[0][1][1] > SIZE[1] / 2  # passing on its +y side: the box in the image's right half


def test_boxes_occlusion_and_patch_tokens_are_exact():
    """Known answers: one box dead ahead fills the middle; a box behind a bigger one is not seen; tokens as Kosmos-2's processor."""
    near = SceneObject("box", (2.0, 0.0), (0.4, 1.0, 0.5), (190, 45, 40))
    behind = SceneObject("ball", (3.0, 0.0), (0.2, 0.2, 0.2), (40, 75, 190))
    seen = visible_objects((near, behind), 0.0, 0.0, SIZE)
    assert [s[0] for s in seen] == [0]
    r0, c0, r1, c1 = seen[0][1]
    assert (c0 + c1 + 1) / 2 == pytest.approx(SIZE[1] / 2) and seen[0][2] == pytest.approx(1.8)
    assert caption_objects((near, behind), 0.0, 0.0, SIZE) == f"<phrase> a red box</phrase>{patch_tokens(seen[0][1], SIZE)} far. the floor is grey."
    assert [s[0] for s in visible_objects((near, behind), 0.0, 2.3, SIZE)] == [0, 1]  # from the side both are seen, nearest first
    assert patch_tokens((0, 0, SIZE[0] - 1, SIZE[1] - 1), SIZE) == "<object><patch_index_0000><patch_index_1023></object>"
    assert caption_objects((), 0.0, 0.0, SIZE) == " no object in view. the floor is grey."


def test_cache_key_follows_the_recipe():
    assert cache_key(RECIPE) == cache_key(dict(RECIPE)) and cache_key(RECIPE) != cache_key(dict(RECIPE, steps=301))
    assert "prompt_template" not in RECIPE and "{instruction}" not in RECIPE["prompt"]  # the prompt carries no instruction


def test_pretraining_lowers_the_caption_loss_and_is_cached(tmp_path):
    path = pretrained_tiny_kosmos2(tmp_path, SMALL)
    record = json.loads((path / "pretrain.json").read_text())
    assert path.name == f"tiny-kosmos2-pretrained-{cache_key(SMALL)}" and record["cache_key"] == cache_key(SMALL)
    assert record["recipe"] == SMALL and record["data"]["frames"] > 100 and record["data"]["examples"]
    vocabulary = record["caption_vocabulary"]
    assert set(vocabulary["words"]) == CAPTION_WORDS and set(vocabulary["excluded_action_words"]) == ACTION_WORDS
    assert all(set(caption_words(c)) <= CAPTION_WORDS for c in record["data"]["examples"])
    assert record["caption_loss"]["last_10"] < record["caption_loss"]["first_10"] - 0.5
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert pretrained_tiny_kosmos2(tmp_path, SMALL) == path and (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no build folder left behind
