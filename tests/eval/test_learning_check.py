"""Learning check: does training on ~100 simulated expert episodes produce a policy that drives?

Three closed-loop figures on held-out worlds (seeds [1000, k], the data uses [0, k]): the trained
policy, the same architecture untrained, and the trained policy with the instruction blanked. The
CNN baseline runs the same check as a positive control for the data, head, loss and evaluator.
"""

from __future__ import annotations

import json

import pytest
import torch

from robovlms_mobile.config import deep_update
from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
from robovlms_mobile.eval.policy import BlankInstruction, InProcessPolicy
from robovlms_mobile.launcher import train
from sim_fixtures import make_tiny_config

N_EPISODES = 96  # 8 seeded worlds x 12 scenarios, left/right mirror pairs
EVAL_EPISODES = 2  # per scenario: 24 closed-loop episodes per figure

# The tiny Kosmos-2 is random: there is nothing pre-trained for LoRA to keep, so the check fine-tunes all of it
# (as upstream's full-FT Kosmos configs do). With LoRA r=8 it learned progress but not the side in 2,270 steps;
# fully fine-tuned at 2e-4 the side appears after about 2,500-3,500 steps (val loss 0.030 -> 0.008).
TINY_VLA = {"learning_rate": 2e-4,
            "train_setup": {"lora_enable": False, "freeze_backbone": False, "train_vision": True, "train_text_embedding": True}}
CNN = {"robovlm_name": "RoboResNet", "model": "resnet", "learning_rate": 1e-3,
       "cnn_backbone": {"arch": "resnet10", "hidden_size": 64, "input_size": 64, "fusion_layers": 1, "heads": 4},
       "train_setup": {"freeze_backbone": False, "train_vision": True, "train_text_embedding": True, "lora_enable": False}}


@pytest.fixture(scope="module")
def hundred_episodes(tmp_path_factory):
    from robovlms_mobile.sim.expert import write_expert_episodes

    out = tmp_path_factory.mktemp("learning-episodes")
    write_expert_episodes(out, N_EPISODES, seed=0)
    return out


def _learning_check(config: dict, out, epochs: int) -> dict:
    config["trainer"]["max_epochs"] = epochs
    for name in ("train_dataset", "val_dataset"):
        config[name]["val_ratio"] = 0.1
    result = train(config, output_dir=out / "run", progress=False)
    policy = InProcessPolicy.from_checkpoint(result["last_checkpoint"])
    torch.manual_seed(0)
    figures = {
        "trained": evaluate_closed_loop(policy, episodes=EVAL_EPISODES)["overall"],
        "untrained": evaluate_closed_loop(InProcessPolicy.untrained(config), episodes=EVAL_EPISODES)["overall"],
        "instruction_blanked": evaluate_closed_loop(BlankInstruction(policy), episodes=EVAL_EPISODES)["overall"],
    }
    print(f"\n{config['robovlm_name']} after {result['global_step']} steps: closed-loop success rate "
          + "  ".join(f"{k} {v['success_rate']:.2f}" for k, v in figures.items()))
    print(json.dumps({k: {m: v[m] for m in ("success_rate", "collision_rate", "wrong_side_rate", "reasons")}
                      for k, v in figures.items()}))
    return {k: v["success_rate"] for k, v in figures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("patch, epochs", [(TINY_VLA, 22), (CNN, 6)], ids=["tiny_vla", "cnn_baseline"])
def test_policy_learns_to_drive(patch, epochs, base_config, tiny_model_dir, hundred_episodes, tmp_path):
    config = deep_update(make_tiny_config(base_config, tiny_model_dir, hundred_episodes, tmp_path), patch)
    config["batch_size"], config["act_head"]["hidden_size"] = 4, 128
    rate = _learning_check(config, tmp_path, epochs=epochs)
    assert rate["trained"] >= rate["untrained"] + 0.25
    assert rate["trained"] > rate["instruction_blanked"]
