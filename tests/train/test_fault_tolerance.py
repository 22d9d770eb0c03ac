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
from robovlms_mobile.checkpoint.format import load_checkpoint
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


# Train in a child process that prints each finished step and its loss; at step `stop_at` it stops
# before that step's checkpoint is written (ModelCheckpoint runs after every other callback) and
# waits there to be SIGKILLed, so the killed run always leaves the same last.ckpt behind.
# Lightning restores weights, optimiser, scheduler and loop counters, but not the random streams
# (the RandomSampler's shuffle, the DataLoader workers' seeds for the mirror draws, dropout): the
# test's CarryRng callback saves them into the checkpoint and puts them back when the resumed
# epoch starts, so everything the plugin restores can be compared bit for bit.
TRAIN_CHILD = r"""
import json, random, sys, time
import numpy as np, torch
import lightning.pytorch as pl
from robovlms_mobile.train.launcher import train

stop_at = int(sys.argv[4])

class PrintStep(pl.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        print(f"STEP {trainer.global_step} LOSS {float(outputs['loss'])!r}", flush=True)
        if trainer.global_step == stop_at:
            print("WAITING", flush=True)
            time.sleep(3600)

class CarryRng(pl.Callback):
    pending = None
    def state_dict(self):  # tensors and plain numbers only: checkpoints are read with weights_only=True
        name, keys, *rest = np.random.get_state()
        return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), *rest],
                "python": random.getstate()}
    def load_state_dict(self, state):
        self.pending = state
    def on_train_epoch_start(self, trainer, module):
        if self.pending is not None:
            name, keys, *rest = self.pending["numpy"]
            torch.set_rng_state(self.pending["torch"]); np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
            random.setstate(self.pending["python"]); self.pending = None

cfg = json.load(open(sys.argv[1]))
result = train(cfg, output_dir=sys.argv[2], resume=sys.argv[3] or None, progress=False, callbacks=[PrintStep(), CarryRng()])
lrs = result["trainer"].lr_scheduler_configs[0].scheduler.get_last_lr()
print("RESULT " + json.dumps({"step": result["global_step"], "lr": lrs[0],
                              "val_loss": result["metrics"].get("val_loss"),
                              "adam_steps": int(next(iter(result["trainer"].optimizers[0].state.values()))["step"])}), flush=True)
"""


def _run_child(cfg_path: Path, out: Path, resume: str = "", kill_at: int = -1) -> tuple[dict | None, dict[int, float]]:
    """(summary, or None when killed at `kill_at`; {step: training loss}) of one training child."""
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(cfg_path), str(out), resume, str(kill_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    losses = {}
    try:
        for line in proc.stdout:
            if line.startswith("STEP "):
                _, step, _, loss = line.split()
                losses[int(step)] = float(loss)
            elif line.strip() == "WAITING":
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return None, losses
            elif line.startswith("RESULT "):
                proc.wait()
                return json.loads(line[len("RESULT "):]), losses
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise AssertionError(f"child exited with {proc.returncode} before finishing")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert wa.keys() == wb.keys() and wa
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{a.name} vs {b.name}: {len(different)} tensors differ, e.g. {different[0]}"


def _kill_and_resume(cfg: dict, tmp_path: Path, max_steps: int, kill_at: int, resumes_from: int) -> None:
    """Reference run; a run SIGKILLed at step `kill_at`; its resume: bit for bit the reference's steps and end state.

    Only epoch-end checkpoints (written after the epoch's validation, so the carried random state is
    the one the next epoch starts from); a mid-epoch resume is not exact in Lightning (a plain
    DataLoader restarts at the epoch's first batch), see test_resume_from_a_mid_epoch_checkpoint.
    """
    cfg["trainer"].update(max_epochs=100, max_steps=max_steps, limit_val_batches=1, check_val_every_n_epoch=1)
    cfg.update(scheduler="cosine", warmup_steps=2, checkpoint_every_n_steps=0)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))

    reference, reference_losses = _run_child(cfg_path, tmp_path / "reference")
    killed, killed_losses = _run_child(cfg_path, tmp_path / "killed", kill_at=kill_at)
    assert killed is None and sorted(killed_losses) == list(range(1, kill_at + 1))
    assert killed_losses == {s: reference_losses[s] for s in killed_losses}  # same seed: the same run until the kill
    saved = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == resumes_from  # the last checkpoint before the kill (an epoch end)
    _assert_same_weights(tmp_path / "killed" / "last.ckpt", next((tmp_path / "reference").glob(f"epoch*-step{resumes_from}.ckpt")))
    resumed, resumed_losses = _run_child(cfg_path, tmp_path / "killed", resume="last")

    assert sorted(resumed_losses) == list(range(resumes_from + 1, max_steps + 1))
    assert resumed_losses == {s: reference_losses[s] for s in resumed_losses}  # every step after the resume, exactly
    assert resumed == reference  # steps, AdamW step count, LR schedule position, final val_loss: exactly
    assert resumed["step"] == resumed["adam_steps"] == max_steps
    _assert_same_weights(tmp_path / "killed" / "last.ckpt", tmp_path / "reference" / "last.ckpt")


def test_kill9_then_resume_matches_uninterrupted_run(tiny_config, tmp_path):
    # 10 episodes, batch 2: 4 steps an epoch. 8 steps (two epochs, each ending in a validation),
    # killed at step 5: resumes from the epoch-end checkpoint of step 4.
    _kill_and_resume(tiny_config, tmp_path, max_steps=8, kill_at=5, resumes_from=4)


@pytest.mark.slow
def test_kill9_then_resume_matches_uninterrupted_run_three_epochs(tiny_config, tmp_path):
    # three epochs; killed at step 10, resumes from the end of epoch two (step 8)
    _kill_and_resume(tiny_config, tmp_path, max_steps=12, kill_at=10, resumes_from=8)


@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_saves_the_newest_step_and_says_how_to_resume(tiny_config, tmp_path, target):
    """`kill PID` (Lightning notes it) or a group SIGTERM (the data-loader worker dies first): one line, exit 143,
    last.ckpt at the step it reached, and --resume last continues from there."""
    tiny_config["trainer"].update(max_epochs=1000, max_steps=100_000, limit_val_batches=1)
    tiny_config.update(num_workers=1, checkpoint_every_n_steps=0)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_config))
    out = tmp_path / "run"
    cli = str(Path(sys.executable).with_name("robovlms-mobile"))
    proc = subprocess.Popen([cli, "train", str(cfg_path), "--output-dir", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("epoch1-step*.ckpt")):  # two epochs in: well inside the training loop
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.2)
        (os.kill if target == "process" else os.killpg)(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [line for line in stderr.splitlines() if "robovlms-mobile train:" in line]
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    assert "stopped: SIGTERM at step" in lines[0] and "continue with --resume last" in lines[0]
    step = int(lines[0].split("SIGTERM at step ")[1].split(":")[0])
    assert step >= 8 and torch.load(out / "last.ckpt", weights_only=True)["global_step"] == step
    resumed = train(tiny_config, output_dir=out, resume="last", max_steps=step + 2, progress=False)
    assert resumed["global_step"] == step + 2
