"""Surviving faults: atomic checkpoints, kill -9 + resume, and output-dir checks before training."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from robovlms_mobile.checkpoint.atomic_io import atomic_torch_save
from robovlms_mobile.train.launcher import OutputDirError, train

SAVE_LOOP = r"""
import sys, torch
from robovlms_mobile.checkpoint.atomic_io import atomic_torch_save
path = sys.argv[1]
step = 0
while True:
    step += 1
    atomic_torch_save({"step": step, "weights": torch.full((2_000_000,), float(step))}, path)
    print(step, flush=True)
"""


# One interpreter imports torch once and forks a fresh saver per trial (fast suite); the slow
# variant starts a whole new interpreter per trial.
SAVE_FORKS = r"""
import os, sys, torch
from robovlms_mobile.checkpoint.atomic_io import atomic_torch_save
torch.set_num_threads(1)  # no thread pool for the forked savers to inherit half-started
path = sys.argv[1]
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        step = 0
        while True:
            step += 1
            atomic_torch_save({"step": step, "weights": torch.full((2_000_000,), float(step))}, path)
            print(f"SAVED {step}", flush=True)
    print(f"PID {pid}", flush=True)
    os.waitpid(pid, 0)
    print("REAPED", flush=True)
"""


def test_kill_during_save_never_corrupts_the_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    forks = subprocess.Popen([sys.executable, "-c", SAVE_FORKS, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        for trial in range(6):
            forks.stdin.write("go\n")
            forks.stdin.flush()
            pid, saved = None, False
            while pid is None or not saved:  # the saver's PID and at least one complete save, in either order
                line = forks.stdout.readline()
                assert line, "the forking saver exited"
                pid = int(line.split()[1]) if line.startswith("PID ") else pid
                saved = saved or line.startswith("SAVED ")
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(pid, signal.SIGKILL)
            while (line := forks.stdout.readline()).strip() != "REAPED":
                assert line.startswith("SAVED "), f"unexpected line {line!r}"
            ckpt = torch.load(path, weights_only=True)
            assert torch.all(ckpt["weights"] == ckpt["step"]), f"trial {trial}: torn checkpoint"
    finally:
        forks.stdin.close()
        forks.wait(timeout=60)


@pytest.mark.slow
def test_kill_during_save_never_corrupts_the_checkpoint_fresh_interpreters(tmp_path):
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    for trial in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete save
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ckpt = torch.load(path, weights_only=True)
        assert torch.all(ckpt["weights"] == ckpt["step"]), f"trial {trial}: torn checkpoint"


@contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs (needed for a real full/read-only disk)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path):
    with tmpfs(tmp_path / "small", "size=3m") as disk:
        target = disk / "last.ckpt"
        atomic_torch_save({"step": 1, "w": torch.zeros(100_000)}, target)  # 0.4 MB
        with pytest.raises(OSError, match="could not write checkpoint .*last.ckpt.*previous file is intact"):
            atomic_torch_save({"step": 2, "w": torch.zeros(1_000_000)}, target)  # 4 MB: does not fit
        assert torch.load(target, weights_only=True)["step"] == 1
        assert [p.name for p in disk.iterdir()] == ["last.ckpt"], "temporary file left behind"


def test_read_only_output_dir_is_reported_before_training(tiny_config, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        with pytest.raises(OutputDirError, match="is not writable"):
            train(tiny_config, output_dir=ro / "run", max_steps=1, progress=False)


def test_not_enough_space_is_reported_before_training(tiny_config, tmp_path, monkeypatch):
    import robovlms_mobile.train.launcher as launcher

    started = []
    monkeypatch.setattr(launcher.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    monkeypatch.setattr(launcher, "build_datamodule", lambda *a: started.append(1))
    with pytest.raises(OutputDirError, match=r"has 0 MB free; checkpoints need about \d+ MB"):
        train(tiny_config, output_dir=tmp_path / "run", max_steps=1, progress=False)
    assert not started and not list((tmp_path / "run").glob("*.ckpt"))


# Train in a child process that prints each finished step; the test SIGKILLs it at a random step.
TRAIN_CHILD = r"""
import json, sys
import lightning.pytorch as pl
from robovlms_mobile.train.launcher import train

