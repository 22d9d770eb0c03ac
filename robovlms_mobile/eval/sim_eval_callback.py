"""Simulator evaluation during training: every N epochs, a seeded closed-loop run on held-out worlds.

Config section ``sim_eval`` (top level): ``every_n_epochs`` (default 1), ``episodes`` (worlds per
scenario, default 1), ``seed`` (world seeds ``[seed, k]``, default the validation split's, sim/splits.py; a data or test
seed is refused),
``gifs`` (rollouts logged per evaluation, default 1), ``scenarios`` (names, default the 12 standard
ones), ``frame_size`` ([H, W], default [144, 256]). The success / collision / wrong-side rates
are logged as ``sim/*`` metrics (CSV and TensorBoard), the rollouts as animated GIFs in
TensorBoard, every evaluation is appended to ``<output_dir>/sim_eval.json``, and ``best.ckpt`` is
the checkpoint with the highest closed-loop success so far (not the lowest loss).

Under DDP the evaluation, the GIFs, the metric lines and ``sim_eval.json`` are rank 0's work;
the other ranks wait for it at one broadcast (``train/ranks.py``) and receive its figures, so
every rank keeps the same history, makes the same ``best.ckpt`` decision and enters the
checkpoint save (a collective) together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from robovlms_mobile.task import FRAME_SIZE


def sim_metrics(figures: dict[str, Any]) -> dict[str, float]:
    """The logged `sim/*` metrics of one evaluation."""
    return {f"sim/{key}": float(figures[key]) for key in ("success_rate", "collision_rate", "wrong_side_rate")}


class SimEvalCallback(Callback):
    """Closed-loop evaluation every N training epochs; keeps ``best.ckpt`` by success rate."""

    def __init__(self, output_dir: str | Path, every_n_epochs: int = 1, episodes: int = 1, seed: int | None = None, gifs: int = 1,
                 scenarios: list[str] | None = None, frame_size: list[int] | tuple[int, int] = FRAME_SIZE):
        from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, parse_scenario

        from robovlms_mobile.sim.splits import VAL_SEED, check_val_seed

        seed = check_val_seed(VAL_SEED if seed is None else seed)
        self.output_dir, self.every, self.episodes, self.seed, self.gifs = Path(output_dir), every_n_epochs, episodes, seed, gifs
        self.scenarios = [parse_scenario(s) for s in scenarios] if scenarios else list(DEFAULT_SCENARIOS)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.best_success: float | None = None
        self.history: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        from robovlms_mobile.train.ranks import on_rank_zero

        epoch = trainer.current_epoch + 1
        if epoch % self.every != 0 or trainer.sanity_checking:
            return
        figures = on_rank_zero(trainer, f"sim_eval after epoch {epoch}", lambda: self._evaluate_and_log(trainer, pl_module, epoch))
        # from here on every rank holds rank 0's figures: the same metrics, history and best.ckpt decision
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in sim_metrics(figures).items()})
        if self.best_success is None or figures["success_rate"] > self.best_success:
            self.best_success = figures["success_rate"]
            figures["best"] = True
        self.history.append(figures)
        if figures.get("best"):
            trainer.save_checkpoint(self.output_dir / "best.ckpt")  # a collective: entered by every rank
        on_rank_zero(trainer, "writing sim_eval.json",
                     lambda: (self.output_dir / "sim_eval.json").write_text(json.dumps(self.history, indent=2)))

    def _evaluate_and_log(self, trainer: Any, pl_module: Any, epoch: int) -> dict[str, Any]:
        """Rank 0: the evaluation, its GIFs, and its metrics straight to every logger (CSV, TensorBoard) at this step."""
        from robovlms_mobile.train.watchdog import beat

        figures = self.evaluate(pl_module, trainer.global_step, epoch, trainer.loggers,
                                on_tick=lambda: beat(trainer, f"sim_eval after epoch {epoch}"))
        for logger in trainer.loggers:
            logger.log_metrics(sim_metrics(figures), step=trainer.global_step)
            logger.save()
        return figures

    def evaluate(self, pl_module: Any, step: int, epoch: int, loggers: list | None = None,
                 on_tick: Callable[[], None] | None = None) -> dict[str, Any]:
        """One seeded closed-loop run of the module as it is now; training mode and RNG state restored.

        `on_tick` is called at every control tick (the stall watchdog's sign of progress).
        """
        from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
        from robovlms_mobile.checkpoint.metadata import CheckpointMetadata
        from robovlms_mobile.runtime.in_process import InProcessPolicy
        from robovlms_mobile.train.loggers import log_gif

        was_training = pl_module.training
        gif_dir = self.output_dir / "sim_eval_gifs" / f"epoch{epoch:03d}"
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                policy = InProcessPolicy(pl_module, CheckpointMetadata.from_config(pl_module.configs))
                if on_tick is not None:
                    policy = _Ticking(policy, on_tick)
                result = evaluate_closed_loop(policy, self.scenarios, self.episodes, seed=self.seed, frame_size=self.frame_size,
                                              gif_dir=gif_dir, gifs=self.gifs)
        finally:
            pl_module.train(was_training)
        for i, path in enumerate(result["gifs"] if loggers else []):
            log_gif(loggers, f"sim/rollout_{i}", path, step)
        overall = result["overall"]
        return {"epoch": epoch, "step": step, **{k: overall[k] for k in ("episodes", "success_rate", "collision_rate",
                                                                        "wrong_side_rate", "reasons")}, "gifs": result["gifs"]}

    def state_dict(self) -> dict[str, Any]:
        return {"best_success": self.best_success, "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_success = state_dict.get("best_success")
        self.history = list(state_dict.get("history", []))


class _Ticking:
    """A policy that calls `on_tick` before every action (the evaluation shows it is alive)."""

    def __init__(self, policy: Any, on_tick: Callable[[], None]):
        self.policy, self.on_tick = policy, on_tick

    def reset(self) -> None:
        self.policy.reset()

    def act(self, frame: Any, instruction: str) -> Any:
        self.on_tick()
        return self.policy.act(frame, instruction)
