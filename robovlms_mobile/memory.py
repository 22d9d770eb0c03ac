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

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[Phase]:
        """`with log.run("build"): ...` times the block and records its RSS peak."""
        phase = self.phases.setdefault(name, Phase(name))
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
