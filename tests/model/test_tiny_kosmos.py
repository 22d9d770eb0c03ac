"""Tests for the offline tiny Kosmos-2 builder."""

import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file

from robovlms_mobile.model.full_kosmos import published_kosmos2_config
from robovlms_mobile.model.tiny_kosmos import (
    build_tiny_kosmos2,
    build_tokenizer,
    count_parameters_on_meta,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_kosmos2(tmp_path_factory.mktemp("tiny_kosmos"))


def test_tokenizer_id_layout(tmp_path):
    tok = build_tokenizer(tmp_path)
    assert isinstance(tok, transformers.XLMRobertaTokenizerFast)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]}
    assert ids == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": len(tok) - 1}
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert 500 <= len(tok) <= 1000 and tok.vocab_size == len(tok)
    enc = tok("go around the box on the left and stop in front of the bottle").input_ids
    assert enc[0] == 0 and enc[-1] == 2 and tok.unk_token_id not in enc
    assert (tmp_path / "tokenizer.json").is_file()


def test_round_trip_load_and_forward(tiny_dir):
    config = json.load(open(tiny_dir / "config.json"))
    model = transformers.AutoModelForVision2Seq.from_pretrained(tiny_dir, trust_remote_code=True)
    processor = transformers.AutoProcessor.from_pretrained(tiny_dir, trust_remote_code=True)
    assert isinstance(model, transformers.Kosmos2ForConditionalGeneration)
    assert isinstance(processor, transformers.Kosmos2Processor)
    assert isinstance(processor.tokenizer, transformers.XLMRobertaTokenizerFast)
    vocab = len(processor.tokenizer)
    assert config["text_config"]["vocab_size"] == model.config.text_config.vocab_size == vocab
    assert processor.tokenizer.convert_tokens_to_ids("<patch_index_1023>") == vocab - 1
    assert model.config.text_config.embed_dim == 64 and model.config.latent_query_num == 64
    assert sum(f.stat().st_size for f in tiny_dir.iterdir()) < 5_000_000

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    inputs = processor(text=["<grounding>An image of a robot go left"], images=[image], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 224, 224)
    assert int(inputs["image_embeds_position_mask"].sum()) == model.config.latent_query_num
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    image_embeds_position_mask=inputs["image_embeds_position_mask"])
        text_out = model.text_model(inputs_embeds=torch.randn(2, 10, 64), output_hidden_states=True)
    assert out.logits.shape == (1, inputs["input_ids"].shape[1], vocab)
    assert torch.isfinite(out.logits).all()
    assert text_out.hidden_states[-1].shape == (2, 10, 64)
    assert len(text_out.hidden_states) == model.config.text_config.layers + 1


def test_determinism(tmp_path):
    a = load_file(build_tiny_kosmos2(tmp_path / "a", seed=0) / "model.safetensors")
    b = load_file(build_tiny_kosmos2(tmp_path / "b", seed=0) / "model.safetensors")
    c = load_file(build_tiny_kosmos2(tmp_path / "c", seed=1) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_real_config_parameter_count_on_meta():
    config = published_kosmos2_config()
    assert (config.text_config.embed_dim, config.text_config.vocab_size, config.latent_query_num) == (2048, 65037, 64)
    assert 1.5e9 <= count_parameters_on_meta(config) <= 1.8e9


def test_last_token_state_carries_the_instruction_and_the_image(tiny_dir):
    """The tiny model is initialised at its width's scale: words and pixels reach the last position."""
    model = transformers.AutoModelForVision2Seq.from_pretrained(tiny_dir).eval()
    processor = transformers.AutoProcessor.from_pretrained(tiny_dir)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)) for _ in range(2)]

    def last_state(side: str, image: Image.Image) -> torch.Tensor:
        prompt = f"<grounding>An image of a robot go around the box on the {side} and stop in front of the bottle"
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
        return out.hidden_states[-1][0, -1]  # (D,) after the final layer

    ref = last_state("left", images[0])
    text_change = (last_state("right", images[0]) - ref).norm() / ref.norm()
    image_change = (last_state("left", images[1]) - ref).norm() / ref.norm()
    # Kosmos-2's own init (std 0.02, latent queries randn): 0.002 and 0.0003; text std only: 0.06 and 0.08
    assert text_change > 0.02 and image_change > 0.15, (float(text_change), float(image_change))


def test_vision_override_and_grid_coded_location_tokens(tmp_path):
    """`vision=` sizes the tower; `location_init="sincos2d"`: neighbouring grid cells have the most similar embeddings."""
    from transformers import Kosmos2ForConditionalGeneration, Kosmos2Processor

    out = build_tiny_kosmos2(tmp_path, vision={"hidden": 64, "heads": 4, "intermediate": 128, "patch": 16},
                             location_init="sincos2d")
    model = Kosmos2ForConditionalGeneration.from_pretrained(out)
    assert (model.config.vision_config.hidden_size, model.config.vision_config.patch_size) == (64, 16)
    tok = Kosmos2Processor.from_pretrained(out).tokenizer
    emb = model.text_model.model.embed_tokens.weight.detach()
    cell = lambda r, c: emb[tok.convert_tokens_to_ids(f"<patch_index_{r * 32 + c:04d}>")]
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    assert cos(cell(10, 10), cell(10, 11)) > cos(cell(10, 10), cell(10, 20)) and cos(cell(10, 10), cell(11, 10)) > cos(cell(10, 10), cell(25, 10))
    assert model.text_model.lm_head.weight.data_ptr() == model.text_model.model.embed_tokens.weight.data_ptr()  # tied: the output layer is grid coded too
    with pytest.raises(ValueError, match="location_init 'bogus'"):
        build_tiny_kosmos2(tmp_path / "bad", location_init="bogus")
