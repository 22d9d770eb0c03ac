"""One train-then-evaluate step, shared by `demo`, `sweep` and the learning check."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence


def train_and_evaluate(config: dict[str, Any], output_dir: str | Path, *, episodes: int, frame_size: tuple[int, int],
                       scenarios: Sequence[Any] | None = None, max_steps: int | None = None, max_epochs: int | None = None,
                       offline: bool = False, ablations: bool = False, gifs: int = 0,
                       progress: bool = True,
                       timer: Callable[[str], AbstractContextManager] | None = None) -> dict[str, Any]:
    """Train `config` through the launcher, then drive held-out simulator worlds in closed loop.

    Returns `train` (the launcher's result), `module`, `meta`, `closed_loop` ({"trained": report} plus,
    with `ablations`, "instruction_blanked" and "untrained") and `offline` (validation report or None).
    `timer(name)` wraps the parts "train" and "closed_loop" (e.g. to print their times).
    """
    import torch

    from robovlms_mobile.checkpoint_meta import CheckpointMetadata
    from robovlms_mobile.eval.closed_loop import evaluate_closed_loop
    from robovlms_mobile.eval.offline import validation_report
    from robovlms_mobile.eval.policy import BlankInstruction, InProcessPolicy
    from robovlms_mobile.launcher import train
    from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS

    timer = timer or (lambda name: nullcontext())
    output_dir = Path(output_dir)
    with timer("train"):
        result = train(config, output_dir=output_dir, max_steps=max_steps, max_epochs=max_epochs, progress=progress)
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
            closed["untrained"] = evaluate_closed_loop(InProcessPolicy.untrained(module.configs), scenarios, episodes,
                                                       frame_size=frame_size)
    return {"train": result, "module": module, "meta": meta, "closed_loop": closed,
            "offline": validation_report(module, meta) if offline else None}
