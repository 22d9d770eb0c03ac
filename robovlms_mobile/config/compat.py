"""The lab's original configs and upstream's names -> this package's keys, one notice line each.

`resolve` rewrites a Mobile VLA config in place into its canonical form (the form checked by
`validate_config`, stored in checkpoints and shown by `config check`) and returns the notice
lines: one per mapped key, one for an `act_head` window/chunk that disagrees with the top level,
one for `num_workers` 0, and one listing the keys that have no effect here.
"""

from __future__ import annotations

from typing import Any

from robovlms_mobile.config.keys import (ACT_HEAD, CHUNK_ALIASES, DATASET, DATASET_TYPE, HEAD_TYPE, NO_EFFECT, SECTIONS, TOP,
                                         TRAINER_TYPE, Key)
from robovlms_mobile.config.load import ConfigError
from robovlms_mobile.errors import clip
from robovlms_mobile.task import MAX_SPEED

DATASET_SECTIONS = ("train_dataset", "val_dataset")


def is_mobile(configs: dict[str, Any]) -> bool:
    """A Mobile VLA config (our trainer or our dataset), as opposed to an upstream 7-DOF one left untouched."""
    sections = [configs.get(n) for n in DATASET_SECTIONS]
    return configs.get("trainer_type") == TRAINER_TYPE or any(isinstance(s, dict) and s.get("type") == DATASET_TYPE for s in sections)


def checked(value: Any, key: str, spec: Key, source: str) -> Any:
    """`value` if the key's check accepts it, else one ConfigError line naming source and key."""
    want = spec.check(value)
    if want is not None:
        raise ConfigError(f"{source}: {clip(key)} = {clip(value)}: expected {want}")
    return value


def _chunk_aliases(section: dict[str, Any], where: str, configs: dict[str, Any], source: str, notes: list[str]) -> None:
    """Other names of the chunk length -> top-level fwd_pred_next_n (must agree)."""
    for alias in CHUNK_ALIASES:
        if alias not in section:
            continue
        key = f"{where}{alias}"
        value = checked(section.pop(alias), key, TOP[alias], source)
        if "fwd_pred_next_n" in configs and configs["fwd_pred_next_n"] != value:
            raise ConfigError(f"{source}: '{key}' = {value} disagrees with 'fwd_pred_next_n' = {configs['fwd_pred_next_n']!r}; "
                              "expected one chunk length (fwd_pred_next_n is the canonical name)")
        configs["fwd_pred_next_n"] = value
        notes.append(f"'{key}' -> 'fwd_pred_next_n' = {value} (the canonical name of the chunk length)")


def _head(configs: dict[str, Any], source: str, notes: list[str]) -> None:
    head = configs.get("act_head")
    if not isinstance(head, dict):
        return
    if head.get("type") == "LSTMDecoder" and head.get("action_dim", 2) == 2:
        head["type"] = HEAD_TYPE
        notes.append(f"'act_head.type' 'LSTMDecoder' -> '{HEAD_TYPE}' (upstream's head adds a gripper output to a 2-D action)")
    differ = [k for k in ("window_size", "fwd_pred_next_n") if k in head and k in configs and head[k] != configs[k]]
    for key in differ:
        checked(head[key], f"act_head.{key}", ACT_HEAD[key], source)
    if differ:
        given = ", ".join(f"{k} = {head[k]!r}" for k in differ)
        using = ", ".join(f"{k} = {configs[k]!r}" for k in differ)
        notes.append(f"'act_head' {given} differ from the top level; using {using} (upstream passes the top-level "
                     "values to the head)")
        head.update({k: configs[k] for k in differ})


