"""Closed-loop evaluation: a `Policy` drives N seeded worlds per scenario in the simulator.

Each episode starts at the start pose; every step renders the camera frame, asks the policy for
a command and applies it for 0.4 s. It ends at the first stop after the robot has moved, on a
collision, or after `max_steps` executed steps. Figures: success, SPL (success weighted by expert path /
max(path, expert path), averaged over all episodes as Habitat does), collision / wrong-side / timeout rates,
the share of episodes in which the robot moved at all, final distance to the goal, idle steps and jerk;
and, given the training data's key sequences, the share of held-out expert key sequences seen verbatim
in training. World seeds come from sim/splits.py (default: the test split). A policy may answer None
for a step: nothing to execute yet (an idle step, e.g. waiting for a late answer, eval/execution.py);
the robot stands still and that is no stop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robovlms_mobile.data.format import Scenario
from robovlms_mobile.eval.execution import jerk
from robovlms_mobile.runtime.protocol import Policy
from robovlms_mobile.sim.expert import ScriptedExpert, key_sequence
from robovlms_mobile.sim.media import save_gif, side_by_side
from robovlms_mobile.sim.render import render_frame
from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, build_world, scenario_name
from robovlms_mobile.sim.splits import TEST_SEED as EVAL_SEED
from robovlms_mobile.sim.world import RobotState, World, is_stop, judge, step
from robovlms_mobile.task import FRAME_SIZE

MAX_STEPS = 40
IDLE_BOUND = 12  # an episode lasts at most this many times max_steps (sync at a delay of 10 steps needs 11)


@dataclass
class EpisodeResult:
    """One closed-loop episode."""

    scenario: str
    world_seed: list[int]
    success: bool
    reason: str
    final_error: float
    path_length: float
    expert_path_length: float
    steps: int
    moved: bool = False
    expert_keys: str = ""
    idle_steps: int = 0
    gap_steps: int = 0  # idle steps after the first executed action (the start's wait excluded)
    jerk: float = 0.0

    @property
    def spl(self) -> float:
        """Success weighted by path length: expert path / max(path, expert path) on a success, else 0."""
        return self.expert_path_length / max(self.path_length, self.expert_path_length, 1e-9) if self.success else 0.0


def expert_run(world: World, max_steps: int = 80) -> tuple[float, str]:
    """The scripted expert's path length in `world` (the reference for SPL) and its key sequence."""
    expert, state, actions = ScriptedExpert(world), RobotState(*world.start), []
    for _ in range(max_steps):
        action = expert.act(state)
        actions.append(action)
        step(world, state, action)
        if state.moved and is_stop(action):
            break
    return state.path_length, key_sequence(np.array(actions))


