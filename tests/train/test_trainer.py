"""MobileVLATrainer: LoRA placement, 2-DOF batches on CPU, slim checkpoints that load back safely."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch

from robovlms_mobile.checkpoint.format import PLUGIN_KEY, CheckpointError, UnsafeCheckpointError, load_checkpoint
from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.transforms import normalise_batch, preprocess_frames
from robovlms_mobile.train.launcher import build_datamodule, train
from robovlms_mobile.model.lora import TEXT_ATTENTION
from robovlms_mobile.train.trainer import MobileVLATrainer


@pytest.fixture
def module(tiny_config) -> MobileVLATrainer:
    torch.manual_seed(0)
    return MobileVLATrainer(tiny_config)


def test_lora_only_on_text_attention_and_vision_frozen(tiny_config, capsys):
    tiny_config["train_setup"]["train_text_embedding"] = False  # tiny_cpu.json trains it; here: adapters only
    module = MobileVLATrainer(tiny_config)
    named = dict(module.named_parameters())
    lora = [n for n in named if ".lora_" in n]
    layers = module.model.backbone.config.text_config.layers
    assert len(lora) == layers * 4 * 2  # q/k/v/out, A and B
    assert all(re.search(TEXT_ATTENTION, n) for n in lora)
    assert not any("vision_model" in n for n in lora)
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == set(lora) | {"model.action_token"} | {n for n in named if n.startswith("model.act_head.")}
    assert not any(p.requires_grad for n, p in named.items() if "vision_model" in n or "embed_tokens" in n)
    assert module.trainable_parameters == sum(named[n].numel() for n in trainable)
    assert "trainable parameters:" in capsys.readouterr().out


def test_lora_all_linear_adapts_the_vision_tower_too_but_not_lm_head(tiny_config):
    tiny_config["train_setup"].update(lora_targets="all_linear", train_text_embedding=False)
    named = dict(MobileVLATrainer(tiny_config).named_parameters())
    lora = [n for n in named if ".lora_" in n]
    assert all(named[n].requires_grad for n in lora)
    for part in (".vision_model.", "image_to_text_projection", ".self_attn.q_proj", ".fc1."):
        assert any(part in n for n in lora), part
    assert not any("lm_head" in n for n in lora)
    frozen = [p for n, p in named.items() if (".vision_model." in n or "text_model" in n) and ".lora_" not in n]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_lora_keeps_the_word_embedding_trainable_when_asked(tiny_config):
    tiny_config["train_setup"]["train_text_embedding"] = True  # upstream re-enables it after get_peft_model
    named = dict(MobileVLATrainer(tiny_config).named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert "model.backbone.text_model.model.embed_tokens.weight" in trainable
    assert any(".lora_" in n for n in trainable) and not any("vision_model" in n for n in trainable)


def test_lora_keeps_the_vision_encoder_trainable_when_asked(tiny_config):
    tiny_config["train_setup"]["train_vision"] = True  # get_peft_model alone would freeze it
    named = dict(MobileVLATrainer(tiny_config).named_parameters())
    vision = [p for n, p in named.items() if ".vision_model." in n]
    assert vision and all(p.requires_grad for p in vision)
    assert not any(p.requires_grad for n, p in named.items() if "image_to_text_projection" in n or ".self_attn.k_proj.base_layer" in n)


def test_process_batch_has_no_gripper_split(module, tiny_config):
    batch = next(iter(build_datamodule(tiny_config, module).train_dataloader()))
    out = module._process_batch(batch)
    rgb, action, gripper, chunk, gripper_chunk = out[0], out[7], out[8], out[9], out[10]
    assert rgb.shape == (2, 8, 3, 224, 224)
    assert action.shape == (2, 17, 2) and chunk.shape == (2, 8, 10, 2)
    assert gripper is None and gripper_chunk is None
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert module.model.action_token.grad is not None


def test_model_sees_the_normalised_frames_of_each_window(module, tiny_config):
    """The loader moves uint8 `rgb`; `_process_batch` hands the model exactly `preprocess_frames` of the window's file frames."""
    loader = build_datamodule(tiny_config, module).val_dataloader()  # upstream's loader: a worker, pinned memory
    ds = loader.dataset
    batch = next(iter(loader))
    assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape == (2, 8, 3, 224, 224)
    rgb = module._process_batch(batch)[0]
    expected = []
    for e, start in ds.index[: len(rgb)]:  # sequential sampler: the first windows
        episode = ds.episodes[e]
        with h5py.File(episode.path, "r") as f:
            expected.append(preprocess_frames(read_frames_rgb(f, episode, start, start + 8), 224))
    assert rgb.dtype == torch.float32 and torch.equal(rgb, torch.stack(expected))
    assert torch.equal(module._process_batch({**batch, "rgb": rgb})[0], rgb)  # a float (normalised) rgb is not normalised again
    with pytest.raises(ValueError, match="batch 'rgb' must be uint8"):
        normalise_batch(batch["rgb"].to(torch.int16))


