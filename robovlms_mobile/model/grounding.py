"""Grounded captions of simulator frames: what the frame shows and where, in Kosmos-2's grounding tokens.

A caption is a function of the rendered geometry alone: the scene's objects (a plain list of
`SceneObject`: kind, position, size, colour), the camera pose and the frame size. Nothing from the
instruction, the expert or the episode's future enters, and no word of `task.ACTION_WORDS` appears.
Each object the camera sees (ray cast with the renderer's own camera, nearest hit wins, so occlusion
is exact) is named with its colour and its image box as Kosmos-2 patch-index tokens on a 32x32
grid (transformers' `coordinate_to_patch_index`), then near / far; the bottle, always in the scene,
is "hidden" when no pixel of it is seen; the floor's colour closes the caption:
``<phrase> a brown box</phrase><object><patch_index_0390><patch_index_0629></object> near. the bottle is hidden. the floor is grey.``
Objects are listed nearest first (ties by image column), so the order too comes from the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robovlms_mobile.sim.render import BOTTLE_BODY, _box_hit, _rays
from robovlms_mobile.task import ACTION_WORDS

GRID = 32  # Kosmos-2 patch-index grid (1024 <patch_index_XXXX> tokens)
NEAR_M = 1.2  # an object whose front face is closer than this (along the view axis) is "near"
MIN_PIXELS = 4  # fewer visible pixels than this: not seen
TARGET_KIND = "bottle"  # always in the scene: said "hidden" when unseen; other kinds are only named when seen
# named colours: an object's or the floor's RGB is called by the nearest of these
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (190, 45, 40), "orange": (225, 125, 35), "yellow": (215, 200, 60), "green": (45, 160, 70),
    "blue": (40, 75, 190), "purple": (125, 55, 155), "brown": (145, 95, 50), "grey": (135, 135, 140),
    "white": (230, 230, 225), "black": (35, 35, 38)}
KINDS = ("box", "bottle", "block", "ball", "cone", "cylinder", "crate", "chair", "can")  # object nouns a caption may use
KIND_NOUNS = {"distractor": "block"}  # the simulator's object kinds that are not nouns
CAPTION_WORDS: frozenset[str] = frozenset(
    {"a", "the", "is", "near", "far", "hidden", "floor", "no", "object", "in", "view"} | set(COLOURS) | set(KINDS))


@dataclass(frozen=True)
class SceneObject:
    """One object on the floor as the captioner sees it: an axis-aligned block standing on z = 0."""

    kind: str  # a noun of KINDS
    position: tuple[float, float]  # (x, y) centre on the floor, m
    size: tuple[float, float, float]  # (depth along x, width along y, height), m
    colour: tuple[float, float, float]  # RGB 0..255 of its main face


def scene_objects(world: Any) -> tuple[SceneObject, ...]:
    """The world's objects (`World.objects()`: kind, position, size, colour), else its boxes and bottle; the bottle as its body."""
    r, body = BOTTLE_BODY  # the thin neck above the body is not a block: a caption never claims more than is drawn
    listed = world.objects() if callable(getattr(world, "objects", None)) else None
    if listed is not None:
        out = []
        for o in listed:
            kind, size = KIND_NOUNS.get(o["kind"], o["kind"]), tuple(o["size"])
            if kind == TARGET_KIND:
                size = (2 * r, 2 * r, body)
            out.append(SceneObject(kind, tuple(o["position"]), size, tuple(o["colour"])))
        return tuple(out)
    pal = world.palette
    boxes = tuple(SceneObject("box", b.center, (b.x1 - b.x0, b.y1 - b.y0, b.h), tuple(pal.get("box", COLOURS["brown"])))
                  for b in world.boxes)
    bottle = SceneObject(TARGET_KIND, tuple(world.target), (2 * r, 2 * r, body), tuple(pal.get("bottle", COLOURS["green"])))
    return boxes + (bottle,)


def colour_name(rgb: Any) -> str:
    """The nearest named colour of an RGB triple (0..255)."""
    rgb = np.asarray(rgb, np.float64)[:3]
    return min(COLOURS, key=lambda n: float(np.sum((np.asarray(COLOURS[n], np.float64) - rgb) ** 2)))


