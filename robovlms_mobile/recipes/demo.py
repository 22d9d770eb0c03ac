"""The main job on the embedded default: the product's recipe, LoRA on a pretrained tiny Kosmos-2.

Parts, each timed (wall and CPU seconds): the scripted-expert episodes (V4 files) and the pretrained
tiny Kosmos-2, each from a content-keyed cache (simulated / pretrained there when the cache is cold,
model/pretrain.py); then, once per training seed and the seeds side by side (`train_eval.run_seeds`),
LoRA training through the launcher and the closed loop on held-out test worlds (sim/splits.py): trained,
instruction blanked, image frozen, untrained; and, policy-independent, the nearest-episode replay and
the forward-until-blocked references (eval/references.py), plus the share of the held-out worlds'
expert key sequences seen verbatim in training. The trained policy and the replay also drive the
out-of-distribution set. Figures (success, SPL) are mean ± std over the seeds, with per-seed values. Everything lands under `runs/demo/` (the
paths `configs/tiny_cpu.json` names are links into the cache, each seed's run in `seed-<n>/`), so
the same config also runs through upstream's own `main.py` afterwards.
"""

from __future__ import annotations

import json
import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

from robovlms_mobile.outputs import FolderLock, check_output_root, write_text


DEMO_EPISODES = 96  # eight seeded worlds for each of the 12 standard scenarios (left/right mirror pairs)
CLOSED_LOOP_EPISODES = 2  # seeded held-out worlds per scenario: 24 episodes per figure
DEMO_FRAME_SIZE = (72, 128)  # camera frames of the demo's episodes and closed loop (resized to the model's 224 anyway)
DEMO_SEEDS = (0, 1, 2)  # training seeds; every closed-loop figure is their mean ± std
GOALS = {"success_min": 0.75, "blank_max_fraction_of_success": 0.5, "replay_max": 0.20, "image_frozen_max": 0.25,
         "seen_in_training_max": 0.10}
ROWS = ("trained", "instruction_blanked", "image_frozen", "replay", "forward", "untrained")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def timed(timings: dict[str, dict[str, float]], name: str):
    """Record the wall and CPU seconds (this process and its finished children) of a part, and print them."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    timings[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}
    print(f"[time] {name}: {timings[name]['wall_s']:.1f} s wall, {timings[name]['cpu_s']:.1f} s CPU", flush=True)


def link_into(path: Path, source: Path) -> None:
    """Make `path` (a folder the config names) a link to the cached folder `source`.

    Nothing is deleted: an old link is replaced (removing a link removes no data), and a real file or
    folder found there (an earlier demo's output, or whatever a user's config points at) is renamed
    aside to `<name>.replaced-<time>` with a notice.
    """
    if path.is_symlink() and path.resolve() == source.resolve():
        return
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        aside = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        print(f"robovlms-mobile demo: notice: {path} moved aside to {aside} (it is now a link to {source})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(source.resolve(), target_is_directory=True)


EPISODE_CODE = ("sim/render.py", "sim/scenarios.py", "sim/world.py", "sim/expert.py", "sim/planner.py", "data/writers.py", "task.py")


def expert_episodes(n_episodes: int = DEMO_EPISODES, seed: int = 0, frame_size: tuple[int, int] = DEMO_FRAME_SIZE,
                    cache_root: str | Path | None = None, progress: bool = True) -> Path:
    """The demo's scripted-expert V4 episodes, from the content-keyed cache the pretrained model uses."""
    from robovlms_mobile.model.pretrain import build_cached, cache_key, default_cache_root
    from robovlms_mobile.sim.expert import write_expert_episodes

    recipe = {"episodes": n_episodes, "seed": seed, "frame_size": list(frame_size)}
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / f"sim-episodes-{n_episodes}-{frame_size[0]}x{frame_size[1]}-{cache_key(recipe, EPISODE_CODE)}"
    build = lambda tmp: (write_expert_episodes(tmp, n_episodes, seed=seed, frame_size=frame_size, progress=progress),
                         (tmp / "episodes.json").write_text(json.dumps(recipe)))
    return build_cached(target, build, "episodes.json")


