"""Contract (a) and (c): upstream's own call sites find the plugin; 7-DOF configs are untouched."""

from __future__ import annotations

import copy
import json
import sys

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


# Contract (c): the same 7-DOF upstream config builds upstream's BaseTrainer + LSTMDecoder and
# computes the same loss and gradients in stock upstream and in upstream with the plugin active.
# Stock upstream runs Kosmos-2 the way its main.py does: with upstream's tools/modeling_kosmos2.py
# in place of the installed transformers file (loaded in that module's place here; main.py copies
# the file into site-packages). The plugin run leaves the installed file alone and gets the
# plugin's in-memory patch from the plugin itself, so the comparison sees what the patch changes.
# No torch method is replaced: upstream's `_process_batch` calls `.cuda()` on every tensor (spec §3),
# so without a GPU both runs must fail there in the same way; the loss is then computed by the
# rest of upstream's `training_step` (`model.forward` + `_get_loss`) on the tensors `_process_batch`
# would hand it: the first `window_size` frames, the chunk split into `[..., :6]` arm and
# `[..., -1]` gripper labels.
SEVEN_DOF = r"""
import importlib.util, inspect, json, sys
import torch
cfg_path, upstream_dir, mode = sys.argv[1:4]
cfg = json.loads(open(cfg_path).read())
import transformers.models.kosmos2
if mode == "stock":
    name = "transformers.models.kosmos2.modeling_kosmos2"
    spec = importlib.util.spec_from_file_location(name, upstream_dir + "/tools/modeling_kosmos2.py")
    copied = importlib.util.module_from_spec(spec)
    sys.modules[name] = copied
    spec.loader.exec_module(copied)
from robovlms.train.base_trainer import BaseTrainer
from transformers.models.kosmos2 import modeling_kosmos2
forward = modeling_kosmos2.Kosmos2ForConditionalGeneration.forward
torch.manual_seed(0)
module = BaseTrainer.from_checkpoint(None, "torch", cfg)
g = torch.Generator().manual_seed(1)
B, W, C = 2, cfg["window_size"], cfg["fwd_pred_next_n"]
tok = module.model.tokenizer
text = tok(["<grounding>An image of a robot pick up the block"] * B, return_tensors="pt", padding="longest")
action = torch.rand(B, W + C - 1, 7, generator=g) * 2 - 1
action[..., -1] = (action[..., -1] > 0).float()
chunk = action.unfold(1, C, 1).permute(0, 1, 3, 2)  # (B, W, C, 7)
batch = {"rgb": torch.randn(B, W, 3, 224, 224, generator=g), "text": text["input_ids"], "text_mask": text["attention_mask"],
         "action": action, "action_chunck": chunk, "chunck_mask": torch.ones(B, W, C), "data_source": "calvin_action"}
cuda_error = None
if torch.cuda.is_available():
    module = module.cuda()
    loss = module.training_step(batch, 0)
else:
    try:
        module.training_step(batch, 0)
    except (RuntimeError, AssertionError) as exc:
        cuda_error = type(exc).__name__ + ": " + str(exc).splitlines()[0]
    prediction = module.model.forward(batch["rgb"][:, :W], batch["text"], attention_mask=batch["text_mask"],
                                      action_labels=(chunk[..., :6], chunk[..., -1]), action_mask=batch["chunck_mask"],
                                      data_source=batch["data_source"])
    loss = module._get_loss(prediction)["loss"]
loss.backward()
grads = {n: p.grad.double().norm().item() for n, p in module.named_parameters() if p.grad is not None}
import robovlms.model.policy_head as heads
print(json.dumps({"trainer": type(module).__name__, "head": type(module.model.act_head).__name__,
                  "loss": float(loss), "grads": grads, "cuda_error": cuda_error,
                  "plugin_registered": "MobileVLALSTMDecoder" in getattr(heads, "_robovlms_mobile_lazy", {}),
                  "plugin_patch": bool(getattr(forward, "_robovlms_mobile_inputs_embeds_patch", False)),
                  "upstream_copy": "if pixel_values is not None:" in inspect.getsource(getattr(forward, "__wrapped__", forward))}))
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
    args = (str(path), str(upstream_dir))
    stock = last_json_line(run_python(SEVEN_DOF, *args, "stock", cwd=tmp_path, env={"ROBOVLMS_MOBILE_AUTOLOAD": "0"}).stdout)
    plugin = last_json_line(run_python(SEVEN_DOF, *args, "plugin", cwd=tmp_path).stdout)
    # stock: upstream's own Kosmos-2 file, nothing of the plugin; plugin: installed file + the plugin's patch
    assert (stock["plugin_registered"], stock["plugin_patch"], stock["upstream_copy"]) == (False, False, True)
    assert (plugin["plugin_registered"], plugin["plugin_patch"], plugin["upstream_copy"]) == (True, True, False)
    for run in (stock, plugin):
        assert run["trainer"] == "BaseTrainer" and run["head"] == "LSTMDecoder"
    if not torch.cuda.is_available():  # upstream's documented `.cuda()`: the same failure with or without the plugin
        assert stock["cuda_error"] and plugin["cuda_error"] == stock["cuda_error"]
    assert torch.isfinite(torch.tensor(stock["loss"]))
    assert plugin["loss"] == pytest.approx(stock["loss"], rel=1e-6)
    assert stock["grads"].keys() == plugin["grads"].keys() and len(stock["grads"]) > 10
    for name, norm in stock["grads"].items():
        assert plugin["grads"][name] == pytest.approx(norm, rel=1e-5, abs=1e-9), name
