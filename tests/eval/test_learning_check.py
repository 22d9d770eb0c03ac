"""Learning check: does training on ~100 simulated expert episodes produce a policy that drives?

Three closed-loop figures on held-out worlds (seeds [1000, k], the data uses [0, k]): the trained
policy, the same architecture untrained, and the trained policy with the instruction blanked;
each the mean and spread over LEARNING_CHECK_SEEDS training seeds (default 3). Three recipes:
- `product`: the product's recipe, LoRA on the pretrained tiny Kosmos-2 (model/pretrain.py, from
  the content-keyed cache) with the demo's settings (configs/tiny_cpu.json: LoRA r=16 on the text
  attention, trainable word embedding, lr 1e-3, mirror augmentation);
- `full_ft`: the random tiny Kosmos-2 fully fine-tuned (lr 2e-4, 22 epochs);
- `cnn_baseline`: the CNN baseline, a positive control for the data, head, loss and evaluator.
Run: `pytest --run-slow -s tests/eval/test_learning_check.py`; the table is printed at the end of each case.
"""

from __future__ import annotations

import json
import os
import statistics

import pytest

from robovlms_mobile.config import deep_update
from robovlms_mobile.experiment import train_and_evaluate
from sim_fixtures import make_tiny_config

N_EPISODES = 96  # 8 seeded worlds x 12 scenarios, left/right mirror pairs
EVAL_EPISODES = 2  # per scenario: 24 closed-loop episodes per figure
FRAME_SIZE = (72, 128)  # the demo's camera size, for data and closed loop
SEEDS = int(os.environ.get("LEARNING_CHECK_SEEDS", "3"))

PRODUCT = {}  # configs/tiny_cpu.json as it is: LoRA on the pretrained backbone
FULL_FT = {"learning_rate": 2e-4, "train_dataset": {"mirror": 0.0},
           "train_setup": {"lora_enable": False, "freeze_backbone": False, "train_vision": True, "train_text_embedding": True}}
CNN = {"robovlm_name": "RoboResNet", "model": "resnet", "learning_rate": 1e-3, "train_dataset": {"mirror": 0.0},
       "cnn_backbone": {"arch": "resnet10", "hidden_size": 64, "input_size": 64, "fusion_layers": 1, "heads": 4},
       "train_setup": {"freeze_backbone": False, "train_vision": True, "train_text_embedding": True, "lora_enable": False}}


@pytest.fixture(scope="module")
def hundred_episodes(tmp_path_factory):
    from robovlms_mobile.sim.expert import write_expert_episodes

    out = tmp_path_factory.mktemp("learning-episodes")
    write_expert_episodes(out, N_EPISODES, seed=0, frame_size=FRAME_SIZE)
    return out


@pytest.fixture(scope="module")
def pretrained_model_dir():
    from robovlms_mobile.model.pretrain import pretrained_tiny_kosmos2

    return pretrained_tiny_kosmos2(progress=True)  # built once, then from the cache


def _one_seed(config: dict, out, epochs: int, seed: int) -> dict:
    config = deep_update(json.loads(json.dumps(config)), {"seed": seed, "trainer": {"max_epochs": epochs}})
    run = train_and_evaluate(config, out / f"seed{seed}", episodes=EVAL_EPISODES, frame_size=FRAME_SIZE,
                             ablations=True, progress=False)
    result, figures = run["train"], {k: v["overall"] for k, v in run["closed_loop"].items()}
    print(f"\n{config['robovlm_name']} seed {seed} after {result['global_step']} steps: closed-loop success rate "
          + "  ".join(f"{k} {v['success_rate']:.2f}" for k, v in figures.items()))
    print(json.dumps({k: v["reasons"] for k, v in figures.items()}))
    return {k: v["success_rate"] for k, v in figures.items()}


def _learning_check(name: str, config: dict, out, epochs: int) -> dict:
    for section in ("train_dataset", "val_dataset"):
        config[section]["val_ratio"] = 0.1
    runs = [_one_seed(config, out, epochs, seed) for seed in range(SEEDS)]
    table = {k: (statistics.mean(r[k] for r in runs), statistics.pstdev(r[k] for r in runs)) for k in runs[0]}
    print(f"\n| recipe | seeds | trained | instruction blanked | untrained |\n|---|---|---|---|---|\n| {name} | {SEEDS} | "
          + " | ".join(f"{table[k][0]:.2f} ± {table[k][1]:.2f}" for k in ("trained", "instruction_blanked", "untrained")) + " |")
    return {k: v[0] for k, v in table.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, patch, epochs", [("product", PRODUCT, 8), ("full_ft", FULL_FT, 22), ("cnn_baseline", CNN, 6)],
                         ids=["product_pretrained_lora", "full_ft", "cnn_baseline"])
def test_policy_learns_to_drive(name, patch, epochs, base_config, tiny_model_dir, pretrained_model_dir, hundred_episodes, tmp_path):
    model_dir = pretrained_model_dir if name == "product" else tiny_model_dir
    config = deep_update(make_tiny_config(base_config, model_dir, hundred_episodes, tmp_path), patch)
    config["batch_size"], config["act_head"]["hidden_size"] = 4, 128
    rate = _learning_check(name, config, tmp_path, epochs=epochs)  # means over the seeds
    assert rate["trained"] >= rate["untrained"] + 0.25
    assert rate["trained"] > rate["instruction_blanked"]