def prepare(config: dict[str, Any], timings: dict[str, dict[str, float]], n_episodes: int = DEMO_EPISODES, seed: int = 0) -> Path:
    """Episodes and the pretrained tiny model the config points at (both cached); returns the cached model folder."""
    from robovlms_mobile.model.pretrain import pretrained_tiny_kosmos2

    with timed(timings, "episodes"):
        episodes = expert_episodes(n_episodes, seed)
        for section in ("train_dataset", "val_dataset"):
            link_into(Path(config[section]["data_dir"]), episodes)
    print(f"{n_episodes} scripted-expert V4 episodes ({DEMO_FRAME_SIZE[0]}x{DEMO_FRAME_SIZE[1]}): {episodes}")
    with timed(timings, "pretrained_model"):
        source = pretrained_tiny_kosmos2(progress=True)
        link_into(Path(config["vlm"]["pretrained_model_name_or_path"]), source)
    record = json.loads((source / "pretrain.json").read_text())
    print(f"pretrained tiny Kosmos-2: {source} (caption loss {record['caption_loss']['first_10']:.2f} -> "
          f"{record['caption_loss']['last_10']:.2f}, {record['data']['frames']} frames, {record['seconds']['total']:.0f} s when built)")
    return source


def goals_met(success: dict[str, float], seen: float) -> dict[str, bool]:
    """The demo's goals on mean closed-loop success rates per row and the held-out key-sequence overlap."""
    return {"success": success["trained"] >= GOALS["success_min"],
            # a policy that never succeeds shows nothing about the instruction: 0 <= 0 is no pass
            "blank": success["trained"] > 0
            and success["instruction_blanked"] <= GOALS["blank_max_fraction_of_success"] * success["trained"],
            "replay": success["replay"] <= GOALS["replay_max"], "image_frozen": success["image_frozen"] <= GOALS["image_frozen_max"],
            "seen_in_training": seen <= GOALS["seen_in_training_max"]}


