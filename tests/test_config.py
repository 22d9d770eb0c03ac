"""Configs: upstream's loaders read them identically; plugin sections are checked key by key."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from robovlms_mobile.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/mobile_vla_lora.json", "configs/tiny_cpu.json"]


@pytest.mark.parametrize("name", CONFIGS)
def test_upstream_loaders_read_the_same_config(name, upstream_dir, monkeypatch):
    from robovlms.utils.config_utils import load_config as upstream_utils_load

    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(upstream_dir))
    sys.modules.pop("main", None)
    import main

    ours = load_config(name)
    assert main.load_config(name) == ours
    assert upstream_utils_load(name) == ours
    validate_config(ours)
    sys.modules.pop("main", None)


def test_real_experiment_matches_the_spec(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config("configs/mobile_vla_lora.json")
    assert cfg["trainer_type"] == "MobileVLATrainer" and cfg["robovlm_name"] == "RoboKosMos"
    assert (cfg["window_size"], cfg["fwd_pred_next_n"]) == (8, 10)
    ts = cfg["train_setup"]
    assert (ts["lora_enable"], ts["lora_r"], ts["lora_alpha"], ts["train_vision"]) == (True, 32, 32, False)
    assert (cfg["optimizer"], cfg["learning_rate"], cfg["trainer"]["max_epochs"]) == ("adamw", 1e-4, 10)
    assert cfg["act_head"]["type"] == "MobileVLALSTMDecoder" and cfg["act_head"]["num_layers"] == 4
    assert cfg["act_head"]["hidden_size"] == 1024 and cfg["train_dataset"]["max_speed"] == 1.15


def test_tiny_config_inherits_from_the_real_one(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config("configs/tiny_cpu.json")
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["train_setup"]["lora_r"] == 16
    assert cfg["act_head"]["type"] == "MobileVLALSTMDecoder"  # inherited


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.chdir(REPO)
    return load_config("configs/tiny_cpu.json")


@pytest.mark.parametrize("section,key,value,match", [
    ("act_head", "hidden_sise", 64, r"unknown key 'act_head.hidden_sise'"),
    ("train_dataset", "max_sped", 1.0, r"unknown key 'train_dataset.max_sped'"),
    ("train_setup", "lora_rank", 8, r"unknown key 'train_setup.lora_rank'"),
    ("train_dataset", "max_speed", "fast", r"'train_dataset.max_speed' = 'fast': expected int or float"),
    ("act_head", "action_dim", 7, r"'act_head.action_dim' = 7"),
    ("train_setup", "lora_r", True, r"'train_setup.lora_r' = True: expected int"),
    ("val_dataset", "prompt_template", "no field", r"'val_dataset.prompt_template'"),
])
def test_bad_values_name_the_key(cfg, section, key, value, match):
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_mismatched_action_scale_between_splits(cfg):
    cfg["val_dataset"]["max_speed"] = 2.0
    with pytest.raises(ConfigError, match="train_dataset.max_speed.*val_dataset.max_speed"):
        validate_config(cfg)


def test_missing_required_key(cfg):
    del cfg["window_size"]
    with pytest.raises(ConfigError, match="missing required key 'window_size'"):
        validate_config(cfg)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: invalid JSON"):
        load_config(bad)
    orphan = tmp_path / "orphan.json"
    orphan.write_text(json.dumps({"parent": "nowhere.json"}))
    with pytest.raises(ConfigError, match="key 'parent': 'nowhere.json' not found"):
        load_config(orphan)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")


def test_trainer_rejects_unknown_key_before_building(cfg):
    from robovlms_mobile.trainer import MobileVLATrainer

    broken = copy.deepcopy(cfg)
    broken["act_head"]["nmu_layers"] = 2
    with pytest.raises(ConfigError, match="act_head.nmu_layers"):
        MobileVLATrainer(broken)
