"""Learning check: does training on the demo's simulated expert episodes produce a policy that drives?

Three recipes on the same data (the demo's 96 episodes at 72x128, seed 0) and the same budget (the
demo's 928 optimiser steps, batch 4), each over LEARNING_CHECK_SEEDS training seeds (default 3,
trained side by side by `experiment.run_seeds`):
- `product`: the product's recipe, LoRA on the pretrained tiny Kosmos-2 (model/pretrain.py, from the
  content-keyed cache) with the demo's settings (configs/tiny_cpu.json) -- the demo's own run;
- `full_ft`: the random tiny Kosmos-2 fully fine-tuned (lr 2e-4): what pretraining buys at equal budget;
- `cnn_baseline`: the CNN baseline, a positive control for the data, head, loss and evaluator.
Figures per recipe: closed-loop success on 24 held-out worlds (seeds [1000, k]; the data uses [0, k])
trained / instruction blanked / untrained, mean ± std over the seeds.
Run: `pytest --run-slow -s tests/eval/test_learning_check.py`; the table is printed at the end.
"""

from __future__ import annotations

import json
import os

import pytest

from robovlms_mobile.config import deep_update
from robovlms_mobile.recipes.demo import DEMO_EPISODES, DEMO_FRAME_SIZE as FRAME_SIZE  # the demo's data and camera size
from robovlms_mobile.recipes.train_eval import run_seeds, spread
from sim_fixtures import make_tiny_config

EVAL_EPISODES = 2  # per scenario: 24 closed-loop episodes per figure
SEEDS = tuple(range(int(os.environ.get("LEARNING_CHECK_SEEDS", "3"))))

PRODUCT = {}  # configs/tiny_cpu.json as it is: LoRA on the pretrained backbone
FULL_FT = {"learning_rate": 2e-4, "train_dataset": {"mirror": 0.0},
           "train_setup": {"lora_enable": False, "freeze_backbone": False, "train_vision": True, "train_text_embedding": True}}
CNN = {"robovlm_name": "RoboResNet", "model": "resnet", "learning_rate": 1e-3, "train_dataset": {"mirror": 0.0},
       "cnn_backbone": {"arch": "resnet10", "hidden_size": 64, "input_size": 64, "fusion_layers": 1, "heads": 4},
       "train_setup": {"freeze_backbone": False, "train_vision": True, "train_text_embedding": True, "lora_enable": False}}
RECIPES = {"product_pretrained_lora": PRODUCT, "full_ft": FULL_FT, "cnn_baseline": CNN}


@pytest.fixture(scope="module")
def demo_episodes():
    from robovlms_mobile.recipes.demo import expert_episodes

    return expert_episodes(DEMO_EPISODES, seed=0, frame_size=FRAME_SIZE)  # the demo's own, from the same cache


@pytest.fixture(scope="module")
def pretrained_model_dir():
    from robovlms_mobile.model.pretrain import pretrained_tiny_kosmos2

    return pretrained_tiny_kosmos2(progress=True)  # built once, then from the cache


def recipe_config(name: str, base_config: dict, model_dir, data_dir, out) -> dict:
    """The demo's config (batch 4, head 128, val 0.1) with the recipe's changes and absolute paths."""
    config = deep_update(make_tiny_config(base_config, model_dir, data_dir, out), json.loads(json.dumps(RECIPES[name])))
    config["batch_size"], config["act_head"]["hidden_size"] = base_config["batch_size"], base_config["act_head"]["hidden_size"]
    for section in ("train_dataset", "val_dataset"):
        config[section]["val_ratio"] = base_config[section]["val_ratio"]
    config["trainer"]["max_epochs"] = base_config["trainer"]["max_epochs"]
    return config


@pytest.mark.slow
def test_policy_learns_to_drive(base_config, tiny_model_dir, pretrained_model_dir, demo_episodes, tmp_path):
    table = {}
    for name in RECIPES:
        model_dir = pretrained_model_dir if name == "product_pretrained_lora" else tiny_model_dir
        config = recipe_config(name, base_config, model_dir, demo_episodes, tmp_path / name)
        runs = run_seeds(config, tmp_path / name, SEEDS, episodes=EVAL_EPISODES, frame_size=FRAME_SIZE, ablations=True,
                         progress=False)
        table[name] = spread(runs)
        for run in runs:
            print(f"{name} seed {run['seed']}: {run['global_step']} steps, "
                  + json.dumps({k: v["reasons"] for k, v in run["closed_loop"].items()}))
    print(f"\nclosed-loop success on {EVAL_EPISODES * 12} held-out episodes, {runs[0]['global_step']} steps each, mean ± std over "
          f"seeds {list(SEEDS)}\n| recipe | trained | instruction blanked | untrained |\n|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}"
                                          for k in ("trained", "instruction_blanked", "untrained")) + " |")
    product, full_ft, cnn = (table[k] for k in RECIPES)
    for row in (product, cnn):
        assert row["trained"]["mean"] >= row["untrained"]["mean"] + 0.25
        assert row["trained"]["mean"] > row["instruction_blanked"]["mean"]
    assert product["trained"]["mean"] > full_ft["trained"]["mean"]  # what the pretrained backbone buys at equal budget