class PrintStep(pl.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        print(f"STEP {trainer.global_step}", flush=True)

cfg = json.load(open(sys.argv[1]))
result = train(cfg, output_dir=sys.argv[2], resume=sys.argv[3] or None, progress=False, callbacks=[PrintStep()])
lrs = result["trainer"].lr_scheduler_configs[0].scheduler.get_last_lr()
print("RESULT " + json.dumps({"step": result["global_step"], "lr": lrs[0],
                              "val_loss": result["metrics"].get("val_loss"),
                              "adam_steps": int(next(iter(result["trainer"].optimizers[0].state.values()))["step"])}), flush=True)
"""


def _run_child(cfg_path: Path, out: Path, resume: str = "", kill_at: int | None = None) -> dict | None:
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(cfg_path), str(out), resume],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for line in proc.stdout:
        if kill_at is not None and line.strip() == f"STEP {kill_at}":
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
        if line.startswith("RESULT "):
            proc.wait()
            return json.loads(line[len("RESULT "):])
    proc.wait()
    raise AssertionError(f"child exited with {proc.returncode} before finishing")


def _in_process_run(cfg_path: Path, out: Path) -> dict:
    """The same run and summary as TRAIN_CHILD, in this process (no interpreter start-up)."""
    result = train(json.loads(cfg_path.read_text()), output_dir=out, progress=False)
    return {"step": result["global_step"], "lr": result["trainer"].lr_scheduler_configs[0].scheduler.get_last_lr()[0],
            "val_loss": result["metrics"].get("val_loss"),
            "adam_steps": int(next(iter(result["trainer"].optimizers[0].state.values()))["step"])}


def _kill_and_resume(cfg: dict, tmp_path: Path, max_steps: int, kill_range: tuple[int, int],
                     reference_in_process: bool = False) -> None:
    """Reference run, a run SIGKILLed at a random step in `kill_range`, its resume: same end state."""
    cfg["trainer"].update(max_epochs=100, max_steps=max_steps, limit_val_batches=1, check_val_every_n_epoch=1)
    cfg.update(scheduler="cosine", warmup_steps=2, checkpoint_every_n_steps=2)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))

    reference = (_in_process_run if reference_in_process else _run_child)(cfg_path, tmp_path / "reference")
    kill_at = random.Random(os.getpid()).randint(*kill_range)
    assert _run_child(cfg_path, tmp_path / "killed", kill_at=kill_at) is None
    saved = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)
    assert 2 <= saved["global_step"] <= kill_at  # the last checkpoint before the kill
    resumed = _run_child(cfg_path, tmp_path / "killed", resume="last")

    assert resumed["step"] == reference["step"] == max_steps
    assert resumed["adam_steps"] == reference["adam_steps"] == max_steps  # optimiser state carried over
    assert resumed["lr"] == pytest.approx(reference["lr"], rel=1e-9)  # LR schedule restored
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], abs=0.05)


def test_kill9_then_resume_matches_uninterrupted_run(tiny_config, tmp_path):
    # 10 episodes, batch 2: 4 steps an epoch. 8 steps (two epochs, each ending in a validation),
    # killed at step 3..7: resumes from the checkpoint of step 2, 4 (epoch end) or 6 (mid-epoch).
    # The uninterrupted reference trains in this process; the killed and resumed runs are children.
    _kill_and_resume(tiny_config, tmp_path, max_steps=8, kill_range=(3, 7), reference_in_process=True)


@pytest.mark.slow
def test_kill9_then_resume_matches_uninterrupted_run_three_epochs(tiny_config, tmp_path):
    _kill_and_resume(tiny_config, tmp_path, max_steps=12, kill_range=(3, 10))
