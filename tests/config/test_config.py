"""Configs: upstream's loaders read them identically; plugin sections are checked key by key."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from robovlms_mobile.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[2]
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
    ("train_dataset", "max_speed", "fast", r"'train_dataset.max_speed' = 'fast': expected a finite number > 0"),
    ("act_head", "action_dim", 7, r"'act_head.action_dim' = 7"),
    ("train_setup", "lora_r", True, r"'train_setup.lora_r' = True: expected a positive integer"),
    ("val_dataset", "prompt_template", "no field", r"'val_dataset.prompt_template'"),
    ("act_head", "committed_steps", 10, r"'act_head.committed_steps' = 10: expected less than fwd_pred_next_n \(10\)"),
    ("act_head", "committed_steps", -1, r"'act_head.committed_steps' = -1: expected an integer >= 0"),
    ("act_head", "sideways_weight", 1000, r"'act_head.sideways_weight' = 1000"),
])
def test_bad_values_name_the_key(cfg, section, key, value, match):
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_mismatched_action_scale_between_splits(cfg):
    cfg["val_dataset"]["max_speed"] = 2.0
    with pytest.raises(ConfigError, match="train_dataset.max_speed.*val_dataset.max_speed"):
        validate_config(cfg)


def test_split_settings_must_agree_between_sections(cfg):
    cfg["train_dataset"]["val_ratio"] = 0.2
    cfg["val_dataset"]["val_ratio"] = 0.3  # a different split of the same files would put episodes in both
    with pytest.raises(ConfigError, match="'train_dataset.val_ratio' \\(0.2\\) and 'val_dataset.val_ratio' \\(0.3\\) must match"):
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
    from robovlms_mobile.train.trainer import MobileVLATrainer

    broken = copy.deepcopy(cfg)
    broken["act_head"]["nmu_layers"] = 2
    with pytest.raises(ConfigError, match="act_head.nmu_layers"):
        MobileVLATrainer(broken)


# ---- the lab's original configs (issue 12 item 2), names and notices (issue 10 item 4) ------------------

ORIGINALS = REPO / "tests" / "fixtures" / "original_configs"
LEFTRIGHT = ORIGINALS / "mobile_vla_kosmos2_frozen_lora_leftright_20251204.json"
LORA_1114 = ORIGINALS / "mobile_vla_20251114_lora.json"


@pytest.mark.parametrize("path", [LEFTRIGHT, LORA_1114], ids=["leftright_20251204", "lora_20251114"])
def test_original_configs_load_and_validate(path):
    from robovlms_mobile.config import prepare_config

    cfg, notes = prepare_config(path)
    assert cfg["trainer_type"] == "MobileVLATrainer" and cfg["act_head"]["type"] == "MobileVLALSTMDecoder"
    assert (cfg["act_head"]["window_size"], cfg["act_head"]["fwd_pred_next_n"]) == (cfg["window_size"], cfg["fwd_pred_next_n"]) == (8, 10)
    for name, split in (("train_dataset", None), ("val_dataset", "val")):
        section = cfg[name]
        assert section["pattern"] == json.loads(path.read_text())[name]["episode_pattern"]
        assert section["val_ratio"] == pytest.approx(0.2) and section.get("split") == split
        assert not {"episode_pattern", "train_split", "is_validation"} & set(section)
    assert cfg["train_dataset"]["rgb_pad"] == 10
    assert not {"norm_action", "norm_min", "norm_max"} & set(cfg)
    assert sum("no effect here:" in n for n in notes) == 1
    head_notes = [n for n in notes if n.startswith("'act_head' window_size")]
    if path == LORA_1114:  # act_head 1/1 under top-level 8/10: one line naming the values used
        assert head_notes == ["'act_head' window_size = 1, fwd_pred_next_n = 1 differ from the top level; using "
                              "window_size = 8, fwd_pred_next_n = 10 (upstream passes the top-level values to the head)"]
    else:
        assert head_notes == []


def test_our_configs_print_no_notice(monkeypatch):
    from robovlms_mobile.config import prepare_config

    monkeypatch.chdir(REPO)
    for name in ("configs/mobile_vla_lora.json", "configs/tiny_cpu.json", "configs/cnn_baseline.json", "configs/tiny_cpu_cnn.json"):
        assert prepare_config(name)[1] == [], name


def test_chunk_aliases_map_to_fwd_pred_next_n(cfg):
    from robovlms_mobile.config import prepare_config

    del cfg["fwd_pred_next_n"]
    cfg["action_chunk_size"] = 6
    with pytest.raises(ConfigError, match="missing required key 'fwd_pred_next_n'"):
        validate_config(copy.deepcopy(cfg))  # validate alone needs the canonical name
    cfg["fwd_pred_next_n"] = 6
    out, notes = prepare_config(cfg)
    assert out["fwd_pred_next_n"] == 6 and "action_chunk_size" not in out
    assert any("'action_chunk_size' -> 'fwd_pred_next_n' = 6" in n for n in notes)
    cfg["chunk_size"] = 4
    with pytest.raises(ConfigError, match="'chunk_size' = 4 disagrees with 'fwd_pred_next_n' = 6"):
        prepare_config(cfg)


def test_is_validation_on_the_training_section_is_refused(cfg):
    cfg["train_dataset"]["is_validation"] = True
    with pytest.raises(ConfigError, match="'train_dataset.is_validation' = true: would use the val split"):
        validate_config(cfg)


def test_unknown_top_level_key_in_a_mobile_config(cfg):
    cfg["learning_rte"] = 1e-4
    with pytest.raises(ConfigError, match="unknown key 'learning_rte' \\(did you mean 'learning_rate'\\?\\)"):
        validate_config(cfg)


def test_num_workers_zero_is_raised_to_one_with_a_notice(cfg):
    from robovlms_mobile.config import prepare_config

    cfg["num_workers"] = 0
    out, notes = prepare_config(cfg)
    assert out["num_workers"] == 1 and any("'num_workers' = 0 -> 1" in n for n in notes)


def test_config_check_prints_every_key(tmp_path):
    from robovlms_mobile.config.report import check_file

    import io

    buf = io.StringIO()
    assert check_file(str(LEFTRIGHT), out=buf) == 0
    text = buf.getvalue()
    raw = json.loads(LEFTRIGHT.read_text())
    for key in raw:
        assert any(line.startswith(key + " ") or line.startswith(key + ".") for line in text.splitlines()), key
    assert "train_dataset.episode_pattern" in text and "mapped: the original's name of pattern" in text
    assert "use_obs_queries" in text and "no effect here: not read by upstream" in text
    assert "0 unknown -> error" in text and text.rstrip().endswith("prints the same notices)")
