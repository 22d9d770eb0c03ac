"""The main job on the embedded default: episodes + tiny Kosmos-2 built offline, train, evaluate.

The episodes are the simulator's scripted-expert runs (V4 files); after training, the last
checkpoint is evaluated offline on the validation episodes and in closed loop in the simulator.
Everything lands under `runs/demo/` (the paths `configs/tiny_cpu.json` names), so the same
config also runs through upstream's own `main.py` afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robovlms_mobile.config import load_config

DEMO_EPISODES = 48  # four seeded worlds for each of the 12 standard scenarios
CLOSED_LOOP_EPISODES = 1  # seeded worlds per scenario in the closed-loop check


def prepare(config: dict[str, Any], n_episodes: int = DEMO_EPISODES, seed: int = 0) -> None:
    """Generate the episodes and the tiny model the config points at, unless already there."""
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2
    from robovlms_mobile.sim.expert import write_expert_episodes

    data_dir = Path(config["train_dataset"]["data_dir"])
    if not any(data_dir.glob("*.h5")):
        files = write_expert_episodes(data_dir, n_episodes, seed=seed, progress=True)
        print(f"simulated {len(files)} scripted-expert V4 episodes in {data_dir}")
    model_dir = Path(config["vlm"]["pretrained_model_name_or_path"])
    if not (model_dir / "config.json").is_file():
        build_tiny_kosmos2(model_dir, seed=seed)
        print(f"built a tiny random Kosmos-2 in {model_dir}")


def run_demo(config_path: str | Path = "configs/tiny_cpu.json", *, max_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Prepare, train through the launcher, evaluate the last checkpoint; returns the figures."""
    from robovlms_mobile.checkpoint import load_checkpoint
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.checkpoint_meta import CheckpointMetadata
    from robovlms_mobile.eval.offline import validation_report
    from robovlms_mobile.eval.policy import BlankInstruction, InProcessPolicy
    from robovlms_mobile.launcher import train
    from robovlms_mobile.progress import EpochSummary

    config = load_config(config_path)
    prepare(config)
    output_dir = Path(config["output_root"])
    result = train(config, output_dir=output_dir, max_steps=max_steps, progress=progress)
    module = result["model"]
    summary = next(cb for cb in result["trainer"].callbacks if isinstance(cb, EpochSummary)).history
    ckpt = load_checkpoint(output_dir / "last.ckpt")
    module.eval()
    meta = CheckpointMetadata.from_config(module.configs)
    offline = validation_report(module, meta)
    metrics = {k: offline[k] for k in offline if k.startswith(("mae_l", "rmse_", "sign_", "instruction_sensitivity_l"))}
    policy = InProcessPolicy(module, meta)
    closed = evaluate_closed_loop(policy, episodes=CLOSED_LOOP_EPISODES, gif_dir=output_dir / "gifs", gifs=2, progress=progress)
    blank = evaluate_closed_loop(BlankInstruction(policy), episodes=CLOSED_LOOP_EPISODES)
    report = {
        "first_epoch": summary[0] if summary else None,
        "last_epoch": summary[-1] if summary else None,
        "global_step": result["global_step"],
        "checkpoint": str(output_dir / "last.ckpt"),
        "checkpoint_tensors": len(ckpt["state_dict"]),
        "checkpoint_mb": round((output_dir / "last.ckpt").stat().st_size / 2**20, 2),
        "offline_val": metrics,
        "closed_loop": closed["overall"],
        "closed_loop_blank_instruction": blank["overall"],
        "gifs": closed["gifs"],
    }
    (output_dir / "demo_report.json").write_text(json.dumps(report, indent=2))
    first, last = report["first_epoch"], report["last_epoch"]
    print("\n== demo summary ==")
    if first and last:
        print(f"train loss {first['train_loss']:.4f} -> {last['train_loss']:.4f}   val loss {first['val_loss']:.4f} -> {last['val_loss']:.4f}  ({report['global_step']} steps)")
    print("offline val: " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if v is not None))
    for name, figures in (("closed loop", closed["overall"]), ("closed loop, instruction blanked", blank["overall"])):
        print(f"{name} ({figures['episodes']} episodes, 12 scenarios): success {figures['success_rate']:.2f}  "
              f"collision {figures['collision_rate']:.2f}  wrong side {figures['wrong_side_rate']:.2f}  "
              f"final error {figures['final_error_m']:.2f} m")
    print(f"rollout GIFs: {', '.join(closed['gifs'])}")
    print(f"checkpoint {report['checkpoint']} ({report['checkpoint_mb']} MB, {report['checkpoint_tensors']} trainable tensors)")
    return report
