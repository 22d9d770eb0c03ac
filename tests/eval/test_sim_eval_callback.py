"""Simulator evaluation during training: sim/* metrics, best.ckpt by success, TensorBoard log continued on resume."""

from __future__ import annotations

import json

import pytest

from robovlms_mobile.config import ConfigError, validate_config
from robovlms_mobile.eval.sections import SECTION_CALLBACKS
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


def test_a_worse_later_evaluation_keeps_best_ckpt_and_a_better_one_replaces_it(base_config, tiny_model_dir, sim_episodes,
                                                                              tmp_path, monkeypatch):
    """Real training and real checkpoint saving; only the closed-loop figures are scripted (the callback's evaluation seam)."""
    import torch

    from robovlms_mobile.checkpoint.format import load_checkpoint
    from robovlms_mobile.eval.sim_eval_callback import SimEvalCallback

    scripted = iter([0.5, 0.25, 0.75])  # epoch 1 best so far, epoch 2 worse, epoch 3 better

    def evaluate(self, pl_module, step, epoch, loggers=None, **_):
        rate = next(scripted)
        return {"epoch": epoch, "step": step, "episodes": 4, "success_rate": rate, "collision_rate": 1 - rate,
                "wrong_side_rate": 0.0, "reasons": {}, "gifs": []}

    monkeypatch.setattr(SimEvalCallback, "evaluate", evaluate)
    cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, tmp_path)
    cfg["sim_eval"] = SIM_EVAL
    cfg["trainer"]["limit_train_batches"] = 1
    out = tmp_path / "run"
    snapshots = []

    def after_epoch(trainer, pl_module):  # best.ckpt as it stands after each epoch's evaluation
        ckpt = load_checkpoint(out / "best.ckpt")
        head = {k: v.clone() for k, v in ckpt["state_dict"].items() if "act_head" in k}
        snapshots.append((ckpt["epoch"], ckpt["global_step"], head, {k: v.detach().clone() for k, v in pl_module.state_dict().items() if k in head}))

    original = SimEvalCallback.on_train_epoch_end
    monkeypatch.setattr(SimEvalCallback, "on_train_epoch_end", lambda self, t, m: (original(self, t, m), after_epoch(t, m)))
    train(cfg, output_dir=out, max_epochs=3, progress=False, section_callbacks=SECTION_CALLBACKS)

    history = json.loads((out / "sim_eval.json").read_text())
    assert [(h["epoch"], h["success_rate"], h.get("best", False)) for h in history] == [(1, 0.5, True), (2, 0.25, False), (3, 0.75, True)]
    (e1, s1, head1, live1), (e2, s2, head2, live2), (e3, s3, head3, live3) = snapshots
    assert (s1, s2, s3) == (1, 1, 3) and e2 == e1  # after the worse epoch 2, best.ckpt is still epoch 1's
    assert head1 and all(torch.equal(head1[k], live1[k]) for k in head1)  # saved then: the weights of that moment
    assert all(torch.equal(head2[k], head1[k]) for k in head1) and not all(torch.equal(head2[k], live2[k]) for k in head1)
    assert all(torch.equal(head3[k], live3[k]) for k in head3) and e3 > e1  # the better epoch 3 replaced it
    assert load_checkpoint(out / "best.ckpt")["global_step"] == 3
