"""`train --devices 2` on CPU: Lightning DDP over gloo, past a sim_eval epoch, resumed after kill -9, a stall named.

Every run is a real two-process run (the script below; Lightning re-executes it for rank 1) in
its own session, waited for with a bound: a run that hangs is killed and the test fails saying so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DDP_SCRIPT = r"""
import json, os, signal, sys, time
import lightning.pytorch as pl
from robovlms_mobile.eval.sections import SECTION_CALLBACKS
from robovlms_mobile.train.launcher import train

cfg, out, opts = json.load(open(sys.argv[1])), sys.argv[2], json.loads(sys.argv[3])

class Record(pl.Callback):
    def __init__(self):
        self.episodes = []
    def write(self, trainer, tag):
        sim = next((c for c in trainer.callbacks if type(c).__name__ == "SimEvalCallback"), None)
        with open(f"{out}/rank{trainer.global_rank}-{tag}.json", "w") as f:
            json.dump({"world_size": trainer.world_size, "backend": str(trainer.strategy.process_group_backend),
                       "episodes": self.episodes, "val_loss": float(trainer.callback_metrics["val_loss"]),
                       "sim": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("sim/")},
                       "sim_state": sim.state_dict(), "global_step": trainer.global_step}, f)
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if opts.get("record_at") == [trainer.current_epoch, batch_idx]:
            self.write(trainer, opts["tag"])  # every rank, before the step's gradient all-reduce
        self.episodes += batch["episode"]
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        at = [trainer.current_epoch, batch_idx]
        if trainer.is_global_zero and opts.get("kill_at") == at:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # kill -9 of every process of the run, mid-epoch
        if trainer.global_rank == 1 and opts.get("block_at") == at:
            time.sleep(3600)  # this rank stops making progress; the others run into the next collective
    def on_train_end(self, trainer, module):
        self.write(trainer, opts["tag"])

train(cfg, output_dir=out, devices=2, progress=False, callbacks=[Record()], resume=opts.get("resume"),
      stall_timeout_min=opts.get("stall"), section_callbacks=SECTION_CALLBACKS)
"""
BOUND_S = 420  # far beyond a healthy run here; only a hang reaches it
SIM_EVAL = {"every_n_epochs": 1, "episodes": 1, "scenarios": ["1box_left_close"], "frame_size": [36, 64], "gifs": 1}


def _config(tiny_config: dict, tmp_path: Path, epochs: int, frame_cache: bool = False) -> Path:
    cfg = tiny_config
    cfg["trainer"].update(max_epochs=epochs, limit_val_batches=1, logger=["csv", "tensorboard"], log_every_n_steps=1)
    cfg["sim_eval"] = SIM_EVAL
    for name in ("train_dataset", "val_dataset"):
        cfg[name]["val_ratio"] = 0.4  # 10 episodes: 6 train (3 per rank), 4 val (2 per rank): one batch each
        if frame_cache:
            cfg[name]["cache_dir"] = str(tmp_path / "out" / "frame-cache")  # built by both ranks at once
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    (tmp_path / "ddp_train.py").write_text(DDP_SCRIPT)
    (tmp_path / "out").mkdir(exist_ok=True)
    return path


def _run(tmp_path: Path, cfg: Path, **opts) -> subprocess.CompletedProcess:
    """One two-process run in its own session; past BOUND_S its processes are killed and the test fails."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "ddp_train.py"), str(cfg), str(out), json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the two-process run {opts} made no exit in {BOUND_S} s (a DDP hang); stderr tail:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _check_ranks(ranks: list[dict], global_step: int) -> None:
    """Both ranks: DDP over gloo, disjoint shards, reduced validation loss, rank 0's sim_eval figures."""
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" and r["global_step"] == global_step for r in ranks)
    a, b = (set(r["episodes"]) for r in ranks)
    assert a and b and not a & b, f"ranks must see disjoint episodes: {sorted(a & b)}"
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"], "validation metrics are reduced across ranks"
    assert set(ranks[0]["sim"]) == {"sim/success_rate", "sim/collision_rate", "sim/wrong_side_rate"}
    assert ranks[0]["sim"] == ranks[1]["sim"] and ranks[0]["sim_state"] == ranks[1]["sim_state"]