def _dataset(section: dict[str, Any], where: str, configs: dict[str, Any], source: str, notes: list[str]) -> None:
    if "episode_pattern" in section:
        value = checked(section.pop("episode_pattern"), f"{where}.episode_pattern", DATASET["episode_pattern"], source)
        if section.get("pattern", value) != value:
            raise ConfigError(f"{source}: '{where}.episode_pattern' = {value!r} and '{where}.pattern' = {section['pattern']!r} "
                              "disagree; expected one glob")
        section["pattern"] = value
        notes.append(f"'{where}.episode_pattern' -> '{where}.pattern' = {value!r}")
    if "train_split" in section:
        value = checked(section.pop("train_split"), f"{where}.train_split", DATASET["train_split"], source)
        ratio = round(1.0 - float(value), 12)
        if "val_ratio" in section and section["val_ratio"] != ratio:
            raise ConfigError(f"{source}: '{where}.train_split' = {value} and '{where}.val_ratio' = {section['val_ratio']!r} "
                              "disagree; expected val_ratio = 1 - train_split")
        section["val_ratio"] = ratio
        notes.append(f"'{where}.train_split' = {value} -> '{where}.val_ratio' = {ratio:g} (a seeded, scenario-stratified "
                     "split instead of the original's sorted file order)")
    if "is_validation" in section:
        value = checked(section.pop("is_validation"), f"{where}.is_validation", DATASET["is_validation"], source)
        split = "val" if value else "train"
        expected = "val" if where == "val_dataset" else "train"
        if split != expected:
            raise ConfigError(f"{source}: '{where}.is_validation' = {str(value).lower()}: would use the {split} split for "
                              f"{where}; expected {str(not value).lower()} (or leave it out)")
        if section.get("split", split) != split:
            raise ConfigError(f"{source}: '{where}.is_validation' and '{where}.split' = {section['split']!r} disagree")
        section["split"] = split
        notes.append(f"'{where}.is_validation' = {str(value).lower()} -> '{where}.split' = {split!r}")
    _chunk_aliases(section, f"{where}.", configs, source, notes)


def _norm(configs: dict[str, Any], source: str, notes: list[str]) -> None:
    keys = [k for k in ("norm_action", "norm_min", "norm_max") if k in configs]
    if not keys:
        return
    values = {k: checked(configs.pop(k), k, TOP[k], source) for k in keys}
    lo, hi = values.get("norm_min", -1), values.get("norm_max", 1)
    if lo >= hi:
        raise ConfigError(f"{source}: 'norm_min' = {lo} and 'norm_max' = {hi}: expected norm_min < norm_max")
    train = configs.get("train_dataset") if isinstance(configs.get("train_dataset"), dict) else {}
    speed = train.get("max_speed", MAX_SPEED)
    shown = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items())
    notes.append(f"{shown} -> labels scaled to [-1, 1] by train_dataset.max_speed = {speed} m/s and the scale recorded in "
                 f"the checkpoint (the original clipped velocities to [{lo}, {hi}], losing the {MAX_SPEED} m/s key presses)")


def no_effect_keys(configs: dict[str, Any]) -> list[str]:
    """Dotted keys present with a value under which they would have done something, but do nothing here."""
    found = [k for k, v in configs.items() if k in TOP and TOP[k].kind == NO_EFFECT and not TOP[k].neutral(v)]
    for name, table in SECTIONS.items():
        section = configs.get(name)
        if isinstance(section, dict):
            found += [f"{name}.{k}" for k, v in section.items() if k in table and table[k].kind == NO_EFFECT and not table[k].neutral(v)]
    val = configs.get("val_dataset")
    if isinstance(val, dict) and val.get("rgb_pad", -1) not in (-1, 0):
        found.append("val_dataset.rgb_pad")  # augmentation is applied in training only
    return found


def resolve(configs: dict[str, Any], source: str = "config") -> list[str]:
    """Rewrite a Mobile VLA config in place into canonical keys; returns the notice lines (empty for other configs)."""
    if not is_mobile(configs):
        return []
    notes: list[str] = []
    for key in ("window_size", "fwd_pred_next_n"):
        if key in configs:
            checked(configs[key], key, TOP[key], source)
    _chunk_aliases(configs, "", configs, source, notes)
    if "trainer_type" not in configs:
        configs["trainer_type"] = TRAINER_TYPE
        notes.append(f"no 'trainer_type' -> '{TRAINER_TYPE}' (the episodes are {DATASET_TYPE}; upstream's BaseTrainer "
                     "expects 7-DOF actions)")
    _head(configs, source, notes)
    for where in DATASET_SECTIONS:
        if isinstance(configs.get(where), dict):
            _dataset(configs[where], where, configs, source, notes)
    _norm(configs, source, notes)
    if configs.get("num_workers") == 0 and not isinstance(configs.get("num_workers"), bool):
        configs["num_workers"] = 1
        notes.append("'num_workers' = 0 -> 1 (upstream's GRDataModule sets prefetch_factor, which needs a worker process)")
    return notes


def no_effect_notice(configs: dict[str, Any]) -> str | None:
    """One line naming every key that has no effect here (None when there is none)."""
    keys = no_effect_keys(configs)
    if not keys:
        return None
    return (f"no effect here: {', '.join(keys)} (accepted; `robovlms-mobile config check FILE` says why for each)")
