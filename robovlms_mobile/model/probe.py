"""Does the pretrained tiny Kosmos-2 read the instruction? Its next-move prediction on held-out worlds.

For every frame of the scripted expert's run in held-out worlds, the model reads
``<s> [image] prompt`` and its greedy next word is compared with the instructed side
(`side_word_accuracy`), then ``... <side> side; next move:`` and its greedy continuation with the
expert's move.
`side_accuracy` counts only the frames where the bottle is hidden and the move is sideways: there
the image is the same for both sides, so only the instruction tells left from right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


@torch.no_grad()
def move_probe(model_dir: str | Path, world_seed: int = 1000, worlds: int = 1, frame_size: tuple[int, int] = (72, 128),
               image_size: int = 224, template: str = "<grounding>An image of a robot {instruction}") -> dict[str, Any]:
    """Greedy next-move accuracy over all frames, and over the side-only frames (hidden bottle, sideways move)."""
    from transformers import Kosmos2ForConditionalGeneration, Kosmos2Processor

    from robovlms_mobile.data.prompt import format_prompt
    from robovlms_mobile.data.transforms import preprocess_frames
    from robovlms_mobile.model.grounding import bottle_visible, move_words
    from robovlms_mobile.model.pretrain import image_tokens
    from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch
    from robovlms_mobile.sim.expert import expert_episode
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, build_world

    ensure_kosmos2_patch()
    tok = Kosmos2Processor.from_pretrained(model_dir).tokenizer
    model = Kosmos2ForConditionalGeneration.from_pretrained(model_dir).eval()
    right = total = side_right = side_total = side_word = 0
    for k in range(worlds):
        for sc in DEFAULT_SCENARIOS:
            world = build_world(sc, [world_seed, k])
            ep = expert_episode(world, frame_size, tail=1)
            image = image_tokens(model, preprocess_frames(ep.images, image_size))  # (T, n, D)
            prompt = tok(format_prompt(world.instruction, template))["input_ids"][:-1]
            ids = tok(format_prompt(world.instruction, template) + f" {world.side} side; next move:")["input_ids"][:-1]
            for i in range(1, len(ep.images)):
                embed = model.text_model.model.embed_tokens(torch.tensor([prompt]))
                merged = torch.cat([embed[:, :1], image[i : i + 1], embed[:, 1:]], dim=1)
                word = tok.decode([int(model(input_ids=None, inputs_embeds=merged).logits[0, -1].argmax())]).strip()
                side_word += word == world.side
                want = move_words(ep.actions[i, :2])
                seq = list(ids)
                for _ in range(3):
                    embed = model.text_model.model.embed_tokens(torch.tensor([seq]))
                    merged = torch.cat([embed[:, :1], image[i : i + 1], embed[:, 1:]], dim=1)
                    seq.append(int(model(input_ids=None, inputs_embeds=merged).logits[0, -1].argmax()))
                got = tok.decode(seq[len(ids):]).replace(".", " .").split(" .")[0].strip()
                ok = got == want
                right, total = right + ok, total + 1
                if "left" in want or "right" in want:
                    x, y = ep.trail[i]
                    if not bottle_visible(world, x, y, frame_size):
                        side_right, side_total = side_right + ok, side_total + 1
    return {"frames": total, "side_word_accuracy": side_word / max(total, 1), "move_accuracy": right / max(total, 1),
            "side_frames": side_total,
            "side_accuracy": side_right / max(side_total, 1)}
