"""`train --devices 2` on CPU: Lightning DDP over gloo, disjoint shards, reduced metrics, one checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DDP_SCRIPT = r"""
import json, sys
import lightning.pytorch as pl
from robovlms_mobile.train.launcher import train

out = sys.argv[2]

class Record(pl.Callback):
    episodes = []
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.episodes += batch["episode"]
    def on_train_end(self, trainer, module):
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump({"world_size": trainer.world_size, "backend": str(trainer.strategy.process_group_backend),
                       "episodes": self.episodes, "val_loss": float(trainer.callback_metrics["val_loss"])}, f)

train(json.load(open(sys.argv[1])), output_dir=out, devices=2, progress=False, callbacks=[Record()])
"""


def test_two_process_cpu_ddp(tiny_config, tmp_path):
    cfg = tiny_config
    cfg["trainer"].update(max_epochs=1, limit_val_batches=1)
    for name in ("train_dataset", "val_dataset"):
        cfg[name]["val_ratio"] = 0.4  # 10 episodes: 6 train (3 per rank), 4 val (2 per rank): one batch each
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    script = tmp_path / "ddp_train.py"  # Lightning re-executes this script for rank 1
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cfg.json"), str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    a, b = (set(r["episodes"]) for r in ranks)
    assert a and b and not a & b, f"ranks must see disjoint episodes: {sorted(a & b)}"
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"], "validation metrics are reduced across ranks"
    ckpts = sorted(p.name for p in Path(out).glob("*.ckpt"))
    assert ckpts == ["epoch0-step1.ckpt", "last.ckpt"], ckpts  # written once, by rank 0
    assert not list(Path(out).glob(".*.tmp-*"))
