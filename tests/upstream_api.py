"""The upstream RoboVLMs API the plugin relies on, as a comparable snapshot.

`python tests/upstream_api.py --update` rewrites tests/upstream_api.json from the installed
upstream (run it deliberately when moving UPSTREAM_VERSION); test_upstream_api.py compares.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("upstream_api.json")

CALLABLES = {
    "robovlms.train.base_trainer": ["BaseTrainer.__init__", "BaseTrainer.from_checkpoint", "BaseTrainer._init_policy",
                                    "BaseTrainer._process_batch", "BaseTrainer._get_loss", "BaseTrainer._log_output",
                                    "BaseTrainer.training_step", "BaseTrainer.validation_step",
                                    "BaseTrainer.configure_optimizers", "BaseTrainer._main_rank_print"],
    "robovlms.model.backbone.base_backbone": ["BaseRoboVLM.__init__", "BaseRoboVLM._init_heads",
                                              "BaseRoboVLM._trainable_params_setup", "BaseRoboVLM._forward_action_head",
                                              "BaseRoboVLM._format_loss", "BaseRoboVLM._update_loss", "BaseRoboVLM.forward",
                                              "BaseRoboVLM.forward_action", "BaseRoboVLM.forward_continuous",
                                              "BaseRoboVLM.merge_multi_modal_input"],
    "robovlms.model.backbone.robokosmos": ["RoboKosMos.model", "RoboKosMos.hidden_size", "RoboKosMos.word_embedding",
                                           "RoboKosMos.vision_tower", "RoboKosMos.model_encode_images"],
    "robovlms.model.policy_head.base_policy": ["BasePolicyHead.__init__", "BasePolicyHead.loss", "BasePolicyHead.get_labels",
                                               "MLPTanhHead.__init__", "lstm_decoder", "LSTMDecoder.__init__", "LSTMDecoder.forward"],
    "robovlms.data.datamodule.gr_datamodule": ["GRDataModule.__init__", "GRDataModule._init_dataset",
                                               "GRDataModule._init_datasets", "GRDataModule.train_dataloader",
                                               "GRDataModule.val_dataloader"],
    "robovlms.utils.config_utils": ["load_config", "deep_update"],
    "main": ["experiment", "load_config", "update_configs", "parse_args", "init_trainer_config"],
}

# Source lines at upstream's call sites that the plugin's registration depends on.
CALL_SITES = {
    "robovlms/data/datamodule/gr_datamodule.py": [
        "dataset = getattr(robovlms.data, dataset_type)(**dataset_config)",
        'dataset.collater if hasattr(dataset, "collater") else collate_with_none',
        "dataset_config.update(self.kwargs)",
    ],
    "robovlms/model/backbone/base_backbone.py": [
        'import robovlms.model.policy_head as action_heads',
        '_cls = getattr(action_heads, _kwargs.pop("type"))',
        "action_loss = self.act_head.loss(action, action_labels, action_mask)",
        'if "loss" in k:',
    ],
    "robovlms/train/base_trainer.py": [
        'self.model_fn = getattr(RoboVLM_Backbone, configs["robovlm_name"])',
        "action_labels=(arm_action_chunck, gripper_action_chunck),",
    ],
    "main.py": [
        "model = BaseTrainer.from_checkpoint(",
        '"datamodule": GRDataModule(',
        "tokenizer=model.model.tokenizer,",
    ],
}


def describe(module_name: str, qualname: str) -> str:
    """Signature text of module.qualname (or 'property')."""
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, property):
        return "property"
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    return str(inspect.signature(obj))


def snapshot(upstream_dir: Path) -> dict:
    """The current API description of installed upstream + the checkout's main.py."""
    sys.path.insert(0, str(upstream_dir))
    try:
        signatures = {f"{m}:{q}": describe(m, q) for m, names in CALLABLES.items() for q in names}
    finally:
        sys.path.remove(str(upstream_dir))
    sites = {}
    for rel, needles in CALL_SITES.items():
        text = (upstream_dir / rel).read_text()
        sites[rel] = {needle: needle in text for needle in needles}
    return {"signatures": signatures, "call_sites": sites}


if __name__ == "__main__":
    upstream = Path(os.environ.get("ROBOVLMS_UPSTREAM_DIR", Path(__file__).resolve().parents[1] / ".cache/RoboVLMs"))
    if "--update" in sys.argv:
        SNAPSHOT.write_text(json.dumps(snapshot(upstream), indent=1, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT}")
