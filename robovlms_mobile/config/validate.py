"""`validate_config`: every key of a Mobile VLA config checked; each error is one line naming the key."""

from __future__ import annotations

import difflib
from typing import Any

from robovlms_mobile.config.compat import DATASET_SECTIONS, checked, is_mobile, resolve
from robovlms_mobile.config.keys import (ACT_HEAD, CNN, CNN_TYPE, DATASET, DATASET_TYPE, HEAD_TYPE, LAUNCHER_SET, SECTIONS,
                                         TOP, TRAIN_SETUP, Key)
from robovlms_mobile.config.load import ConfigError, check_finite
from robovlms_mobile.errors import clip

REQUIRED_TOP = ("robovlm_name", "model", "window_size", "fwd_pred_next_n", "train_setup", "act_head", "vlm", "tokenizer", "trainer")


def unknown(key: str, table: dict[str, Key], source: str) -> ConfigError:
    """The error for a key no table knows, with the closest known names."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, list(table), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"{source}: unknown key {clip(key)}{hint}; expected a key listed by `robovlms-mobile config check` "
                       "(docs/configs.md)")


def check_section(section: Any, table: dict[str, Key], where: str, source: str) -> None:
    """Every key known to `table` and accepted by its check."""
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: '{where}' = {clip(section)}: expected an object")
    for key, value in section.items():
        if key not in table:
            if where == "trainer" and key in LAUNCHER_SET:
                if key == "logger":
                    continue
                raise ConfigError(f"{source}: 'trainer.{key}' is set by the launcher; expected it left out")
            raise unknown(f"{where}.{key}", table, source)
        checked(value, f"{where}.{key}", table[key], source)


def _check_cnn(configs: dict[str, Any], source: str) -> None:
    from robovlms_mobile.model.baseline.model import ARCHS

    cnn = configs.get("cnn_backbone", {})
    check_section(cnn, CNN, "cnn_backbone", source)
    if cnn.get("arch", "resnet18") not in ARCHS:
        raise ConfigError(f"{source}: 'cnn_backbone.arch' = {clip(cnn['arch'])}: expected one of {list(ARCHS)}")
    if cnn.get("hidden_size", 256) % cnn.get("heads", 4):
        raise ConfigError(f"{source}: 'cnn_backbone.hidden_size' must be divisible by 'cnn_backbone.heads'")
    if configs["train_setup"].get("lora_enable", False):
        raise ConfigError(f"{source}: 'train_setup.lora_enable' must be false for {CNN_TYPE}: LoRA adapts Kosmos-2 only")


def _check_dataset(section: dict[str, Any], name: str, configs: dict[str, Any], source: str) -> None:
    from robovlms_mobile.data.prompt import validate_template

    check_section(section, DATASET, name, source)
    if "data_dir" not in section:
        raise ConfigError(f"{source}: missing required key '{name}.data_dir'")
    if "prompt_template" in section:
        try:
            validate_template(section["prompt_template"])
        except ValueError as exc:
            raise ConfigError(f"{source}: '{name}.prompt_template': {exc}") from None
    pad = section.get("rgb_pad", -1)
    size = configs.get("image_size", 224)
    if isinstance(size, int) and pad * 2 >= size:
        raise ConfigError(f"{source}: '{name}.rgb_pad' = {pad}: expected less than half of image_size ({size})")


def _check_top(configs: dict[str, Any], source: str) -> None:
    for key, value in configs.items():
        if key not in TOP:
            raise unknown(key, TOP, source)
        checked(value, key, TOP[key], source)
    for name, table in SECTIONS.items():
        if name in configs and name not in ("train_dataset", "val_dataset", "cnn_backbone", "act_head"):
            check_section(configs[name], table, name, source)


def validate_config(configs: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check a full experiment config (original keys are first rewritten in place, see compat.resolve); returns it."""
    if not isinstance(configs, dict):
        raise ConfigError(f"{source}: top level is a {type(configs).__name__}; expected an object")
    check_finite(configs, source)
    for key in REQUIRED_TOP:
        if key not in configs:
            raise ConfigError(f"{source}: missing required key '{key}'")
    for key in ("window_size", "fwd_pred_next_n"):
        checked(configs[key], key, TOP[key], source)
    resolve(configs, source)
    mobile = is_mobile(configs)
    if mobile:
        _check_top(configs, source)
    head = configs["act_head"]
    if not isinstance(head, dict):
        raise ConfigError(f"{source}: 'act_head' must be an object")
    if mobile or head.get("type") == HEAD_TYPE:
        check_section(head, ACT_HEAD, "act_head", source)
        committed = head.get("committed_steps", 0)
        if committed >= configs["fwd_pred_next_n"]:  # at least one chunk step must be left to predict
            raise ConfigError(f"{source}: 'act_head.committed_steps' = {committed}: expected less than fwd_pred_next_n "
                              f"({configs['fwd_pred_next_n']})")
    if configs["robovlm_name"] == CNN_TYPE:
        _check_cnn(configs, source)
    elif "cnn_backbone" in configs:
        raise ConfigError(f"{source}: 'cnn_backbone' is only read when 'robovlm_name' is {CNN_TYPE!r} (got {clip(configs['robovlm_name'])})")
    if not mobile:  # an upstream config: only the plugin's LoRA keys are ours to check
        lora = {k: v for k, v in configs["train_setup"].items() if k.startswith("lora_")}
        check_section(lora, {k: v for k, v in TRAIN_SETUP.items() if k.startswith("lora_")}, "train_setup", source)
    if configs.get("sim_eval") is not None:  # closed loop during training (sim_eval_callback.py)
        from robovlms_mobile.config.sim_eval import check_sim_eval

        try:
            check_sim_eval(configs["sim_eval"])
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    datasets = []
    for name in DATASET_SECTIONS:
        section = configs.get(name)
        if isinstance(section, dict) and section.get("type") == DATASET_TYPE:
            _check_dataset(section, name, configs, source)
            datasets.append((name, section))
        elif mobile and name in configs:
            raise ConfigError(f"{source}: '{name}.type' = {clip(section.get('type') if isinstance(section, dict) else section)}: "
                              f"expected {DATASET_TYPE!r}")
    if len(datasets) == 2:
        (a, sa), (b, sb) = datasets
        for key in ("max_speed", "prompt_template", "split_file"):  # one split file for both, or val could leak
            if sa.get(key) != sb.get(key):
                raise ConfigError(f"{source}: '{a}.{key}' ({clip(sa.get(key))}) and '{b}.{key}' ({clip(sb.get(key))}) must match")
        same_files = sa.get("data_dir") == sb.get("data_dir") and sa.get("pattern") == sb.get("pattern")
        if same_files and not sa.get("split_file"):  # one seeded split of the same files, or episodes cross it
            for key, default in (("val_ratio", 0.1), ("split_seed", 0)):
                if sa.get(key, default) != sb.get(key, default):
                    raise ConfigError(f"{source}: '{a}.{key}' ({clip(sa.get(key, default))}) and '{b}.{key}' "
                                      f"({clip(sb.get(key, default))}) must match: one split of the same episodes")
    return configs
