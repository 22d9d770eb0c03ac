"""A one-line-per-epoch summary of train/val loss, printed by rank 0."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class EpochSummary(pl.Callback):
    """Prints `epoch N step S train_loss X val_loss Y` after each validation; keeps the history."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._train_losses: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._train_losses.append(float(loss))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val = trainer.callback_metrics.get("val_loss")
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train_loss": sum(self._train_losses) / len(self._train_losses) if self._train_losses else float("nan"),
            "val_loss": float(val) if val is not None else float("nan"),
        }
        self._train_losses = []
        self.history.append(row)
        if trainer.is_global_zero:
            print(f"epoch {row['epoch']:3d}  step {row['step']:5d}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}", flush=True)
