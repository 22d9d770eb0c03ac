"""Memory, measured and estimated: peak RSS per phase on CPU, and the GPU estimate derived from it.

`PeakRSS` samples this process's resident set size (psutil) on a background thread, so each
phase (build, step, save, load) gets its own peak, not the lifetime maximum of `ru_maxrss`.
`gpu_estimate` is an estimate, not a measurement: it adds up weights, gradients and AdamW
states from parameter counts and scales the activation memory measured on CPU.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psutil

GIB = 2**30
CUDA_OVERHEAD_BYTES = GIB  # CUDA context + allocator slack: an assumption, stated in the output


class PeakRSS:
    """Context manager: the peak resident set size (bytes) while the block runs, sampled every `interval` s."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.process = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self.process.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def rise(self) -> int:
        """Peak minus the RSS when the block started."""
        return self.peak - self.start


@dataclass
class Phase:
    """One timed phase: wall seconds and peak RSS."""

    name: str
    seconds: float = 0.0
    peak_rss: int = 0
    rise: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


class PhaseLog:
    """Times phases and records their RSS peaks, in order."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self.on_start = lambda name: None  # e.g. tell a MemoryGuard which phase is running

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[Phase]:
        """`with log.run("build"): ...` times the block and records its RSS peak."""
        phase = self.phases.setdefault(name, Phase(name))
        self.on_start(name)
        start = time.perf_counter()
        with PeakRSS() as rss:
            yield phase
        phase.seconds = time.perf_counter() - start
        phase.peak_rss, phase.rise = rss.peak, rss.rise


def precision_bytes(precision: str | int) -> tuple[int, int, float]:
    """(bytes per weight, bytes per gradient/optimizer value, activation scale vs fp32) for a Lightning precision."""
    p = str(precision).lower()
    if p in ("bf16", "bf16-true", "16-true", "fp16"):
        return 2, 2, 0.5  # weights, grads and states kept in 16 bit
    if p in ("bf16-mixed", "16-mixed", "16"):
        return 4, 4, 0.5  # fp32 master weights; autocast keeps matmul inputs in 16 bit
    return 4, 4, 1.0


def gpu_estimate(*, total_params: int, trainable_params: int, precision: str | int, activation_bytes_cpu: int,
                 cpu_batch: int, batch: int) -> dict[str, Any]:
    """Estimated GPU memory for training in `precision` at `batch`; every term and the method are returned."""
    w, g, act_scale = precision_bytes(precision)
    weights = total_params * w
    grads = trainable_params * g
    adamw = 2 * trainable_params * g
    activations = int(activation_bytes_cpu * (batch / max(cpu_batch, 1)) * act_scale)
    total = weights + grads + adamw + activations + CUDA_OVERHEAD_BYTES
    method = (f"ESTIMATE, not measured: weights {total_params:,} x {w} B + grads {trainable_params:,} x {g} B + "
              f"AdamW 2 x {trainable_params:,} x {g} B + activations measured on CPU at batch {cpu_batch} "
              f"x {batch}/{cpu_batch} x {act_scale} (precision {precision}) + {CUDA_OVERHEAD_BYTES / GIB:.0f} GiB "
              f"assumed CUDA context/allocator slack")
    return {"total_gb": total / GIB, "weights_gb": weights / GIB, "grads_gb": grads / GIB, "adamw_gb": adamw / GIB,
            "activations_gb": activations / GIB, "precision": str(precision), "batch": batch, "method": method}


class MemoryGuard:
    """Ends this process with a one-line error before it exhausts a shared machine's memory.

    A background thread checks every `interval` s that this process's RSS stays under `max_rss`
    bytes and that the machine keeps `min_available` bytes available; otherwise it prints why,
    kills this process's children (data-loader workers) and exits with status 3. A long C++
    call (a 1.6 B-parameter backward) does not return to Python in time for a signal, so the
    thread exits the process itself.
    """

    def __init__(self, max_rss: int, min_available: int = GIB, interval: float = 0.2, what: str = "robovlms-mobile"):
        self.max_rss, self.min_available, self.interval, self.what = max_rss, min_available, interval, what
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import os
        import sys

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            rss, available = me.memory_info().rss, psutil.virtual_memory().available
            if rss <= self.max_rss and available >= self.min_available:
                continue
            why = (f"RSS {rss / GIB:.1f} GiB passed the limit {self.max_rss / GIB:.1f} GiB" if rss > self.max_rss else
                   f"only {available / GIB:.1f} GiB left available on the machine (floor {self.min_available / GIB:.1f} GiB)")
            print(f"{self.what}: error: stopped during phase '{self.phase}': {why}; raise --max-rss-gb, lower "
                  f"--batch-size or enable gradient checkpointing", file=sys.stderr, flush=True)
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            os._exit(3)

    def __enter__(self) -> "MemoryGuard":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
