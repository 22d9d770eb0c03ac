"""Kosmos-2 at its published size (microsoft/kosmos-2-patch14-224), random weights, built offline.

The architecture numbers come from the shipped `kosmos2_config.json` (the published config.json);
the tokenizer is built as the tiny one is (model/tiny_kosmos.py) but padded to Kosmos-2's
65037-entry vocabulary, so the embedding table and LM head have their real size. The folder is
written with `save_pretrained` (safetensors shards) and then loaded by upstream's own
`from_pretrained` path, exactly as the real weights would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPImageProcessor, Kosmos2Config, Kosmos2ForConditionalGeneration, Kosmos2Processor

from robovlms_mobile.model.tiny_kosmos import CLIP_MEAN, CLIP_STD, build_tokenizer

__all__ = ["PUBLISHED_CONFIG", "published_kosmos2_config", "build_random_kosmos2"]

PUBLISHED_CONFIG = Path(__file__).with_name("kosmos2_config.json")
PROCESSOR_ADDED_TOKENS = 11 + 1024  # Kosmos2Processor: grounding/tag tokens + <patch_index_0000..1023>
MARKER = "rehearsal.json"  # written last: a folder without it is incomplete and rebuilt


def published_kosmos2_config() -> Kosmos2Config:
    """The microsoft/kosmos-2-patch14-224 architecture (1.66 B parameters) from the shipped config.json."""
    return Kosmos2Config(**json.loads(PUBLISHED_CONFIG.read_text()))


def build_random_kosmos2(out_dir: Path, *, seed: int = 0, max_shard_size: str = "1GB") -> Path:
    """Write a seeded random full-size Kosmos-2 + processor to `out_dir` (reused when already complete)."""
    out_dir = Path(out_dir)
    config = published_kosmos2_config()
    stamp = {"seed": seed, "architecture": json.loads(PUBLISHED_CONFIG.read_text())}
    marker = out_dir / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return out_dir
        except json.JSONDecodeError:
            pass
    image = config.vision_config.image_size
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"height": image, "width": image}, resample=3, do_center_crop=False,
        crop_size={"height": image, "width": image}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    vocab = config.text_config.vocab_size
    processor = Kosmos2Processor(image_processor, build_tokenizer(out_dir, vocab_size=vocab - PROCESSOR_ADDED_TOKENS))
    if len(processor.tokenizer) != vocab:
        raise RuntimeError(f"tokenizer has {len(processor.tokenizer)} entries, the published vocab_size is {vocab}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Kosmos2ForConditionalGeneration(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size=max_shard_size)
    del model
    processor.save_pretrained(out_dir)
    marker.write_text(json.dumps(stamp))
    return out_dir
