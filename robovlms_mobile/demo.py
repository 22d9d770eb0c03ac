"""The main job on the embedded default: episodes + tiny Kosmos-2 built offline, train, evaluate.

Everything lands under `runs/demo/` (the paths `configs/tiny_cpu.json` names), so the same
config also runs through upstream's own `main.py` afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robovlms_mobile.config import load_config

DEMO_EPISODES = 40


def prepare(config: dict[str, Any], n_episodes: int = DEMO_EPISODES, seed: int = 0) -> None:
    """Generate the episodes and the tiny model the config points at, unless already there."""
    from robovlms_mobile.data.synthetic import generate_episodes
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    data_dir = Path(config["train_dataset"]["data_dir"])
    if not any(data_dir.glob("*.h5")):
        files = generate_episodes(data_dir, n_episodes, seed=seed)
        print(f"generated {len(files)} V4 episodes in {data_dir}")
    model_dir = Path(config["vlm"]["pretrained_model_name_or_path"])
    if not (model_dir / "config.json").is_file():
        build_tiny_kosmos2(model_dir, seed=seed)
        print(f"built a tiny random Kosmos-2 in {model_dir}")


def run_demo(config_path: str | Path = "configs/tiny_cpu.json", *, max_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Prepare, train through the launcher, evaluate the last checkpoint; returns the figures."""
    from robovlms_mobile.checkpoint import load_checkpoint
    from robovlms_mobile.evaluate import offline_metrics
    from robovlms_mobile.launcher import build_datamodule, train
    from robovlms_mobile.progress import EpochSummary

    config = load_config(config_path)
    prepare(config)
    output_dir = Path(config["output_root"])
    result = train(config, output_dir=output_dir, max_steps=max_steps, progress=progress)
    module = result["model"]
    summary = next(cb for cb in result["trainer"].callbacks if isinstance(cb, EpochSummary)).history
    ckpt = load_checkpoint(output_dir / "last.ckpt")
    datamodule = build_datamodule(module.configs, module)
    metrics = offline_metrics(module, datamodule.val_dataloader(), config["train_dataset"].get("max_speed", 1.15))
    report = {
        "first_epoch": summary[0] if summary else None,
        "last_epoch": summary[-1] if summary else None,
        "global_step": result["global_step"],
        "checkpoint": str(output_dir / "last.ckpt"),
        "checkpoint_tensors": len(ckpt["state_dict"]),
        "checkpoint_mb": round((output_dir / "last.ckpt").stat().st_size / 2**20, 2),
        "offline_val": metrics,
    }
    (output_dir / "demo_report.json").write_text(json.dumps(report, indent=2))
    first, last = report["first_epoch"], report["last_epoch"]
    print("\n== demo summary ==")
    if first and last:
        print(f"train loss {first['train_loss']:.4f} -> {last['train_loss']:.4f}   val loss {first['val_loss']:.4f} -> {last['val_loss']:.4f}  ({report['global_step']} steps)")
    print("offline val: " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    print(f"checkpoint {report['checkpoint']} ({report['checkpoint_mb']} MB, {report['checkpoint_tensors']} trainable tensors)")
    return report
