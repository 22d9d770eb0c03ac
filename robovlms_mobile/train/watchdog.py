"""Stall watchdog: a run whose ranks all stop making progress for N minutes ends with one line, not silence.

Every rank notes its progress (train and validation batches, the ticks of rank 0's `sim_eval`)
in memory; a thread per rank publishes it to the run's rendezvous store (the TCP store the
process group was built on, which works while the collectives hang). Rank 0's thread reads
every rank's: when none has moved for `stall_timeout_min` minutes, it prints one line naming the
rank that stopped first and its last step, tells the other ranks, and every process exits with
status 1. Rank 0 doing rank-0-only work (its ticks) counts as progress; ranks waiting for it do not
need to. A single-process run has the same watchdog over an in-memory store.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

DEFAULT_MINUTES = 30.0  # config key `stall_timeout_min`, `train --stall-timeout MIN`; 0 turns it off
STALL_EXIT = 1
PREFIX = "robovlms_mobile/watchdog"
STOP_KEY, ACK_KEY = f"{PREFIX}/stop", f"{PREFIX}/ack"
COLLECTIVE_CODE = ("torch/distributed/", "torch/autograd/", "torch/nn/parallel/")  # a main thread in here waits for the other ranks


def beat(trainer: Any, where: str) -> None:
    """A sign of progress outside the lockstep hooks (rank 0's own work), when the run has a watchdog."""
    for callback in trainer.callbacks:
        if isinstance(callback, StallWatchdog):
            callback.note(trainer.global_step, where, lockstep=False)


def _shared_store(world_size: int) -> Any:
    """A client of the process group's rendezvous TCP store (an in-memory store for one process)."""
    import torch.distributed as dist

    if world_size == 1:
        return dist.HashStore()
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=timedelta(seconds=60), wait_for_workers=False)


def main_thread_at() -> tuple[str, bool]:
    """Where this process's main thread is now (`file:line in function`), and whether that is a collective."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None:
        return "unknown", False
    path = frame.f_code.co_filename.replace(os.sep, "/")
    waiting = any(part in path for part in COLLECTIVE_CODE)
    return f"{Path(path).name}:{frame.f_lineno} in {frame.f_code.co_name}", waiting


def stall_line(minutes: float, beats: dict[int, dict[str, Any]]) -> str:
    """The one line: of the ranks furthest behind in the lockstep hooks, those not waiting in a collective stopped first."""
    behind = min(b["ordinal"] for b in beats.values())
    first = [r for r, b in sorted(beats.items()) if b["ordinal"] == behind]
    first = [r for r in first if not beats[r].get("waiting")] or first
    named = "; ".join(f"rank {r} at step {beats[r]['step']} ({beats[r]['where']}; now {beats[r].get('now', 'unknown')})"
                      for r in first)
    others = [r for r in sorted(beats) if r not in first]
    rest = "; ".join(f"rank {r} waits at step {beats[r]['step']} ({beats[r]['where']}; now {beats[r].get('now', 'unknown')})"
                     for r in others)
    who = "stopped first" if others else "stopped together"
    if not others and all(beats[r].get("waiting") for r in first) and len({beats[r].get("now") for r in first}) > 1:
        who += " in different collectives (one rank entered a collective the others did not)"
    return (f"robovlms-mobile train: stalled: no rank made progress for {minutes:g} min (stall_timeout_min); "
            f"{named} {who}" + (f"; {rest}" if rest else "") + "; ending the run")


class StallWatchdog(Callback):
    """Ends a run none of whose ranks made progress for `minutes` with one line naming the rank and step."""

    def __init__(self, minutes: float, poll_s: float | None = None):
        self.minutes = float(minutes)
        self.timeout_s = self.minutes * 60
        self.poll_s = poll_s if poll_s is not None else min(10.0, max(0.2, self.timeout_s / 20))
        self._mine: dict[str, Any] = {"ordinal": 0, "ticks": 0, "step": 0, "where": "starting"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, step: int, where: str, lockstep: bool = True) -> None:
        """Record progress: lockstep hooks run on every rank alike; other work (rank 0's evaluation) only ticks."""
        mine = dict(self._mine, step=int(step), where=where)
        mine["ordinal" if lockstep else "ticks"] += 1
        self._mine = mine  # one assignment: the thread reads a whole record

    # ---- Lightning hooks ------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or self._thread is not None:
            return
        self.rank, self.world = trainer.global_rank, trainer.world_size
        try:
            self.store = _shared_store(self.world)
        except (KeyError, ValueError, RuntimeError) as exc:  # no rendezvous store to reach: train on, unwatched
            if self.rank == 0:
                print(f"robovlms-mobile train: notice: no stall watchdog ({type(exc).__name__}: {exc})", file=sys.stderr)
            return
        self.note(trainer.global_step, "setting up")
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._thread.start()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.note(trainer.global_step, f"in train batch {batch_idx} of epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.note(trainer.global_step, f"after train batch {batch_idx} of epoch {trainer.current_epoch}")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self.note(trainer.global_step, f"after validation batch {batch_idx}")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.note(trainer.global_step, f"at the end of epoch {trainer.current_epoch}")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop.set()

    # ---- the thread -----------------------------------------------------------------------
    def _watch(self) -> None:
        seen: dict[int, tuple[int, int]] = {}
        moved: dict[int, float] = {}
        published = None
        try:
            while not self._stop.wait(self.poll_s):
                mine = self._mine
                at = main_thread_at()
                if (mine, at) != published:
                    self.store.set(f"{PREFIX}/{self.rank}", json.dumps(dict(mine, now=at[0], waiting=at[1])))
                    published = (mine, at)
                if self.rank != 0:
                    if self.store.check([STOP_KEY]):
                        self.store.add(ACK_KEY, 1)
                        os._exit(STALL_EXIT)  # rank 0 printed the line; this rank may be blocked anywhere
                    continue
                now = time.monotonic()
                beats = {}
                for r in range(self.world):
                    key = f"{PREFIX}/{r}"
                    if r != 0 and not self.store.check([key]):
                        beats[r] = {"ordinal": -1, "ticks": 0, "step": 0, "where": "not started"}
                    else:
                        beats[r] = json.loads(self.store.get(key))
                    progress = (beats[r]["ordinal"], beats[r]["ticks"])
                    if seen.get(r) != progress:
                        seen[r], moved[r] = progress, now
                if now - max(moved.values()) >= self.timeout_s:
                    self._end_run(stall_line(self.minutes, beats))
        except Exception:  # noqa: BLE001 - the store is gone: the run is ending; the watchdog has nothing to say
            return

    def _end_run(self, line: str) -> None:
        self.store.set(STOP_KEY, line)
        print(line, file=sys.stderr, flush=True)
        deadline = time.monotonic() + max(5.0, 5 * self.poll_s)  # let the other ranks read it: this process holds the store
        while self.world > 1 and time.monotonic() < deadline:
            if self.store.add(ACK_KEY, 0) >= self.world - 1:
                break
            time.sleep(self.poll_s / 4)
        os._exit(STALL_EXIT)
