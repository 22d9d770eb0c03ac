"""Offline, randomly initialised tiny Kosmos-2 (model + processor) for tests and smoke runs.

Nothing is downloaded: the tokenizer is trained on a built-in navigation corpus with the
``tokenizers`` library in XLM-R's id layout, and the model is a seeded random
``Kosmos2ForConditionalGeneration`` whose text vocab covers the tokens ``Kosmos2Processor`` adds.
"""

from __future__ import annotations

import itertools
import json
import math
import string
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessor,
    Kosmos2Config,
    Kosmos2ForConditionalGeneration,
    Kosmos2Processor,
    XLMRobertaTokenizerFast,
)

__all__ = ["build_tokenizer", "build_tiny_kosmos2", "count_parameters_on_meta"]

TINY_VOCAB_TARGET = 1000  # BPE stops earlier (~630) once every corpus word is a single token
TINY_MAX_POSITIONS = 512
TINY_EMBED = 64  # text width of the tiny model
# Kosmos2Processor.__call__ defaults to num_image_tokens=64, so latent_query_num must match it
# for the processor output to be usable without passing num_image_tokens explicitly.
LATENT_QUERY_NUM = 64
TINY_VISION = {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "patch": 32}  # the random tiny tower of tests
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3 as in XLM-R; "<mask>" is appended last
_VERBS = ("go move turn drive navigate walk head stop rotate follow approach pass avoid reach find come wait "
          "return enter exit").split()
_WHERE = ["left", "right", "forward", "straight ahead", "backward", "around", "past", "toward", "behind", "between",
          "into", "out of", "along", "across", "next to", "in front of", "away from", "to the left of",
          "to the right of", "through"]
_OBJECTS = ("box bottle chair table door wall person cone ball robot cup shelf plant bag corridor room kitchen desk "
            "sofa bin obstacle window stairs hallway car tree bench sign trash can doorway cabinet bed laptop "
            "monitor keyboard backpack umbrella").split()
_ADJ = "red blue green yellow black white small large big open closed nearest second first last".split()
_TAILS = ["and stop", "then stop", "and turn left", "and turn right", "slowly", "quickly", "carefully",
          "until you see it", "without hitting anything", "on the left", "on the right", "and wait there",
          "two meters", "three steps", "one meter", "90 degrees", "45 degrees"]
_GENERIC = ["An image of a robot", "A photo of a mobile robot in an indoor scene",
            "What action should the robot take next?", "go around the box on the left and stop in front of the bottle",
            "The robot is moving; the camera shows the floor, a person and some furniture.",
            "Please navigate to the goal. It is 5 m away, at 12 o'clock. Pick up the cup and put it down here.",
            "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 (x, y) = [0.5, -1.25]",
            string.ascii_letters, string.digits + string.punctuation]


def _corpus():
    for i, (verb, where, adj, obj) in enumerate(itertools.product(_VERBS, _WHERE, _ADJ, _OBJECTS)):
        if i % 5 == 0:
            yield f"{verb} {where} the {adj} {obj} {_TAILS[i % len(_TAILS)]}"
    yield from _GENERIC


