"""What did pretraining teach the tiny Kosmos-2? Its grounded captions of held-out frames, teacher forced.

Frames of held-out task worlds (seeds ``[world_seed, k]``, the evaluation's by default) from random
collision-free poses, each with its caption (model/grounding.py). The model reads
``<s> [image] prompt caption`` and at every caption position its greedy next token is compared with
the caption's: ``word_accuracy`` over plain-word tokens, ``location_accuracy`` over the patch-index
tokens, ``location_error_patches`` the mean grid distance (rows + columns, 32x32) of a wrong location
guess (0 when every location is right). A random backbone scores near 0 on locations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def caption_probe(model_dir: str | Path, world_seed: int = 1000, worlds: int = 1, poses: int = 6,
                  frame_size: tuple[int, int] = (72, 128), image_size: int = 224, prompt: str = "<grounding>An image of",
                  seed: int = 0) -> dict[str, Any]:
    """Teacher-forced token accuracies of the captions of held-out frames (see the module docstring)."""
    from transformers import Kosmos2ForConditionalGeneration, Kosmos2Processor

    from robovlms_mobile.data.transforms import preprocess_frames
    from robovlms_mobile.model.grounding import GRID, grounded_caption, location_token_names
    from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch
    from robovlms_mobile.model.pretrain import encode_captions, image_tokens
    from robovlms_mobile.model.scenes import random_poses
    from robovlms_mobile.sim.render import render_frame
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, build_world

    ensure_kosmos2_patch()
    tok = Kosmos2Processor.from_pretrained(model_dir).tokenizer
    model = Kosmos2ForConditionalGeneration.from_pretrained(model_dir).eval()
    patch_ids = {tok.convert_tokens_to_ids(name): i for i, name in enumerate(location_token_names())}
    rng = np.random.default_rng(seed)
    frames, captions = [], []
    for k in range(worlds):
        for sc in DEFAULT_SCENARIOS:
            world = build_world(sc, [world_seed, k])
            for x, y in random_poses(world, rng, poses):
                frames.append(render_frame(world, x, y, frame_size))
                captions.append(grounded_caption(world, x, y, frame_size))
    ids, mask, labels = encode_captions(tok, captions, prompt)
    image = image_tokens(model, preprocess_frames(np.stack(frames), image_size))  # (N, n, D)
    embed = model.text_model.model.embed_tokens(ids)
    merged = torch.cat([embed[:, :1], image, embed[:, 1:]], dim=1)
    full_mask = torch.cat([mask[:, :1], torch.ones(image.shape[:2], dtype=mask.dtype), mask[:, 1:]], dim=1)
    logits = model(input_ids=None, inputs_embeds=merged, attention_mask=full_mask).logits[:, image.shape[1]:]  # text positions
    guess, want = logits[:, :-1].argmax(-1), labels[:, 1:]  # (N, L - 1)
    valid = want != -100
    is_patch = torch.tensor([[int(t) in patch_ids for t in row] for row in want.tolist()]) & valid
    words = valid & ~is_patch
    dist = [abs(patch_ids[g] // GRID - patch_ids[w] // GRID) + abs(patch_ids[g] % GRID - patch_ids[w] % GRID)
            for g, w in zip(guess[is_patch].tolist(), want[is_patch].tolist()) if g in patch_ids and g != w]
    return {"frames": len(frames), "caption_tokens": int(valid.sum()),
            "word_accuracy": float((guess == want)[words].float().mean()),
            "location_accuracy": float((guess == want)[is_patch].float().mean()),
            "location_error_patches": float(np.mean(dist)) if dist else 0.0,
            "location_guessed_a_location": float(np.mean([int(g) in patch_ids for g in guess[is_patch].tolist()]))}
