"""The VLA path can learn to read its instruction: the same frames, the label set by the instruction's side alone.

A known-answer check of the text -> action-token -> head path through the trainer's own
`training_step` (LoRA recipe of configs/tiny_cpu.json): a bug that hides the prompt from the action
token (an attention mask, a dropped instruction, the token inserted before the text) leaves the two
sides' outputs equal and fails it. Measured 2026-12-03 (docs/results.md §0d) with the demo's sizes:
the left-right gap of linear_y jumps from 0.00 to ~2 within 50-100 steps, on random and on real
first frames, for a random and a pretrained backbone alike; on the test fixtures' tiny model it is
0.0004 after 60 steps and passes 1.0 by 90.
"""

from __future__ import annotations

import torch
from einops import rearrange

from robovlms_mobile.data.format import instruction_for
from robovlms_mobile.data.prompt import encode_prompts
from robovlms_mobile.task import CHUNK, WINDOW
from robovlms_mobile.train.trainer import MobileVLATrainer

STEPS = 120  # the gap opens between 60 and 90 steps here (measured 2026-12-03): 120 leaves a margin
PAIRS = 2  # frame windows per batch, each with both instructions


def _side_gap(net, frames: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean linear_y(left) - linear_y(right) over every window position and chunk step; frames (PAIRS, W, 3, S, S) float."""
    net.eval()
    with torch.no_grad():
        out = net.forward_continuous(frames.repeat(2, 1, 1, 1, 1), ids.repeat_interleave(len(frames), 0),
                                     attention_mask=mask.repeat_interleave(len(frames), 0), mode="inference")
    net.train()
    pred = out[0] if isinstance(out, (tuple, list)) else out  # (2 * PAIRS, W, C, 2)
    return float(pred[: len(frames), ..., 1].mean() - pred[len(frames):, ..., 1].mean())


def test_the_instruction_alone_can_steer_the_action(tiny_config):
    torch.manual_seed(0)
    module = MobileVLATrainer(tiny_config)
    net = module.model
    size = tiny_config["image_size"]
    ids, mask = encode_prompts(net.tokenizer, [instruction_for(1, "left"), instruction_for(1, "right")])
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(PAIRS, WINDOW, 3, size, size, generator=gen)
    before = _side_gap(net, probe, ids, mask)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tiny_config["learning_rate"], weight_decay=0.01)
    actions = torch.zeros(2 * PAIRS, WINDOW + CHUNK - 1, 2)  # (B, W + C - 1, 2): forward at half speed, sideways by side
    actions[..., 0], actions[:PAIRS, :, 1], actions[PAIRS:, :, 1] = 0.5, 1.0, -1.0
    for step in range(STEPS):
        frames = torch.randn(PAIRS, WINDOW, 3, size, size, generator=gen).repeat(2, 1, 1, 1, 1)  # each window with both sides
        batch = {"rgb": frames, "text": ids.repeat_interleave(PAIRS, 0), "text_mask": mask.repeat_interleave(PAIRS, 0),
                 "action": actions, "action_chunck": rearrange(actions.unfold(1, CHUNK, 1), "b w d c -> b w c d"),
                 "chunck_mask": torch.ones(2 * PAIRS, WINDOW, CHUNK, dtype=torch.bool),
                 "raw_text": [instruction_for(1, s) for s in ("left", "right") for _ in range(PAIRS)]}
        out = module.training_step(batch, step)
        loss = out["loss"] if isinstance(out, dict) else out
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _side_gap(net, probe, ids, mask)
    assert abs(before) < 0.05, before  # untrained: the instruction barely moves the output
    assert after > 1.0, (before, after)  # trained: left drives +y, right -y, on frames it never saw