def build_tokenizer(out_dir: Path, vocab_size: int | None = None) -> XLMRobertaTokenizerFast:
    """Train a deterministic BPE tokenizer in XLM-R id layout, save it to ``out_dir`` and return it.

    ``vocab_size`` (including ``<mask>``) pads the trained vocabulary with reserved pieces
    ``<reserved_i>`` up to that size, for a full-size embedding table (Kosmos-2: 64002 + the
    processor's 1035 tags); by default the vocabulary is what the corpus trains (~630).
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" {2,}", " ")
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = list(string.ascii_letters + string.digits + string.punctuation)
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB_TARGET, special_tokens=_SPECIALS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    spec = json.loads(tok.to_str())  # put <mask> into the model vocab as the last id, like XLM-R
    vocab = spec["model"]["vocab"]
    if vocab_size is not None:
        if vocab_size < len(vocab) + 1:
            raise ValueError(f"vocab_size {vocab_size} is below the trained vocabulary ({len(vocab) + 1} with <mask>)")
        vocab.update({f"<reserved_{i}>": len(vocab) + i for i in range(vocab_size - 1 - len(vocab))})
    vocab["<mask>"] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=TINY_MAX_POSITIONS)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _kosmos2_config(*, vocab: int, embed: int, layers: int, heads: int, ffn: int, max_pos: int, v_hidden: int,
                    v_layers: int, v_heads: int, v_inter: int, patch: int, image: int, latent: int) -> Kosmos2Config:
    text = dict(vocab_size=vocab, embed_dim=embed, layers=layers, attention_heads=heads, ffn_dim=ffn,
                max_position_embeddings=max_pos, activation_function="gelu", dropout=0.1, attention_dropout=0.1,
                activation_dropout=0.0, layerdrop=0.0, layer_norm_eps=1e-5, scale_embedding=True, use_cache=True,
                bos_token_id=0, pad_token_id=1, eos_token_id=2)
    vision = dict(hidden_size=v_hidden, num_hidden_layers=v_layers, num_attention_heads=v_heads,
                  intermediate_size=v_inter, patch_size=patch, image_size=image, num_channels=3,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    return Kosmos2Config(text_config=text, vision_config=vision, latent_query_num=latent,
                         architectures=["Kosmos2ForConditionalGeneration"])


def _grid_code_init(model: Kosmos2ForConditionalGeneration, tokenizer, std: float) -> None:
    """Set each <patch_index_i> embedding to a 2-D sine code of its cell (row, col), at the table's per-entry std."""
    from robovlms_mobile.model.grounding import GRID as grid, location_token_names

    ids = tokenizer.convert_tokens_to_ids(location_token_names(grid))
    d = TINY_EMBED // 4
    wavelength = torch.logspace(math.log10(4.0 * grid), math.log10(3.0), d)
    cell = torch.arange(grid * grid)
    row = (cell // grid).float()[:, None] * 2 * torch.pi / wavelength  # (1024, d) phases, wavelengths 4*grid..3 cells
    col = (cell % grid).float()[:, None] * 2 * torch.pi / wavelength
    code = torch.cat([row.sin(), row.cos(), col.sin(), col.cos()], dim=1)  # (1024, TINY_EMBED)
    code = code / code.std() * std
    model.text_model.model.embed_tokens.weight.data[torch.tensor(ids)] = code


def count_parameters_on_meta(config: Kosmos2Config) -> int:
    """Count the parameters of ``Kosmos2ForConditionalGeneration(config)`` built on the meta device (no memory)."""
    with torch.device("meta"):
        model = Kosmos2ForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())  # tied lm_head/embeddings counted once


def build_tiny_kosmos2(out_dir: Path, *, seed: int = 0, image_size: int = 224, text_init_std: float | None = None,
                       vision_init_factor: float = 1.0, latent_query_num: int = LATENT_QUERY_NUM,
                       vision: dict[str, int] | None = None, location_init: str = "random") -> Path:
    """Build and save a seeded random tiny Kosmos-2 plus its processor to ``out_dir``; return ``out_dir``.

    ``text_init_std`` defaults to ``TINY_EMBED ** -0.5``, not Kosmos-2's 0.02 (tuned for width 2048):
    at width 64, weights of std 0.02 leave the action token's state almost independent of the image
    and the instruction (swapping "left"/"right" moves it by 0.2 %), so nothing downstream can learn.
    The image-to-text latent queries get the same std, for the same reason.
    ``vision`` overrides the vision tower (``hidden``, ``layers``, ``heads``, ``intermediate``, ``patch``;
    default 32 wide, 2 layers, 32-px patches). ``location_init="sincos2d"`` starts the 1024
    ``<patch_index_XXXX>`` embeddings (tied to the output layer) as a 2-D sine code of their grid cell,
    so neighbouring cells start with similar embeddings and logits; ``"random"`` leaves them as drawn.
    """
    out_dir = Path(out_dir)
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"height": image_size, "width": image_size}, resample=3, do_center_crop=False,
        crop_size={"height": image_size, "width": image_size}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    processor = Kosmos2Processor(image_processor, build_tokenizer(out_dir))  # adds 11 tags + 1024 patch tokens
    v = {**TINY_VISION, **(vision or {})}
    config = _kosmos2_config(vocab=len(processor.tokenizer), embed=TINY_EMBED, layers=2, heads=4, ffn=128,
                             max_pos=TINY_MAX_POSITIONS, v_hidden=v["hidden"], v_layers=v["layers"], v_heads=v["heads"],
                             v_inter=v["intermediate"], patch=v["patch"], image=image_size, latent=latent_query_num)
    config.text_config.init_std = TINY_EMBED**-0.5 if text_init_std is None else float(text_init_std)
    config.vision_config.initializer_factor = float(vision_init_factor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Kosmos2ForConditionalGeneration(config).eval()
        # the latent queries (randn, norm ~8) would swamp the projected patches (norm ~1) in the
        # image-to-text attention and the 64 image tokens would barely depend on the image
        model.image_to_text_projection.latent_query.data.normal_(std=config.text_config.init_std)
        if location_init == "sincos2d":
            _grid_code_init(model, processor.tokenizer, config.text_config.init_std)
        elif location_init != "random":
            raise ValueError(f"location_init {location_init!r}: expected 'random' or 'sincos2d'")
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir
