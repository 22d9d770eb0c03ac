"""`robovlms-mobile sweep BASE_CONFIG --set key=v1,v2 ...`: train every combination, evaluate, tabulate.

Each run trains through the launcher into `<output-dir>/<run-name>/`, then is evaluated offline
on its validation split and in the closed-loop simulator; the table goes to `results.csv` and
`results.md`, bar charts to `*.png`, and every run's reports stay in its folder.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from robovlms_mobile.config import ConfigError, load_config, validate_config
from robovlms_mobile.outputs import FolderLock, check_output_root, write_text, writing
from robovlms_mobile.task import FRAME_SIZE

SEED_COLUMNS = ("success_rate", "success_std", "blanked_success_rate", "blanked_success_std", "untrained_success_rate",
                "collision_rate", "wrong_side_rate")
COLUMNS = ("val_loss", "mae_linear_x", "mae_linear_y", "sign_agreement_linear_y", "instruction_sensitivity_linear_y",
           "success_rate", "collision_rate", "wrong_side_rate")


def parse_value(text: str) -> Any:
    """JSON when it parses (8, 1e-4, true, "x"), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(item: str) -> tuple[str, list[Any]]:
    """`train_setup.lora_r=8,16,32` -> ("train_setup.lora_r", [8, 16, 32])."""
    key, sep, values = item.partition("=")
    if not sep or not key or not values:
        raise ConfigError(f"--set {item!r}: expected KEY=V1,V2,... (e.g. train_setup.lora_r=8,16,32)")
    return key.strip(), [parse_value(v.strip()) for v in values.split(",")]


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested config; every parent must exist, and the leaf must be a key the schema knows
    (`grid` validates every combination, so a typo is an error naming the key)."""
    *parents, leaf = dotted.split(".")
    node = config
    for i, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"--set {dotted}: '{'.'.join(parents[: i + 1])}' is not a section of the config")
        node = node[part]
    node[leaf] = value


def grid(base: dict[str, Any], sets: list[tuple[str, list[Any]]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(run name, overrides, config) for every combination; configs validated before anything trains."""
    runs = []
    for combo in itertools.product(*(values for _, values in sets)):
        overrides = {key: value for (key, _), value in zip(sets, combo)}
        config = copy.deepcopy(base)
        for key, value in overrides.items():
            set_key(config, key, value)
        validate_config(config)
        name = "_".join(f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in overrides.items()) or "base"
        runs.append((name, overrides, config))
    return runs


def run_sweep(base_config: str | Path, sets: list[tuple[str, list[Any]]], output_dir: str | Path, *, max_steps: int | None = None,
              max_epochs: int | None = None, episodes: int = 2, scenarios: Any = None, frame_size: tuple[int, int] = FRAME_SIZE,
              seeds: Sequence[int] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train + evaluate every combination; returns the table rows (also written to disk).

    With `seeds`, each combination trains once per seed (side by side, `experiment.run_seeds`) and its row
    holds the closed-loop means and spreads over the seeds (trained, instruction blanked, untrained) instead
    of the offline figures.
    """
    base = load_config(base_config)
    runs = grid(base, sets)
    out = check_output_root(output_dir, "--output-dir")
    with FolderLock(out, "sweep output folder"):
        return _run_grid(runs, sets, out, max_steps=max_steps, max_epochs=max_epochs, episodes=episodes,
                         scenarios=scenarios, frame_size=frame_size, seeds=seeds, progress=progress)


def _run_grid(runs: list, sets: list[tuple[str, list[Any]]], out: Path, *, max_steps: int | None, max_epochs: int | None,
              episodes: int, scenarios: Any, frame_size: tuple[int, int], seeds: Sequence[int] | None,
              progress: bool) -> list[dict[str, Any]]:
    from robovlms_mobile.recipes.train_eval import run_seeds, train_and_evaluate

    rows = []
    keys = [key for key, _ in sets]
    for name, overrides, config in tqdm(runs, desc="sweep", disable=not progress):
        run_dir = out / name
        if seeds:
            seed_runs = run_seeds(config, run_dir, seeds, episodes=episodes, frame_size=frame_size, scenarios=scenarios,
                                  max_steps=max_steps, max_epochs=max_epochs, ablations=True, progress=False)
            rows.append(_seeds_row(name, overrides, seed_runs))
        else:
            run = train_and_evaluate(config, run_dir, episodes=episodes, frame_size=frame_size, scenarios=scenarios,
                                     max_steps=max_steps, max_epochs=max_epochs, offline=True, progress=False)
            rows.append(_single_row(name, overrides, run, run_dir))
        write_tables(rows, keys, out, seeded=bool(seeds))  # after every run: a killed sweep keeps its rows
    if not seeds:
        plot_sweep(rows, out)
    return rows


def _single_row(name: str, overrides: dict[str, Any], run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    result, offline, closed = run["train"], run["offline"], run["closed_loop"]["trained"]
    write_text(run_dir / "offline.json", json.dumps(offline, indent=2), flag="sweep")
    write_text(run_dir / "closed_loop.json", json.dumps(closed, indent=2), flag="sweep")
    val_loss = run["history"][-1]["val_loss"] if run["history"] else result["metrics"].get("val_loss")
    return {"run": name, **overrides, "steps": result["global_step"], "val_loss": val_loss,
            **{k: offline[k] for k in COLUMNS if k in offline}, **{k: closed["overall"][k] for k in COLUMNS if k in closed["overall"]}}


def _seeds_row(name: str, overrides: dict[str, Any], seed_runs: list[dict[str, Any]]) -> dict[str, Any]:
    from robovlms_mobile.recipes.train_eval import spread

    success = spread(seed_runs)
    return {"run": name, **overrides, "seeds": " ".join(str(run["seed"]) for run in seed_runs),
            "steps": seed_runs[0]["global_step"],
            "success_rate": success["trained"]["mean"], "success_std": success["trained"]["std"],
            "blanked_success_rate": success["instruction_blanked"]["mean"],
            "blanked_success_std": success["instruction_blanked"]["std"],
            "untrained_success_rate": success["untrained"]["mean"],
            "collision_rate": spread(seed_runs, "collision_rate")["trained"]["mean"],
            "wrong_side_rate": spread(seed_runs, "wrong_side_rate")["trained"]["mean"]}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)


def write_tables(rows: list[dict[str, Any]], keys: list[str], out: Path, seeded: bool = False) -> tuple[Path, Path]:
    """results.csv and results.md (one row per run; with `seeded`, the over-seeds columns)."""
    header = ["run", *keys, *(["seeds", "steps", *SEED_COLUMNS] if seeded else ["steps", *COLUMNS])]
    with writing(out / "results.csv", flag="sweep") as path, open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(row.get(h)) for h in header) + " |" for row in rows]
    write_text(out / "results.md", "\n".join(lines) + "\n", flag="sweep")
    return out / "results.csv", out / "results.md"


def plot_sweep(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Bar charts: closed-loop rates and offline errors per run."""
    from robovlms_mobile.eval.plots import plot_bars

    names = [r["run"] for r in rows]
    return [
        plot_bars(names, {k: [r.get(k) for r in rows] for k in ("success_rate", "collision_rate", "wrong_side_rate")},
                  out / "closed_loop.png", "closed loop"),
        plot_bars(names, {k: [r.get(k) for r in rows] for k in ("mae_linear_x", "mae_linear_y", "instruction_sensitivity_linear_y")},
                  out / "offline.png", "offline (m/s)"),
    ]