def references(data_dir: Path, episodes: int, frame_size: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Policy-independent rows on the test worlds (replay, forward) and the OOD replay; the same for every seed."""
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.eval.references import ForwardUntilBlocked, NearestReplay, read_training_episodes, training_keys
    from robovlms_mobile.sim.scenarios import OOD_SCENARIOS
    from robovlms_mobile.sim.splits import OOD_SEED

    train = read_training_episodes(data_dir)
    keys = training_keys(train)
    replay = evaluate_closed_loop(NearestReplay(train), episodes=episodes, frame_size=frame_size, train_keys=keys)
    rows = {"replay": replay, "forward": evaluate_closed_loop(ForwardUntilBlocked(), episodes=episodes, frame_size=frame_size)}
    ood = {"replay": evaluate_closed_loop(NearestReplay(train), OOD_SCENARIOS, episodes, seed=OOD_SEED, worlds="ood",
                                          frame_size=frame_size, train_keys=keys)}
    return rows, ood


def rows_table(runs: list[dict[str, Any]], fixed: dict[str, Any], key: str = "closed_loop") -> dict[str, Any]:
    """row -> {success, spl, collision, wrong_side: {mean, std, per_seed}}; a fixed (policy-independent) row repeats per seed."""
    import statistics

    table = {}
    names = list(runs[0][key]) + [n for n in fixed if n not in runs[0][key]]
    for name in names:
        per = [run[key][name] if name in run[key] else fixed[name]["overall"] for run in runs]
        table[name] = {}
        for figure, field in (("success", "success_rate"), ("spl", "spl"), ("collision", "collision_rate"),
                              ("wrong_side", "wrong_side_rate"), ("moved", "moved_rate")):
            values = [p[field] for p in per]
            table[name][figure] = {"mean": statistics.mean(values), "std": statistics.pstdev(values), "per_seed": values}
        table[name]["policy_independent"] = name not in runs[0][key]
    return table


def run_demo(config_path: str | Path = "configs/tiny_cpu.json", *, max_steps: int | None = None, progress: bool = True,
             episodes: int = CLOSED_LOOP_EPISODES, seeds: Sequence[int] = DEMO_SEEDS) -> dict[str, Any]:
    """Prepare, train LoRA once per seed (side by side), drive in closed loop; returns the figures (also demo_report.json)."""
    from robovlms_mobile.config import prepare_config

    timings: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    config, _ = prepare_config(config_path)  # checked once, before any work; `train` prints its notices
    output_dir = check_output_root(config["output_root"])
    with FolderLock(output_dir, "demo output_root"):
        return _run_demo(config, output_dir, timings, start, max_steps=max_steps, progress=progress, episodes=episodes,
                         seeds=seeds)


def _run_demo(config: dict[str, Any], output_dir: Path, timings: dict[str, dict[str, float]], start: float, *,
              max_steps: int | None, progress: bool, episodes: int, seeds: Sequence[int]) -> dict[str, Any]:
    from robovlms_mobile.recipes.train_eval import run_seeds, spread

    source = prepare(config, timings)
    with timed(timings, "references"):
        fixed, fixed_ood = references(Path(config["train_dataset"]["data_dir"]), episodes, DEMO_FRAME_SIZE)
    with timed(timings, "train_and_closed_loop"):
        runs = run_seeds(config, output_dir, seeds, episodes=episodes, frame_size=DEMO_FRAME_SIZE, max_steps=max_steps,
                         ablations=True, ood=True, gifs=2, progress=progress)
    table = rows_table(runs, fixed)
    ood_table = rows_table(runs, fixed_ood, key="closed_loop_ood")
    seen = fixed["replay"]["seen_in_training"]
    timings["total"] = {"wall_s": round(time.perf_counter() - start, 1)}
    report = {
        "recipe": {"model": str(source), "lora_r": config["train_setup"].get("lora_r"), "learning_rate": config["learning_rate"],
                   "train_dataset": {k: config["train_dataset"].get(k) for k in ("mirror", "rgb_pad", "color_jitter")},
                   "seeds": list(seeds), "max_epochs": config["trainer"].get("max_epochs"), "max_steps": max_steps,
                   "episodes": DEMO_EPISODES, "frame_size": list(DEMO_FRAME_SIZE)},
        "held_out": {"split": "test", "seed": fixed["replay"]["settings"]["seed"], "worlds": "iid",
                     "episodes": fixed["replay"]["overall"]["episodes"], "seen_in_training": seen},
        "rows": {name: table[name] for name in ROWS if name in table},
        "ood": {"split": "ood", "seed": fixed_ood["replay"]["settings"]["seed"], "scenarios": fixed_ood["replay"]["settings"]["scenarios"],
                "seen_in_training": fixed_ood["replay"]["seen_in_training"], "rows": ood_table},
        "goals": GOALS,
        "goals_met": goals_met({k: v["success"]["mean"] for k, v in table.items()}, seen["same_instruction"]),
        "seeds": runs,
        "gifs": runs[0]["gifs"],
        "timings": timings,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    write_text(output_dir / "demo_report.json", json.dumps(report, indent=2), flag="demo report")
    print("\n== demo summary ==")
    for run in runs:
        epochs = run["epochs"]
        loss = (f"train loss {epochs[0]['train_loss']:.4f} -> {epochs[-1]['train_loss']:.4f}, val loss "
                f"{epochs[0]['val_loss']:.4f} -> {epochs[-1]['val_loss']:.4f}" if epochs else "no epoch finished")
        print(f"seed {run['seed']}: {run['global_step']} steps, {loss}; checkpoint {run['checkpoint']}")
    n = runs[0]["closed_loop"]["trained"]["episodes"]
    print(f"closed loop on {n} held-out test worlds (12 scenarios); expert key sequences seen verbatim in training: "
          f"{seen['same_instruction']:.2f} (same instruction), {seen['any_instruction']:.2f} (any)")
    print(f"success and SPL, mean ± std over {len(runs)} training seeds (per seed); * = policy-independent:")
    for name, row in report["rows"].items():
        print(f"  {name + ('*' if row['policy_independent'] else ''):<20} success {row['success']['mean']:.2f} ± {row['success']['std']:.2f} "
              f"({' '.join(f'{v:.2f}' for v in row['success']['per_seed'])})  SPL {row['spl']['mean']:.2f} ± {row['spl']['std']:.2f}  "
              f"moved {row['moved']['mean']:.2f}")
    print(f"out of distribution ({', '.join(report['ood']['scenarios'][:2])}, ...; colours and distances never in training):")
    for name, row in ood_table.items():
        print(f"  {name:<20} success {row['success']['mean']:.2f} ± {row['success']['std']:.2f}  SPL {row['spl']['mean']:.2f}")
    for name, ok in report["goals_met"].items():
        print(f"goal {name}: {'met' if ok else 'NOT met'}")
    for name in runs[0]["closed_loop"]:
        print(f"  {name} outcomes, seed {runs[0]['seed']}: {runs[0]['closed_loop'][name]['reasons']}")
    print("time: " + "  ".join(f"{k} {v['wall_s']:.0f} s" for k, v in timings.items()) + f"  (load average {os.getloadavg()[0]:.1f})")
    print(f"rollout GIFs: {', '.join(runs[0]['gifs'])}")
    print(f"report: {output_dir / 'demo_report.json'}")
    return report
