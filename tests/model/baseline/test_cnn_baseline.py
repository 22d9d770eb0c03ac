"""CNN baseline: built by upstream's trainer from `robovlm_name`, trained by the launcher, loaded for eval."""

from __future__ import annotations

import copy

import pytest
import torch

from robovlms_mobile.checkpoint.format import PLUGIN_KEY, load_checkpoint
from robovlms_mobile.config import ConfigError, validate_config
from robovlms_mobile.runtime.in_process import InProcessPolicy
from robovlms_mobile.train.launcher import train

CNN = {"arch": "resnet10", "hidden_size": 32, "input_size": 32, "fusion_layers": 1, "heads": 4}


@pytest.fixture
def cnn_config(tiny_config) -> dict:
    cfg = copy.deepcopy(tiny_config)
    cfg.update(robovlm_name="RoboResNet", model="resnet", cnn_backbone=dict(CNN))
    cfg["train_setup"].update(freeze_backbone=False, train_vision=True, train_text_embedding=True, lora_enable=False)
    return cfg


def test_upstream_lookup_builds_it(cnn_config):
    from robovlms_mobile.train.registry import register

    register()
    import robovlms.model.backbone as backbones
    from robovlms.train.base_trainer import BaseTrainer

    from robovlms_mobile.model.baseline.backbone import RoboResNet
    from robovlms_mobile.train.trainer import MobileVLATrainer

    assert getattr(backbones, "RoboResNet") is RoboResNet
    module = BaseTrainer.from_checkpoint(None, "torch", cnn_config)  # upstream's entry point, as main.py calls it
    assert isinstance(module, MobileVLATrainer) and isinstance(module.model, RoboResNet)
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    assert "model.action_token" in names and any(n.startswith("model.backbone.vision.") for n in names)
    assert any(n.startswith("model.backbone.embed_tokens") for n in names)
    assert not any("kosmos" in n or "lora_" in n for n in names)
    assert not list(module.model.backbone.buffers())  # GroupNorm: the slim checkpoint holds the whole model


def test_trains_through_launcher_and_loads_back(cnn_config, tmp_path):
    result = train(cnn_config, output_dir=tmp_path / "run", max_steps=3, progress=False)
    info = load_checkpoint(result["last_checkpoint"])[PLUGIN_KEY]
    assert info["config"]["robovlm_name"] == "RoboResNet"
    policy = InProcessPolicy.from_checkpoint(result["last_checkpoint"])
    trained = result["model"].eval()
    frame = torch.randint(0, 255, (36, 64, 3), dtype=torch.uint8).numpy()
    a = policy.act(frame, "go around the box on the left and stop in front of the bottle")
    policy.reset()
    reference = InProcessPolicy(trained, policy.meta)
    b = reference.act(frame, "go around the box on the left and stop in front of the bottle")
    assert a.shape == (2,) and torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1e-6)


@pytest.mark.parametrize("patch, message", [
    ({"cnn_backbone": {"arch": "vgg"}}, "'cnn_backbone.arch' = 'vgg'"),
    ({"cnn_backbone": {"depth": 3}}, "unknown key 'cnn_backbone.depth'"),
    ({"cnn_backbone": {"hidden_size": 30, "heads": 4}}, "divisible"),
    ({"train_setup": {"lora_enable": True}}, "'train_setup.lora_enable' must be false"),
])
def test_config_errors_name_the_key(cnn_config, patch, message):
    for key, value in patch.items():
        cnn_config[key].update(value)
    with pytest.raises(ConfigError, match=message):
        validate_config(cnn_config)


def test_cnn_section_needs_the_cnn_backbone(tiny_config):
    tiny_config["cnn_backbone"] = dict(CNN)
    with pytest.raises(ConfigError, match="only read when 'robovlm_name' is 'RoboResNet'"):
        validate_config(tiny_config)
