"""Pretraining stage of the tiny Kosmos-2: grounded caption language modelling on simulator frames.

The real Kosmos-2 arrives knowing what is in an image and where, and nothing about this robot's
actions; a random tiny one knows nothing, so LoRA has nothing to adapt. This stage teaches the tiny
one what frames show, offline and in a couple of minutes: frames of varied random scenes
(model/scenes.py: 1-4 boxes, a bottle, every surface colour random) and of the task's own worlds
(seeds ``[world_seed, k]``, disjoint from the demo data ``[0, k]`` and the evaluation worlds
``[1000, k]``), each seen from camera poses drawn uniformly over the free floor (never an expert's
route), each with its grounded caption (model/grounding.py: objects, their image boxes in
Kosmos-2's location tokens, near/far, the bottle hidden or not, the floor's colour). The captions
are a function of the rendered geometry alone: no instruction, no expert, no future; the prompt is
Kosmos-2's own ``<grounding>An image of`` with no instruction in it. Trained with next-token loss on
the caption in the policy's layout ``<s> [image tokens] prompt caption </s>``.

The result is cached by content: the folder name is a hash of the recipe and of the code that
makes it (this module, the captioner, the scenes, the tiny model, the simulator, the preprocessing,
library versions), so it is built once and reused by ``make demo``, the tests and the learning
check. ``pretrain.json`` beside the weights records the recipe, the caption vocabulary, the data
and the losses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

RECIPE: dict[str, Any] = {
    "version": 4,  # v1/v2 captioned the expert's next key press and the instructed side; v3 only what the frame shows;
    # v4: a tower that can see where (16-px patches, 64 wide), grid-coded location tokens, more frames
    "seed": 0,
    "captions": "geometry only: seen objects with colour, Kosmos-2 box, near/far; bottle hidden; floor colour",
    "random_scenes": 1000,  # model/scenes.py: random boxes, bottle, colours (v3: 150, too few to learn where)
    "poses_per_scene": 4,
    "world_seed": 500,  # the task's worlds [500, k]: not the demo's [0, k], not the evaluation's [1000, k]
    "worlds_per_scenario": 3,
    "scenarios": "default",  # the in-distribution ones (1 box, 2 boxes side by side): the OOD layout stays unseen
    "poses_per_world": 8,
    "frame_size": [72, 128],  # as the demo's episodes and closed loop (resized to image_size anyway)
    "image_size": 224,
    "vision": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128, "patch": 16},  # 14x14 patches
    "location_init": "sincos2d",  # model/tiny_kosmos.py: neighbouring grid cells start with similar embeddings
    "location_loss_weight": 1.0,  # weight of the location tokens in the caption loss (words weigh 1)
    "steps": 1000,
    "batch_size": 24,
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "prompt": "<grounding>An image of",  # Kosmos-2's grounded-caption prompt: no instruction
}
CODE_FILES = ("model/pretrain.py", "model/grounding.py", "model/scenes.py", "model/tiny_kosmos.py", "sim/render.py",
              "sim/scenarios.py", "sim/world.py", "data/transforms.py", "task.py")
RECORD = "pretrain.json"
STAMP = ".robovlms-cache.json"  # written by build_cached into each folder it builds: what it was built as
BUILD_PREFIX = ".robovlms-build-"  # temporary build folders: only this tool writes names starting so


def code_version(files: tuple[str, ...] = CODE_FILES) -> str:
    """Hash of `files` (package-relative) and the library versions that determine what is built from them."""
    import tokenizers
    import transformers

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    h.update(f"torch {torch.__version__} transformers {transformers.__version__} tokenizers {tokenizers.__version__}".encode())
    return h.hexdigest()[:16]


def cache_key(recipe: dict[str, Any], files: tuple[str, ...] = CODE_FILES) -> str:
    """Content key of something built from `recipe` by the code in `files`: recipe + code version."""
    blob = json.dumps(recipe, sort_keys=True) + code_version(files)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _built_here(target: Path, done: str) -> bool:
    """True when `target` is a real folder (no link) that build_cached built under this name and finished."""
    if target.is_symlink() or not target.is_dir() or (target / done).is_symlink() or not (target / done).is_file():
        return False
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("key") == target.name and stamp.get("done") == done


def build_cached(target: Path, build: Callable[[Path], Any], done: str) -> Path:
    """`target` from the cache when build_cached built it (its stamp names `target` and `done` exists), else `build(tmp)`
    in a temporary folder beside it renamed to `target` atomically (a killed or concurrent build never leaves half a
    folder under the key). Something else found under the key (a link, a folder without the stamp) is never read or
    deleted: it is moved aside with a notice."""
    if _built_here(target, done):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        aside = target.with_name(f"{target.name}.untrusted-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.rename(target, aside)  # renames a link itself, never its target
        print(f"robovlms-mobile: notice: cache entry {target} was not built by this tool (or is unfinished); moved "
              f"aside to {aside.name} and rebuilt", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=target.parent))
    try:
        build(tmp)
        (tmp / STAMP).write_text(json.dumps({"key": target.name, "done": done}))
        try:
            os.replace(tmp, target)
        except OSError:
            if not _built_here(target, done):  # a concurrent build finished first: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_cache_root() -> Path:
    """`$ROBOVLMS_MOBILE_CACHE`, else `.cache/robovlms-mobile` under the working directory."""
    return Path(os.environ.get("ROBOVLMS_MOBILE_CACHE", Path.cwd() / ".cache" / "robovlms-mobile"))


def caption_frames(recipe: dict[str, Any]) -> dict[str, Any]:
    """Frames (N, H, W, 3) uint8 and their grounded captions: random scenes, then the task's worlds, random poses."""
    from robovlms_mobile.model.grounding import check_caption, grounded_caption
    from robovlms_mobile.model.scenes import random_poses, random_scene
    from robovlms_mobile.sim.render import render_frame
    from robovlms_mobile.sim.scenarios import ALL_SCENARIOS, DEFAULT_SCENARIOS, build_world

    size = tuple(recipe["frame_size"])
    rng = np.random.default_rng([recipe["seed"], 1])
    views = [(random_scene(rng), recipe["poses_per_scene"]) for _ in range(recipe["random_scenes"])]
    scenarios = ALL_SCENARIOS if recipe["scenarios"] == "all" else DEFAULT_SCENARIOS
    views += [(build_world(sc, [recipe["world_seed"], k]), recipe["poses_per_world"])
              for k in range(recipe["worlds_per_scenario"]) for sc in scenarios]
    frames, captions = [], []
    for world, n in views:
        for x, y in random_poses(world, rng, n):
            frames.append(render_frame(world, x, y, size))
            captions.append(check_caption(grounded_caption(world, x, y, size)))
    return {"frames": np.stack(frames), "captions": captions, "scenes": len(views)}