def run_episode(policy: Policy, world: World, *, frame_size: tuple[int, int] = FRAME_SIZE, max_steps: int = MAX_STEPS,
                record: bool = False) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Drive one episode; returns the outcome fields and (when `record`) camera+map frames for a GIF."""
    policy.reset()
    if hasattr(policy, "begin"):  # a privileged reference (eval/references.py) is told the world
        policy.begin(world)
    state, frames, stopped = RobotState(*world.start), [], False
    steps, idle, gaps, executed = 0, 0, 0, []
    # `max_steps` counts steps that execute an action; idle steps (waiting for an answer) come on top, bounded
    while steps - idle < max_steps and steps < IDLE_BOUND * max_steps:
        steps += 1
        frame = render_frame(world, state.x, state.y, frame_size)
        if record:
            frames.append(side_by_side(frame, world, state.trail or [world.start]))
        answer = policy.act(frame, world.instruction)
        idle += answer is None
        gaps += answer is None and idle < steps
        action = np.zeros(2) if answer is None else np.asarray(answer, np.float64)
        executed.append(action)
        step(world, state, action)
        if state.collided:
            break
        if state.moved and answer is not None and is_stop(action):
            stopped = True
            break
    if record:
        frames.append(side_by_side(render_frame(world, state.x, state.y, frame_size), world, state.trail))
    outcome = judge(world, state, stopped, steps)
    return {"success": outcome.success, "reason": outcome.reason, "final_error": outcome.final_error,
            "path_length": outcome.path_length, "steps": outcome.steps, "moved": state.moved, "idle_steps": idle,
            "gap_steps": gaps, "jerk": jerk(executed)}, frames


def summarise(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """Rates and means over a list of episodes (SPL over all of them, 0 for a failure)."""
    n = len(results)
    if n == 0:
        return {"episodes": 0}
    ok = [r for r in results if r.success]
    ratio = [r.path_length / r.expert_path_length for r in ok if r.expert_path_length > 0]
    reasons = Counter(r.reason for r in results)
    return {
        "episodes": n,
        "success_rate": len(ok) / n,
        "spl": float(np.mean([r.spl for r in results])),
        "moved_rate": sum(r.moved for r in results) / n,
        "collision_rate": reasons["collision"] / n,
        "wrong_side_rate": reasons["wrong_side"] / n,
        "timeout_rate": reasons["timeout"] / n,
        "final_error_m": float(np.mean([r.final_error for r in results])),
        "path_ratio_vs_expert": float(np.mean(ratio)) if ratio else None,  # successful episodes only
        "idle_steps": int(sum(r.idle_steps for r in results)),
        "gap_steps": int(sum(r.gap_steps for r in results)),
        "idle_ratio": sum(r.idle_steps for r in results) / max(1, sum(r.steps for r in results)),
        "jerk": float(np.mean([r.jerk for r in results])),
        "reasons": dict(sorted(reasons.items())),
    }


def seen_in_training(results: Sequence[EpisodeResult], train_keys: dict[str, set[str]], instructions: dict[str, str]) -> dict[str, Any]:
    """Share of the held-out worlds' expert key sequences found verbatim among the training episodes' (same instruction / any)."""
    every = set().union(*train_keys.values()) if train_keys else set()
    same = [r.expert_keys in train_keys.get(instructions[r.scenario], set()) for r in results]
    return {"same_instruction": sum(same) / max(len(results), 1),
            "any_instruction": sum(r.expert_keys in every for r in results) / max(len(results), 1),
            "training_sequences": sum(len(v) for v in train_keys.values()), "held_out_episodes": len(results)}


def evaluate_closed_loop(policy: Policy, scenarios: Sequence[Scenario] = DEFAULT_SCENARIOS, episodes: int = 2, *,
                         seed: int = EVAL_SEED, worlds: str = "iid", frame_size: tuple[int, int] = FRAME_SIZE,
                         max_steps: int = MAX_STEPS, gif_dir: str | Path | None = None, gifs: int = 0,
                         train_keys: dict[str, set[str]] | None = None, progress: bool = False) -> dict[str, Any]:
    """`episodes` seeded worlds per scenario; returns overall and per-scenario summaries and every episode.

    `train_keys` (instruction -> training key sequences, `references.training_keys`) adds `seen_in_training`.
    """
    results: list[EpisodeResult] = []
    gif_paths: list[str] = []
    instructions: dict[str, str] = {}
    jobs = [(sc, k) for k in range(episodes) for sc in scenarios]  # scenarios innermost: GIFs cover several
    for sc, k in tqdm(jobs, desc="closed-loop", disable=not progress):
        world_seed = [seed, k]
        world = build_world(sc, world_seed, worlds)
        instructions[scenario_name(sc)] = world.instruction
        record = gif_dir is not None and len(gif_paths) < gifs
        fields, frames = run_episode(policy, world, frame_size=frame_size, max_steps=max_steps, record=record)
        path, keys = expert_run(world)
        results.append(EpisodeResult(scenario_name(sc), world_seed, expert_path_length=path, expert_keys=keys, **fields))
        if record:
            name = f"{scenario_name(sc)}_seed{seed}-{k}_{fields['reason']}.gif"
            gif_paths.append(str(save_gif(frames, Path(gif_dir) / name)))
    per_scenario = {scenario_name(sc): summarise([r for r in results if r.scenario == scenario_name(sc)]) for sc in scenarios}
    report = {"overall": summarise(results), "per_scenario": per_scenario, "gifs": gif_paths,
            "settings": {"episodes_per_scenario": episodes, "seed": seed, "worlds": worlds, "max_steps": max_steps,
                         "frame_size": list(frame_size), "scenarios": [scenario_name(s) for s in scenarios]},
            "episodes": [{**asdict(r), "spl": r.spl} for r in results]}
    if train_keys is not None:
        report["seen_in_training"] = seen_in_training(results, train_keys, instructions)
    return report