def visible_objects(objects: tuple[SceneObject, ...], x: float, y: float, size: tuple[int, int]) -> list[tuple[int, tuple[int, int, int, int], float]]:
    """(index, pixel box (r0, c0, r1, c1) inclusive, depth of its front) of each object seen from (x, y), nearest first."""
    h, w = size
    if not objects:
        return []
    a, b = _rays(h, w)
    hits = []
    for o in objects:
        (cx, cy), (dx, dy, dz) = o.position, o.size
        hits.append(_box_hit(cx - dx / 2, cx + dx / 2, cy - dy / 2, cy + dy / 2, 0.0, dz, x, y, a, b)[0])
    depth = np.stack(hits)  # (n, H, W), inf where the ray misses
    nearest = np.where(np.isfinite(depth.min(0)), depth.argmin(0), -1)  # (H, W) object index seen at each pixel
    seen = []
    for i, o in enumerate(objects):
        rows, cols = np.nonzero(nearest == i)
        if len(rows) >= MIN_PIXELS:
            front = o.position[0] - o.size[0] / 2 - x
            seen.append((i, (int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())), float(front)))
    return sorted(seen, key=lambda s: (round(s[2], 6), (s[1][1] + s[1][3]) / 2))


def location_token_names(grid: int = GRID) -> list[str]:
    """The grid's Kosmos-2 location tokens, `<patch_index_0000>` ... in cell order (row-major)."""
    return [f"<patch_index_{i:04d}>" for i in range(grid * grid)]


def patch_tokens(bbox: tuple[int, int, int, int], size: tuple[int, int]) -> str:
    """Kosmos-2 location tokens of an inclusive pixel box (r0, c0, r1, c1), as its processor writes them."""
    from transformers.models.kosmos2.processing_kosmos2 import coordinate_to_patch_index

    h, w = size
    r0, c0, r1, c1 = bbox
    tl, br = coordinate_to_patch_index((c0 / w, r0 / h, (c1 + 1) / w, (r1 + 1) / h), GRID)
    return f"<object><patch_index_{tl:04d}><patch_index_{br:04d}></object>"


def caption_objects(objects: tuple[SceneObject, ...], x: float, y: float, size: tuple[int, int],
                    floor: Any = COLOURS["grey"]) -> str:
    """The caption of the frame seen from (x, y): every seen object with its box, near/far; the bottle hidden or not."""
    parts = []
    seen = visible_objects(objects, x, y, size)
    for i, bbox, front in seen:
        o = objects[i]
        parts.append(f"<phrase> a {colour_name(o.colour)} {o.kind}</phrase>{patch_tokens(bbox, size)} "
                     f"{'near' if front < NEAR_M else 'far'}.")
    if not seen:
        parts.append(" no object in view.")
    seen_kinds = {objects[i].kind for i, _, _ in seen}
    if any(o.kind == TARGET_KIND for o in objects) and TARGET_KIND not in seen_kinds:
        parts.append(f" the {TARGET_KIND} is hidden.")
    parts.append(f" the floor is {colour_name(floor)}.")
    return "".join(parts)


def grounded_caption(world: Any, x: float, y: float, size: tuple[int, int]) -> str:
    """The caption of `world`'s frame from (x, y): `caption_objects` of its object list and floor colour."""
    return caption_objects(scene_objects(world), x, y, size, world.palette.get("floor", COLOURS["grey"]))


def caption_words(caption: str) -> list[str]:
    """The plain words of a caption (grounding tags and location tokens removed), lower case."""
    import re

    text = re.sub(r"<[^>]*>", " ", caption)
    return re.findall(r"[a-z]+", text.lower())


def check_caption(caption: str) -> str:
    """`caption` when every word is in CAPTION_WORDS and none in ACTION_WORDS; else ValueError naming the word."""
    words = caption_words(caption)
    for word in words:
        if word in ACTION_WORDS:
            raise ValueError(f"caption {caption!r}: {word!r} is an action word (task.ACTION_WORDS)")
    for word in words:
        if word not in CAPTION_WORDS:
            raise ValueError(f"caption {caption!r}: {word!r} is outside CAPTION_WORDS")
    return caption