def caption_vocabulary() -> dict[str, Any]:
    """What a caption may say (recorded with the model): its words, colours, object nouns, grid, format."""
    from robovlms_mobile.model import grounding
    from robovlms_mobile.task import ACTION_WORDS

    return {"words": sorted(grounding.CAPTION_WORDS), "colours": grounding.COLOURS, "kinds": list(grounding.KINDS),
            "location_tokens": f"<patch_index_0000>..<patch_index_{grounding.GRID ** 2 - 1:04d}> on a {grounding.GRID}x{grounding.GRID} grid",
            "near_m": grounding.NEAR_M, "excluded_action_words": sorted(ACTION_WORDS),
            "format": "<phrase> a {colour} {kind}</phrase><object><patch_index_TL><patch_index_BR></object> near|far. "
                      "... [the bottle is hidden.] the floor is {colour}."}


def image_tokens(backbone: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) -> (B, latent, D) image tokens, as RoboKosMos.model_encode_images computes them."""
    hidden = backbone.vision_model(pixel_values=pixels)[0]
    hidden = F.normalize(backbone.vision_model.model.post_layernorm(hidden), dim=-1)
    return backbone.image_to_text_projection(hidden)[0]


def encode_captions(tokenizer: Any, captions: list[str], prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, labels (B, L): loss on the caption and </s>, not on the prompt."""
    prompt_ids = tokenizer(prompt)["input_ids"][:-1]  # without </s>
    ids, labels = [], []
    for caption in captions:
        full = tokenizer(prompt + caption)["input_ids"]
        if full[: len(prompt_ids)] != prompt_ids:
            raise ValueError(f"caption {caption!r} changes the prompt's tokens")
        ids.append(full)
        labels.append([-100] * len(prompt_ids) + full[len(prompt_ids):])
    n = max(map(len, ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([s + [pad] * (n - len(s)) for s in ids])
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in ids])
    target = torch.tensor([s + [-100] * (n - len(s)) for s in labels])
    return input_ids, mask, target


