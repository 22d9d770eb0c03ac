"""Simulator evaluation during training: sim/* metrics, best.ckpt by success, TensorBoard log continued on resume."""

from __future__ import annotations

import json

import pytest

from robovlms_mobile.config import ConfigError, validate_config
from robovlms_mobile.eval.sim_eval_callback import SECTION_CALLBACKS
from robovlms_mobile.train.launcher import train
from sim_fixtures import make_tiny_config, sim_episodes  # noqa: F401  (fixture)

SIM_EVAL = {"every_n_epochs": 1, "episodes": 1, "scenarios": ["1box_left_close"], "frame_size": [36, 64], "gifs": 1}


def _tags(tb_dir) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]} | {t: [e.step for e in acc.Images(t)] for t in tags["images"]}


@pytest.mark.slow  # two short trainings with a closed-loop run each (~1 min on a quiet machine)
def test_sim_eval_keeps_best_by_success_and_tensorboard_continues_on_resume(base_config, tiny_model_dir, sim_episodes, tmp_path):
    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    cfg["sim_eval"] = SIM_EVAL
    cfg["trainer"]["logger"] = ["csv", "tensorboard"]
    cfg["trainer"]["limit_train_batches"] = 2
    cfg["trainer"]["log_every_n_steps"] = 1
    out = tmp_path / "run"
    train(cfg, output_dir=out, max_epochs=1, progress=False, section_callbacks=SECTION_CALLBACKS)
    history = json.loads((out / "sim_eval.json").read_text())
    assert len(history) == 1 and history[0]["episodes"] == 1 and history[0].get("best") is True
    assert (out / "best.ckpt").is_file() and history[0]["gifs"][0].endswith(".gif")
    tags = _tags(out / "tensorboard" / "version_0")
    assert "sim/success_rate" in tags and "sim/rollout_0" in tags and "train_loss" in tags
    first_steps = tags["sim/success_rate"]

    train(cfg, output_dir=out, max_epochs=2, resume="last", progress=False, section_callbacks=SECTION_CALLBACKS)  # the same TensorBoard run goes on
    history = json.loads((out / "sim_eval.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    tags = _tags(out / "tensorboard" / "version_0")
    assert tags["sim/success_rate"][: len(first_steps)] == first_steps and len(tags["sim/success_rate"]) == 2
    assert max(tags["sim/success_rate"]) > max(first_steps)
    assert not (out / "tensorboard" / "version_1").exists()


@pytest.mark.parametrize("section, match", [({"every_n_epochs": 0}, "sim_eval.every_n_epochs"), ({"episode": 1}, "unknown key 'sim_eval.episode'"),
                                            ({"scenarios": ["3box_left"]}, "3box_left"), ({"frame_size": [36]}, "sim_eval.frame_size"),
                                            ([1], "'sim_eval' = \\[1\\]: expected null or an object")], ids=["zero", "typo", "scenario", "size", "type"])
def test_bad_sim_eval_section_is_one_clear_error(base_config, section, match):
    cfg = dict(base_config, sim_eval=section)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_evaluate_drives_the_module_and_restores_its_mode(base_config, tiny_model_dir, sim_episodes, tmp_path):
    """The fast check of the callback's one closed-loop run (the slow test above runs it inside training)."""
    from robovlms_mobile.runtime.loader import build_module
    from robovlms_mobile.eval.sim_eval_callback import SimEvalCallback

    module = build_module(make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)).train()
    callback = SimEvalCallback(tmp_path / "run", **SIM_EVAL)
    figures = callback.evaluate(module, step=3, epoch=1)
    assert figures["episodes"] == 1 and figures["epoch"] == 1 and figures["step"] == 3
    assert 0.0 <= figures["success_rate"] <= 1.0 and sum(figures["reasons"].values()) == 1
    assert figures["gifs"][0].endswith(".gif") and module.training


def test_sim_eval_section_nobody_claims_is_one_line_error(base_config, tiny_model_dir, sim_episodes, tmp_path):
    """The launcher sits below evaluation: a `sim_eval` section without its callback is refused, not dropped."""
    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    cfg["sim_eval"] = SIM_EVAL
    with pytest.raises(ConfigError, match="'sim_eval' is set but nothing here runs it"):
        train(cfg, output_dir=tmp_path / "out", max_epochs=1, progress=False)
