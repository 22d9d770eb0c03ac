"""One train-then-evaluate step, shared by `demo`, `sweep` and the learning check."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence


def train_and_evaluate(config: dict[str, Any], output_dir: str | Path, *, episodes: int, frame_size: tuple[int, int],
                       scenarios: Sequence[Any] | None = None, max_steps: int | None = None, max_epochs: int | None = None,
                       offline: bool = False, ablations: bool = False, ood: bool = False, gifs: int = 0,
                       progress: bool = True, callbacks: list | None = None,
                       timer: Callable[[str], AbstractContextManager] | None = None) -> dict[str, Any]:
    """Train `config` through the launcher, then drive held-out simulator worlds in closed loop.

    Returns `train` (the launcher's result), `history` (one train/val loss row per epoch), `module`, `meta`, `closed_loop` ({"trained": report} plus,
    with `ablations`, "instruction_blanked", "image_frozen" and "untrained") and `offline` (validation report or None).
    `timer(name)` wraps the parts "train" and "closed_loop" (e.g. to print their times); `callbacks` are
    extra Lightning callbacks for the training.
    """
    import torch

    from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.eval.offline import validation_report
    from robovlms_mobile.runtime.in_process import BlankInstruction, InProcessPolicy
    from robovlms_mobile.eval.references import FrozenImage
    from robovlms_mobile.eval.sections import SECTION_CALLBACKS
    from robovlms_mobile.train.launcher import train
    from robovlms_mobile.train.progress import EpochSummary
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS

    timer = timer or (lambda name: nullcontext())
    output_dir = Path(output_dir)
    with timer("train"):
        result = train(config, output_dir=output_dir, max_steps=max_steps, max_epochs=max_epochs, progress=progress,
                       callbacks=callbacks, section_callbacks=SECTION_CALLBACKS,
                       fresh=True)  # a recipe's own folder: its earlier run is replaced
    module = result["model"].eval()
    meta = CheckpointMetadata.from_config(module.configs)
    policy = InProcessPolicy(module, meta)
    scenarios = scenarios or DEFAULT_SCENARIOS
    with timer("closed_loop"):
        torch.manual_seed(0)  # the untrained reference and any sampling draw the same numbers every run
        closed = {"trained": evaluate_closed_loop(policy, scenarios, episodes, frame_size=frame_size, gifs=gifs,
                                                  gif_dir=output_dir / "gifs" if gifs else None, progress=progress)}
        if ablations:
            closed["instruction_blanked"] = evaluate_closed_loop(BlankInstruction(policy), scenarios, episodes,
                                                                 frame_size=frame_size)
            closed["image_frozen"] = evaluate_closed_loop(FrozenImage(policy), scenarios, episodes, frame_size=frame_size)
            closed["untrained"] = evaluate_closed_loop(InProcessPolicy.untrained(module.configs), scenarios, episodes,
                                                       frame_size=frame_size)
        if ood:
            from robovlms_mobile.sim.scenarios import OOD_SCENARIOS
            from robovlms_mobile.sim.splits import OOD_SEED

            closed_ood = {"trained": evaluate_closed_loop(policy, OOD_SCENARIOS, episodes, seed=OOD_SEED, worlds="ood",
                                                          frame_size=frame_size)}
    history = next((cb.history for cb in result["trainer"].callbacks if isinstance(cb, EpochSummary)), [])
    return {"train": result, "history": history, "module": module, "meta": meta, "closed_loop": closed,
            "closed_loop_ood": closed_ood if ood else {},
            "offline": validation_report(module, meta) if offline else None}


def _step_file(path: Path) -> Any:
    """A Lightning callback writing `<global step> <total steps>` to `path` (a parent's progress bar reads it)."""
    from lightning.pytorch.callbacks import Callback

    class StepFile(Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.is_global_zero and trainer.global_step % 5 == 0:  # one writer under DDP
                path.write_text(f"{trainer.global_step} {int(trainer.estimated_stepping_batches)}")

    return StepFile()


def _read_steps(path: Path) -> tuple[int, int]:
    try:
        done, total = (int(v) for v in path.read_text().split())
        return done, total
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return 0, 0


def _seed_job(config: dict[str, Any], seed: int, output_dir: str, threads: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One training seed in a worker process: its output (and upstream's chatter) goes to `train.log`."""
    import json
    import multiprocessing
    import os
    import resource
    import sys
    import time

    import torch

    if "fork" in multiprocessing.get_all_start_methods():
        # a spawned worker inherits "spawn" as its default: the DataLoader's workers would then
        # re-import torch at every epoch's train and validation loader (seconds of CPU each)
        multiprocessing.set_start_method("fork", force=True)
    from robovlms_mobile.outputs import write_text

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "w")  # the seed folder's own log (seed-<n>/ under the locked output folder)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    torch.set_num_threads(threads)
    start = time.perf_counter()
    run = train_and_evaluate({**config, "seed": seed}, out, progress=False, callbacks=[_step_file(out / "progress")], **kwargs)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = {"seed": seed, "global_step": run["train"]["global_step"], "epochs": run["history"],
               "closed_loop": {k: v["overall"] for k, v in run["closed_loop"].items()},
               "closed_loop_ood": {k: v["overall"] for k, v in run["closed_loop_ood"].items()},
               "gifs": run["closed_loop"]["trained"]["gifs"], "checkpoint": str(out / "last.ckpt"),
               "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
               "torch_threads": threads}
    write_text(out / "seed_report.json", json.dumps(summary, indent=2), flag="seed report")
    return summary


def run_seeds(config: dict[str, Any], output_dir: str | Path, seeds: Sequence[int], *, workers: int | None = None,
              progress: bool = True, **kwargs: Any) -> list[dict[str, Any]]:
    """`train_and_evaluate` once per training seed, seeds in parallel worker processes (`<output_dir>/seed-<n>/`).

    `kwargs` go to `train_and_evaluate` (episodes, frame_size, max_steps, ablations, gifs, ...). A CPU run
    is deterministic for a given seed and torch thread count (docs/results.md), so running seeds side by
    side changes no figure; each worker gets `cpu_count // workers` threads (1 on this 2-core machine).
    Returns one summary per seed, in the order of `seeds`.
    """
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm import tqdm

    cpus = os.cpu_count() or 1
    workers = workers or min(len(seeds), 2 * cpus)
    threads = max(1, cpus // workers)
    out = Path(output_dir)
    results: dict[int, dict[str, Any]] = {}
    for seed in seeds:  # a progress file left by an earlier run would show its steps
        (out / f"seed-{seed}" / "progress").unlink(missing_ok=True)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_seed_job, config, seed, str(out / f"seed-{seed}"), threads,
                               {**kwargs, "gifs": kwargs.get("gifs", 0) if i == 0 else 0}): seed
                   for i, seed in enumerate(seeds)}
        bar = tqdm(total=0, unit="step", desc=f"training {len(seeds)} seeds ({workers} side by side; logs in {out}/seed-*/train.log)",
                   disable=not progress)
        pending, seen = set(futures), {seed: (0, 0) for seed in seeds}
        try:
            while pending:
                finished, pending = wait(pending, timeout=2, return_when=FIRST_COMPLETED)
                for seed in seeds:  # a file caught mid-write reads (0, 0): keep the last good value
                    done, total = _read_steps(out / f"seed-{seed}" / "progress")
                    seen[seed] = (max(done, seen[seed][0]), max(total, seen[seed][1]))
                bar.total, bar.n = sum(t for _, t in seen.values()), sum(d for d, _ in seen.values())
                bar.refresh()
                for future in finished:
                    seed = futures[future]
                    try:
                        results[seed] = future.result()
                    except Exception as exc:  # the seed's own log has the traceback
                        raise RuntimeError(f"training seed {seed} failed: {exc} (see {out / f'seed-{seed}' / 'train.log'})") from exc
                    rates = "  ".join(f"{k} {v['success_rate']:.2f}" for k, v in results[seed]["closed_loop"].items())
                    bar.write(f"seed {seed}: {results[seed]['global_step']} steps, {results[seed]['wall_s']:.0f} s; "
                              f"closed-loop success {rates}")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return [results[seed] for seed in seeds]


def spread(runs: Sequence[dict[str, Any]], figure: str = "success_rate") -> dict[str, dict[str, Any]]:
    """Mean, population std, min and max over seeds of each closed-loop run's `figure`."""
    import statistics

    table = {}
    for name in runs[0]["closed_loop"]:
        values = [run["closed_loop"][name][figure] for run in runs]
        table[name] = {"mean": statistics.mean(values), "std": statistics.pstdev(values), "min": min(values),
                       "max": max(values), "per_seed": values}
    return table