def caption_loss(backbone: torch.nn.Module, pixels: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor,
                 labels: torch.Tensor, location_ids: torch.Tensor | None = None, location_weight: float = 1.0) -> torch.Tensor:
    """Next-token loss on the caption, image tokens inserted after <s> as the policy does; targets among
    `location_ids` weigh `location_weight` (a weighted mean over the caption's tokens)."""
    embed = backbone.text_model.model.embed_tokens(input_ids)  # (B, L, D)
    image = image_tokens(backbone, pixels)  # (B, n, D)
    merged = torch.cat([embed[:, :1], image, embed[:, 1:]], dim=1)
    full_mask = torch.cat([mask[:, :1], torch.ones(image.shape[:2], dtype=mask.dtype), mask[:, 1:]], dim=1)
    full_labels = torch.cat([labels[:, :1], torch.full(image.shape[:2], -100), labels[:, 1:]], dim=1)
    logits = backbone(input_ids=None, inputs_embeds=merged, attention_mask=full_mask).logits
    target = full_labels[:, 1:].flatten()
    if location_ids is None or location_weight == 1.0:
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), target)
    per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1), target, reduction="none")
    valid = target != -100
    weight = torch.where(torch.isin(target, location_ids), location_weight, 1.0) * valid
    return (per_token * weight).sum() / weight.sum()


def pretrain(out_dir: Path, recipe: dict[str, Any] | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Build the random tiny Kosmos-2 in ``out_dir``, pretrain it on grounded captions, save it and its record."""
    from transformers import Kosmos2ForConditionalGeneration, Kosmos2Processor

    from robovlms_mobile.data.transforms import normalise_frames, resize_frames
    from robovlms_mobile.model.grounding import location_token_names
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2
    from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch

    recipe = dict(RECIPE if recipe is None else recipe)
    ensure_kosmos2_patch()
    t0 = time.perf_counter()
    build_tiny_kosmos2(out_dir, seed=recipe["seed"], image_size=recipe["image_size"], vision=recipe.get("vision"),
                       location_init=recipe.get("location_init", "random"))
    data = caption_frames(recipe)
    t_data = time.perf_counter() - t0
    frames = resize_frames(data["frames"], recipe["image_size"])  # (N, S, S, 3) uint8
    tokenizer = Kosmos2Processor.from_pretrained(out_dir).tokenizer
    input_ids, mask, labels = encode_captions(tokenizer, data["captions"], recipe["prompt"])
    location_ids = torch.tensor(tokenizer.convert_tokens_to_ids(location_token_names()))
    backbone = Kosmos2ForConditionalGeneration.from_pretrained(out_dir).train()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    losses = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe["seed"])
            gen = torch.Generator().manual_seed(recipe["seed"])
            opt = torch.optim.AdamW(backbone.parameters(), lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"])
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["learning_rate"], total_steps=recipe["steps"], pct_start=0.1)
            n = len(frames)
            for step in range(recipe["steps"]):
                idx = torch.randint(0, n, (recipe["batch_size"],), generator=gen)
                ids_b, mask_b, lab_b = input_ids[idx], mask[idx], labels[idx]
                width = int(mask_b.sum(1).max())
                loss = caption_loss(backbone, normalise_frames(frames[idx]), ids_b[:, :width], mask_b[:, :width],
                                    lab_b[:, :width], location_ids, recipe.get("location_loss_weight", 1.0))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(backbone.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(loss.item())
                if progress and (step % 50 == 0 or step == recipe["steps"] - 1):
                    print(f"  pretrain step {step:4d}  caption loss {loss.item():.3f}", flush=True)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    backbone.eval().save_pretrained(out_dir, safe_serialization=True)
    record = {
        "recipe": recipe, "code_version": code_version(), "cache_key": cache_key(recipe),
        "caption_vocabulary": caption_vocabulary(),
        "data": {"frames": len(frames), "scenes": data["scenes"], "captions_distinct": len(set(data["captions"])),
                 "worlds": f"{recipe['random_scenes']} random scenes x {recipe['poses_per_scene']} poses; task seeds "
                           f"[{recipe['world_seed']}, 0..{recipe['worlds_per_scenario'] - 1}] x {recipe['scenarios']} scenarios "
                           f"x {recipe['poses_per_world']} poses",
                 "examples": data["captions"][:: max(1, len(frames) // 6)]},
        "caption_loss": {"first_10": float(np.mean(losses[:10])), "last_10": float(np.mean(losses[-10:]))},
        "seconds": {"data": round(t_data, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    (Path(out_dir) / RECORD).write_text(json.dumps(record, indent=2))
    return record


def pretrained_tiny_kosmos2(cache_root: str | Path | None = None, recipe: dict[str, Any] | None = None, *,
                            progress: bool = False) -> Path:
    """The pretrained tiny Kosmos-2 folder for ``recipe``: from the content-keyed cache, built there when absent."""
    recipe = dict(RECIPE if recipe is None else recipe)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / f"tiny-kosmos2-pretrained-{cache_key(recipe)}"
    return build_cached(target, lambda tmp: pretrain(tmp, recipe, progress=progress), RECORD)
