"""Register the plugin's classes into the namespaces upstream RoboVLMs looks classes up in.

Upstream resolves datasets with `getattr(robovlms.data, type)`, action heads with
`getattr(robovlms.model.policy_head, type)`, and `main.py` always calls
`BaseTrainer.from_checkpoint(...)`. `register()` (the `robovlms.plugins` entry point) hooks
each of those modules as it is imported, so nothing heavy is imported before upstream asks:

- `robovlms.data.MobileVLAH5Dataset`
- `robovlms.model.policy_head.MobileVLALSTMDecoder`
- `robovlms.model.backbone.RoboResNet` (the CNN baseline, model/baseline/backbone.py)
- `BaseTrainer.from_checkpoint` dispatches on the config key `trainer_type`; configs without
  it build upstream's `BaseTrainer` exactly as before.
- the Kosmos-2 `inputs_embeds` patch (patches/kosmos2_inputs_embeds.py).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import robovlms_mobile_autoload as autoload

from robovlms_mobile.upstream import CNN_TYPE, DATASET_TYPE, HEAD_TYPE, TRAINER_TYPE

TRAINER_KEY = "trainer_type"
_registered = False
_ORIGINAL = "_robovlms_mobile_original_from_checkpoint"


def register() -> None:
    """Idempotently install the plugin into upstream (safe before or after robovlms import)."""
    global _registered
    if _registered:
        return
    _registered = True
    autoload.when_imported("robovlms.data", _register_dataset)
    autoload.when_imported("robovlms.model.policy_head", _register_head)
    autoload.when_imported("robovlms.model.backbone", _register_backbone)
    autoload.when_imported("robovlms.train.base_trainer", _register_trainer_dispatch)
    autoload.when_imported("transformers.models.kosmos2.modeling_kosmos2", _patch_kosmos2)


def _lazy_attribute(module: ModuleType, name: str, target: str) -> None:
    """Make `getattr(module, name)` import `target` ("pkg.mod:Class") on first use (PEP 562).

    Importing the class right away could run inside our own half-initialised module (when
    user code imports the plugin module first), so the lookup is deferred to upstream's getattr.
    """
    lazy = module.__dict__.setdefault("_robovlms_mobile_lazy", {})
    lazy[name] = target
    previous = module.__dict__.get("__getattr__")
    if getattr(previous, "_robovlms_mobile", False):
        return

    def __getattr__(attr: str) -> Any:
        if attr in lazy:
            import importlib

            mod_name, cls_name = lazy[attr].split(":")
            value = getattr(importlib.import_module(mod_name), cls_name)
            setattr(module, attr, value)
            return value
        if previous is not None:
            return previous(attr)
        raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")

    __getattr__._robovlms_mobile = True
    module.__getattr__ = __getattr__


# Every class the plugin puts into an upstream namespace: name there -> "module:attribute" here, imported
# on first use (tests resolve each target string)
LAZY_TARGETS = {
    DATASET_TYPE: "robovlms_mobile.data.dataset:MobileVLAH5Dataset",
    HEAD_TYPE: "robovlms_mobile.model.policy_head:MobileVLALSTMDecoder",
    CNN_TYPE: "robovlms_mobile.model.baseline.backbone:RoboResNet",
    TRAINER_TYPE: "robovlms_mobile.train.trainer:MobileVLATrainer",
}


def _register_dataset(module: ModuleType) -> None:
    _lazy_attribute(module, DATASET_TYPE, LAZY_TARGETS[DATASET_TYPE])


def _register_head(module: ModuleType) -> None:
    _lazy_attribute(module, HEAD_TYPE, LAZY_TARGETS[HEAD_TYPE])


def _register_backbone(module: ModuleType) -> None:
    _lazy_attribute(module, CNN_TYPE, LAZY_TARGETS[CNN_TYPE])


def _patch_kosmos2(module: ModuleType) -> None:
    from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch

    ensure_kosmos2_patch()


def trainer_classes() -> dict[str, type]:
    """Trainer classes selectable with `"trainer_type"` in a config."""
    from robovlms.train.base_trainer import BaseTrainer

    from robovlms_mobile.train.trainer import MobileVLATrainer

    return {"BaseTrainer": BaseTrainer, TRAINER_TYPE: MobileVLATrainer}


def resolve_trainer(configs: dict[str, Any] | None) -> type:
    """The trainer class a config asks for (upstream BaseTrainer when it names none)."""
    classes = trainer_classes()
    name = (configs or {}).get(TRAINER_KEY, "BaseTrainer")
    if name not in classes:
        raise ValueError(f"config key {TRAINER_KEY!r}: unknown trainer {name!r}; expected one of {sorted(classes)}")
    return classes[name]


def _register_trainer_dispatch(module: ModuleType) -> None:
    base = module.BaseTrainer
    if hasattr(base, _ORIGINAL):
        return
    original = base.__dict__["from_checkpoint"].__func__

    def from_checkpoint(cls, ckpt_path=None, ckpt_source="torch", configs=None):
        if cls is base:
            target = resolve_trainer(configs)
            if target is not base:
                return target.from_checkpoint(ckpt_path, ckpt_source, configs)
        return original(cls, ckpt_path, ckpt_source, configs)

    from_checkpoint.__doc__ = original.__doc__
    setattr(base, _ORIGINAL, original)
    base.from_checkpoint = classmethod(from_checkpoint)
    import robovlms.train

    _lazy_attribute(robovlms.train, TRAINER_TYPE, LAZY_TARGETS[TRAINER_TYPE])