def _check_best(out: Path, history: list[dict]) -> None:
    """best.ckpt: the checkpoint of the first evaluation with the highest success."""
    from robovlms_mobile.checkpoint.format import load_checkpoint

    record = [h["success_rate"] > max((e["success_rate"] for e in history[:i]), default=-1) for i, h in enumerate(history)]
    assert [h.get("best", False) for h in history] == record, "best: each evaluation that beat every earlier one"
    chosen = [h for h in history if h.get("best")][-1]
    assert chosen["success_rate"] == max(h["success_rate"] for h in history)
    assert load_checkpoint(out / "best.ckpt")["global_step"] == chosen["step"], "best.ckpt is the best success's"


def _stall_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("robovlms-mobile train: stalled")]


def test_two_process_run_passes_a_sim_eval_epoch_and_a_stall_is_named(tiny_config, tmp_path):
    """One launch: epoch 0 and its sim_eval on both ranks, a step of epoch 1, then rank 1 blocks: the watchdog ends it."""
    cfg = _config(tiny_config, tmp_path, epochs=2, frame_cache=True)
    out = tmp_path / "out"
    run = _run(tmp_path, cfg, tag="epoch1", record_at=[1, 0], block_at=[1, 0], stall=0.25)
    lines = _stall_lines(run.stderr)
    assert run.returncode == 1 and len(lines) == 1, run.stderr[-4000:]
    print(lines[0])
    assert "no rank made progress for 0.25 min" in lines[0]
    assert "rank 1 at step 2 (after train batch 0 of epoch 1; now ddp_train.py:" in lines[0], lines[0]
    assert "in on_train_batch_end) stopped first; rank 0 waits at step 2" in lines[0], lines[0]
    # what both ranks held at the first step after the evaluation
    ranks = [json.loads((out / f"rank{r}-epoch1.json").read_text()) for r in (0, 1)]
    _check_ranks(ranks, global_step=1)
    history = json.loads((out / "sim_eval.json").read_text())
    assert history == ranks[0]["sim_state"]["history"] and [h["epoch"] for h in history] == [1]
    _check_best(out, history)
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["best.ckpt", "epoch0-step1.ckpt", "last.ckpt"]
    assert not list(out.glob(".*.tmp-*")), "no half-written checkpoint"
    # rank-0-only files: one writer each
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]
    assert "sim/success_rate" in (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert len(list((out / "tensorboard" / "version_0").glob("events.out.tfevents.*"))) == 1
    assert [len(list(d.glob("*.gif"))) for d in (out / "sim_eval_gifs").iterdir()] == [1]
    # the frame cache both ranks built at once: one whole entry per episode, nothing half-written
    cache = out / "frame-cache"
    assert len(list(cache.glob("*.npy"))) == 10 and not list(cache.glob(".*"))
    assert len(json.loads((cache / "manifest.json").read_text())) == 10


@pytest.mark.slow  # two launches of two processes (about a minute on a quiet machine, several on a busy one)
def test_two_process_run_resumes_after_kill9_mid_run(tiny_config, tmp_path):
    cfg = _config(tiny_config, tmp_path, epochs=2)
    out = tmp_path / "out"
    killed = _run(tmp_path, cfg, tag="first", kill_at=[1, 0], stall=1)  # epoch 0 and its sim_eval done, then kill -9
    assert killed.returncode == -signal.SIGKILL and not _stall_lines(killed.stderr), killed.stderr[-4000:]
    assert [h["epoch"] for h in json.loads((out / "sim_eval.json").read_text())] == [1]
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["best.ckpt", "epoch0-step1.ckpt", "last.ckpt"]

    done = _run(tmp_path, cfg, tag="resumed", resume="last", stall=1)  # a hang ends in a minute, with the rank named
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}-resumed.json").read_text()) for r in (0, 1)]
    _check_ranks(ranks, global_step=2)
    history = json.loads((out / "sim_eval.json").read_text())
    assert history == ranks[0]["sim_state"]["history"] and [h["epoch"] for h in history] == [1, 2]  # each once
    _check_best(out, history)
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["best.ckpt", "epoch0-step1.ckpt", "epoch1-step2.ckpt", "last.ckpt"]
    assert not list(out.glob(".*.tmp-*")), "no half-written checkpoint"
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["version_0", "version_1"]  # one CSV log per launch
    assert "sim/success_rate" in (out / "logs" / "version_1" / "metrics.csv").read_text().splitlines()[0]
    assert len(list((out / "tensorboard" / "version_0").glob("events.out.tfevents.*"))) == 2  # the same run, continued
