"""Contract (a) and (c): upstream's own call sites find the plugin; 7-DOF configs are untouched."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

from helpers import last_json_line, run_python


@pytest.fixture
def upstream_main(upstream_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(upstream_dir))
    sys.modules.pop("main", None)
    import main

    yield main
    sys.modules.pop("main", None)


def test_dataset_found_by_grdatamodule_init_dataset(tiny_config):
    import robovlms.data
    from robovlms.data.datamodule.gr_datamodule import GRDataModule
    from transformers import AutoProcessor

    from robovlms_mobile.data.dataset import MobileVLAH5Dataset

    assert robovlms.data.MobileVLAH5Dataset is MobileVLAH5Dataset
    cfg = tiny_config
    dm = GRDataModule(cfg["train_dataset"], cfg["val_dataset"], 2, 1, tokenizer=AutoProcessor.from_pretrained(cfg["model_path"]).tokenizer,
                      fwd_pred_next_n=10, window_size=8, image_size=224, model_name="kosmos", discrete=False)
    dataset, loader = dm._init_dataset(copy.deepcopy(cfg["train_dataset"]), batch_size=2, num_workers=1)
    assert isinstance(dataset, MobileVLAH5Dataset)
    batch = next(iter(loader))
    assert batch["rgb"].shape == (2, 8, 3, 224, 224)
    assert batch["action_chunck"].shape == (2, 8, 10, 2)
    assert batch["chunck_mask"].shape == (2, 8, 10) and batch["chunck_mask"].all()
    assert batch["text"].shape == batch["text_mask"].shape and batch["text"].shape[0] == 2
    assert "action" in batch["data_source"]


def test_head_found_by_base_robovlm_init_heads(tiny_config):
    """Upstream BaseTrainer (no trainer_type) still builds our head through `_init_heads`."""
    from robovlms.train.base_trainer import BaseTrainer

    from robovlms_mobile.model.policy_head import MobileVLALSTMDecoder
    from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch

    cfg = tiny_config
    cfg.pop("trainer_type")
    cfg["train_setup"]["lora_enable"] = False  # upstream's own LoRA path needs llava
    ensure_kosmos2_patch()
    module = BaseTrainer.from_checkpoint(None, "torch", cfg)
    assert type(module) is BaseTrainer
    assert isinstance(module.model.act_head, MobileVLALSTMDecoder)


def test_trainer_chosen_at_main_py_call_site(upstream_main, tiny_config):
    from robovlms_mobile.train.trainer import MobileVLATrainer

    module = upstream_main.BaseTrainer.from_checkpoint(None, "torch", tiny_config)
    assert type(module) is MobileVLATrainer


def test_unknown_trainer_type_names_the_key(upstream_main, tiny_config):
    tiny_config["trainer_type"] = "NoSuchTrainer"
    with pytest.raises(ValueError, match="trainer_type.*NoSuchTrainer"):
        upstream_main.BaseTrainer.from_checkpoint(None, "torch", tiny_config)


# Contract (c): the same 7-DOF upstream config, with and without the plugin active, builds
# upstream's BaseTrainer + LSTMDecoder and computes identical losses. BaseTrainer hard-codes
# `.cuda()`, so on a CPU-only machine the script maps it to a no-op for this comparison.
SEVEN_DOF = r"""
import json, sys
import torch
cfg = json.loads(open(sys.argv[1]).read())
torch.Tensor.cuda = lambda self, *a, **k: self
from transformers.models.kosmos2 import modeling_kosmos2
sys.path.insert(0, sys.argv[2])
from patches import kosmos2_inputs_embeds
kosmos2_inputs_embeds.apply(modeling_kosmos2)  # stands in for upstream main.py's file copy
from robovlms.train.base_trainer import BaseTrainer
torch.manual_seed(0)
module = BaseTrainer.from_checkpoint(None, "torch", cfg)
g = torch.Generator().manual_seed(1)
B, W, C = 2, cfg["window_size"], cfg["fwd_pred_next_n"]
tok = module.model.tokenizer
text = tok(["<grounding>An image of a robot pick up the block"] * B, return_tensors="pt", padding="longest")
action = torch.rand(B, W + C - 1, 7, generator=g) * 2 - 1
action[..., -1] = (action[..., -1] > 0).float()
batch = {"rgb": torch.randn(B, W, 3, 224, 224, generator=g), "text": text["input_ids"], "text_mask": text["attention_mask"],
         "action": action, "action_chunck": action.unfold(1, C, 1).permute(0, 1, 3, 2),
         "chunck_mask": torch.ones(B, W, C), "data_source": "calvin_action"}
loss = module.training_step(batch, 0)
loss.backward()
import robovlms.model.policy_head as heads
print(json.dumps({"trainer": type(module).__name__, "head": type(module.model.act_head).__name__,
                  "loss": float(loss), "plugin_registered": hasattr(heads, "MobileVLALSTMDecoder")}))
"""


def test_seven_dof_config_behaves_as_before(upstream_dir, tiny_model_dir, tmp_path):
    from robovlms_mobile.config import load_config

    cfg = load_config(upstream_dir / "configs/calvin_finetune/finetune_kosmos_cont-lstm-post_full-ft_text_vision_wd-0_ws-8_act-10.json")
    for key in ("model_path",):
        cfg[key] = str(tiny_model_dir)
    cfg["model_config"] = str(tiny_model_dir / "config.json")
    cfg["vlm"]["pretrained_model_name_or_path"] = cfg["tokenizer"]["pretrained_model_name_or_path"] = str(tiny_model_dir)
    cfg["act_head"].update(hidden_size=32, fwd_pred_next_n=10, window_size=8)
    assert "trainer_type" not in cfg and cfg["act_head"]["type"] == "LSTMDecoder"
    path = tmp_path / "calvin_7dof.json"
    path.write_text(json.dumps(cfg))
    repo = str(Path(__file__).resolve().parents[1])
    with_plugin = last_json_line(run_python(SEVEN_DOF, str(path), repo, cwd=tmp_path).stdout)
    without = last_json_line(run_python(SEVEN_DOF, str(path), repo, cwd=tmp_path, env={"ROBOVLMS_MOBILE_AUTOLOAD": "0"}).stdout)
    assert with_plugin["plugin_registered"] and not without["plugin_registered"]
    for run in (with_plugin, without):
        assert run["trainer"] == "BaseTrainer" and run["head"] == "LSTMDecoder"
    assert torch.isfinite(torch.tensor(with_plugin["loss"]))
    assert with_plugin["loss"] == pytest.approx(without["loss"], rel=1e-6)