def test_checkpoint_is_slim_and_loads_back(tiny_config, tmp_path):
    result = train(tiny_config, output_dir=tmp_path / "run", max_steps=2, progress=False)
    trained: MobileVLATrainer = result["model"]
    ckpt = load_checkpoint(result["last_checkpoint"])
    assert set(ckpt["state_dict"]) == trained.trainable_keys()
    info = ckpt[PLUGIN_KEY]
    assert info["shape"] == {"window": 8, "chunk": 10}
    meta = CheckpointMetadata.from_checkpoint(ckpt, result["last_checkpoint"], None)
    assert (meta.window, meta.chunk, meta.max_speed, meta.axes) == (8, 10, 1.15, ("linear_x", "linear_y"))
    assert meta.instructions and all("box" in text for text in meta.instructions)  # the training set's instructions
    assert meta.instructions == tuple(info["instructions"])
    assert info["action_scale"] == {"max_speed": 1.15, "axes": ["linear_x", "linear_y"]}
    assert info["prompt"]["template"] == "<grounding>An image of a robot {instruction}"
    assert info["config"]["act_head"]["type"] == "MobileVLALSTMDecoder"
    assert info["trainable_parameters"] == trained.trainable_parameters

    loaded = MobileVLATrainer.from_checkpoint(result["last_checkpoint"], configs=info["config"]).eval()
    trained.eval()
    batch = next(iter(build_datamodule(tiny_config, trained).val_dataloader()))
    with torch.no_grad():
        a = trained.model.forward_continuous(*trained._process_batch(batch)[0:1], batch["text"], attention_mask=batch["text_mask"], mode="inference")
        b = loaded.model.forward_continuous(*loaded._process_batch(batch)[0:1], batch["text"], attention_mask=batch["text_mask"], mode="inference")
    assert torch.equal(a[0], b[0])


def test_all_linear_lora_checkpoint_loads_back_through_the_runtime_loader(tiny_config, tmp_path):
    from robovlms_mobile.runtime.loader import load_for_inference

    tiny_config["train_setup"]["lora_targets"] = "all_linear"
    result = train(tiny_config, output_dir=tmp_path / "run", max_steps=1, progress=False)
    module, meta = load_for_inference(result["last_checkpoint"])
    assert meta.config["train_setup"]["lora_targets"] == "all_linear"
    loaded = dict(module.named_parameters())
    assert any(".vision_model." in n and ".lora_" in n for n in loaded)
    for name, value in result["model"].state_dict().items():
        if ".lora_" in name:
            assert torch.equal(module.state_dict()[name], value), name


def test_resume_continues_step_counter(tiny_config, tmp_path):
    out = tmp_path / "run"
    tiny_config["trainer"]["max_epochs"] = 5
    assert train(tiny_config, output_dir=out, max_steps=2, progress=False)["global_step"] == 2
    again = train(tiny_config, output_dir=out, max_steps=6, resume="last", progress=False)
    assert again["global_step"] == 6


def test_checkpoint_missing_trainable_weights_is_refused(tiny_config, tmp_path):
    result = train(tiny_config, output_dir=tmp_path / "run", max_steps=1, progress=False)
    ckpt = torch.load(result["last_checkpoint"], weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "act_head" not in k}
    torch.save(ckpt, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match="missing trainable"):
        MobileVLATrainer.from_checkpoint(tmp_path / "partial.ckpt", configs=tiny_config)


def test_a_plain_checkpoint_initialises_a_committed_head_and_it_learns(tiny_config, tmp_path):
    """model_load_path: a head without committed actions starts the committed one (its projection is zero)."""
    from robovlms_mobile.runtime.in_process import InProcessPolicy

    plain = train(tiny_config, output_dir=tmp_path / "plain", max_steps=1, progress=False)
    cfg = {**tiny_config, "model_load_path": str(plain["last_checkpoint"]),
           "act_head": {**tiny_config["act_head"], "committed_steps": 3}}
    start = MobileVLATrainer.from_checkpoint(plain["last_checkpoint"], configs=cfg)
    assert not start.model.act_head.commit_proj.weight.any()
    for name, value in plain["model"].state_dict().items():
        assert torch.equal(start.state_dict()[name], value), name
    result = train(cfg, output_dir=tmp_path / "committed", max_steps=3, progress=False)
    assert result["model"].model.act_head.commit_proj.weight.abs().sum() > 0  # the prefix reaches the gradient
    policy = InProcessPolicy.from_checkpoint(result["last_checkpoint"])
    assert policy.committed_steps == 3 and policy.meta.config["act_head"]["committed_steps"] == 3
    frame = np.zeros((72, 128, 3), np.uint8)
    told = policy.predict_chunk(frame, "Navigate around the obstacle on the left side and reach the cup",
                                np.full((2, 2), 0.5))
    policy.reset()
    bare = policy.predict_chunk(frame, "Navigate around the obstacle on the left side and reach the cup")
    assert told.shape == bare.shape == (10, 2) and not np.allclose(told, bare)
    with pytest.raises(ValueError, match="committed actions must be finite"):
        policy.predict_chunk(frame, "Navigate around the obstacle on the left side and reach the cup", np.zeros(2))
    with pytest.raises(CheckpointError, match="unexpected.*commit_proj"):  # the other way round would drop what it learnt
        MobileVLATrainer.from_checkpoint(result["last_checkpoint"], configs=tiny_config)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_payload_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out
