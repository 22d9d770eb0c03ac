"""matplotlib figures for the evaluation reports (written as PNG, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robovlms_mobile.outputs import writing  # noqa: E402


def plot_offline(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Error per chunk step (per axis) and per-axis MAE / RMSE / sensitivity bars."""
    out_dir = Path(out_dir)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for axis, values in report["mae_per_chunk_step"].items():
        ax.plot(range(len(values)), values, marker="o", label=axis)
    ax.set(xlabel="chunk step (0.4 s each)", ylabel="MAE (m/s)", title="error per chunk step")
    ax.legend()
    paths = [_save(fig, out_dir / "error_per_chunk_step.png")]
    axes = list(report["mae_per_chunk_step"])
    series = {m: [report.get(f"{m}_{a}") or 0.0 for a in axes] for m in ("mae", "rmse", "instruction_sensitivity")}
    paths.append(plot_bars(axes, series, out_dir / "offline_summary.png",
                           title="offline errors and instruction sensitivity", ylabel="m/s"))
    return paths


def plot_closed_loop(report: dict[str, Any], out_path: str | Path) -> Path:
    """Success and collision rate per scenario."""
    names = list(report["per_scenario"])
    success = [report["per_scenario"][n]["success_rate"] for n in names]
    collision = [report["per_scenario"][n]["collision_rate"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names)), 3.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], success, 0.4, label="success")
    ax.bar([x + 0.2 for x in xs], collision, 0.4, label="collision")
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="rate", title=f"closed loop: success {report['overall']['success_rate']:.2f}")
    ax.legend()
    return _save(fig, out_path)


def plot_bars(labels: Sequence[str], series: dict[str, Sequence[float]], out_path: str | Path, title: str,
              ylabel: str | None = None) -> Path:
    """Grouped bars: one group per label, one bar per series (missing values drawn as 0)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(labels)), 3.5))
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        ax.bar([i + j * width for i in range(len(labels))], [v if v is not None else 0.0 for v in values], width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8)
    return _save(fig, out_path)


def _save(fig: Any, out_path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and close `fig`."""
    fig.tight_layout()
    with writing(out_path, flag="plot") as out_path:
        fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
