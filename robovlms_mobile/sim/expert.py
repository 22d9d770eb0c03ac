"""The scripted expert: keyboard-style commands ({0, +-1.15} per axis) along the shortest lattice route.

It knows the world (privileged), drives the `plan_route` key presses to the goal (re-planning from
wherever it finds itself off its route, so it can also recover from a perturbed state), and writes what it saw and did as V4 episode files, exactly as the robot's collector does: frame 0 is
`episode_start` with a zero action, each frame's action is the key pressed after it, and the
episode ends with stop frames in front of the bottle.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from robovlms_mobile.data.format import Scenario
from robovlms_mobile.data.writers import event_types_for, write_episode_v4
from robovlms_mobile.outputs import claim, written
from robovlms_mobile.sim.render import render_frame
from robovlms_mobile.sim.planner import plan_route
from robovlms_mobile.sim.scenarios import DEFAULT_SCENARIOS, build_world
from robovlms_mobile.sim.world import LATTICE, SPEED, STOP_SPEED, Outcome, RobotState, World, is_stop, judge, step
from robovlms_mobile.task import FRAME_SIZE, FULL_EPISODE_FRAMES

MIN_LENGTH = 18  # V4 target length
# stop frames after arriving: window + chunk - 1 (17), so that `window` training windows hold the robot
# at the goal as an input (a window needs 17 actions: with fewer stop frames the goal view would be
# a label only, and a policy never learns to stop where it sees the bottle up close)
STOP_TAIL = FULL_EPISODE_FRAMES


class ScriptedExpert:
    """Follows the planned key-press route; the first action is the episode_start zero."""

    def __init__(self, world: World):
        self.world, self.started = world, False
        self.route = self._plan(world.start)

    def _plan(self, origin: tuple[float, float]) -> list[np.ndarray]:
        route = plan_route(self.world, origin, self.world.goal, self.world.side)
        return [np.array(p) for p in route] if route is not None else []

    def act(self, state: RobotState) -> np.ndarray:
        """(2,) velocities for the robot's current state."""
        if not self.started:
            self.started = True
            return np.zeros(2)
        if self.route and np.abs(self.route[0] - state.pos).max() > LATTICE + 1e-6:
            self.route = self._plan((state.x, state.y))  # off the route (pushed, or stopped short): re-plan from here
        if not self.route:
            return np.zeros(2)
        d = self.route.pop(0) - state.pos
        return np.where(np.abs(d) > LATTICE / 2, np.sign(d) * SPEED, 0.0)


def key_sequence(actions: np.ndarray) -> str:
    """The key presses of an episode as text, one letter pair per frame ('F.', 'FL', '.R', ...), stops at both ends trimmed."""
    keys = ["FB."[0 if a[0] > STOP_SPEED else 1 if a[0] < -STOP_SPEED else 2] + "LR."[0 if a[1] > STOP_SPEED else 1 if a[1] < -STOP_SPEED else 2]
            for a in np.asarray(actions, np.float64)[:, :2]]
    while keys and keys[0] == "..":
        keys.pop(0)
    while keys and keys[-1] == "..":
        keys.pop()
    return " ".join(keys)


class ExpertEpisode(NamedTuple):
    """Frames, actions and outcome of one expert run."""

    images: np.ndarray  # (T, H, W, 3) uint8 RGB
    actions: np.ndarray  # (T, 3) float32 [linear_x, linear_y, angular_z]
    trail: np.ndarray  # (T + 1, 2) positions
    outcome: Outcome


def perturb(action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The key actually pressed instead of the expert's (noise injection): its sideways key replaced by a random one."""
    noisy = np.array(action, np.float64)
    noisy[1] = rng.choice((-SPEED, 0.0, SPEED))
    return noisy


def expert_episode(world: World, frame_size: tuple[int, int] = FRAME_SIZE, *, min_length: int = MIN_LENGTH,
                   tail: int = STOP_TAIL, max_steps: int = 80, noise: float = 0.0,
                   rng: np.random.Generator | None = None) -> ExpertEpisode:
    """Run the expert in `world` and record it; raises if the expert does not succeed.

    With `noise` > 0 (DART-style noise injection), each driving step executes `perturb(action)` with that
    probability while the file records the expert's own action: states off the expert's route, labelled
    with the expert's correction (the planner re-plans from wherever the robot is), which behaviour
    cloning needs against compounding errors. Noise never drives into an object.
    """
    expert, state = ScriptedExpert(world), RobotState(*world.start)
    rng = rng if rng is not None else np.random.default_rng(0)
    frames, actions, stops = [], [], 0
    for _ in range(max_steps):
        frames.append(render_frame(world, state.x, state.y, frame_size))
        action = expert.act(state)
        actions.append(action)
        stops = stops + 1 if (state.moved and is_stop(action)) else 0
        executed = action
        if noise > 0 and state.moved and not is_stop(action) and rng.random() < noise:
            executed = perturb(action, rng)
            if step(world, copy.deepcopy(state), executed).collided:
                executed = action
        step(world, state, executed)
        if stops >= tail and len(frames) >= min_length:
            break
    outcome = judge(world, state, stopped=stops > 0, steps=len(frames))
    if not outcome.success:
        raise RuntimeError(f"scripted expert failed ({outcome.reason}) in {world.instruction!r}")
    acts = np.zeros((len(actions), 3), np.float32)
    acts[:, :2] = np.array(actions, np.float32)
    return ExpertEpisode(np.stack(frames), acts, np.array(state.trail), outcome)


def write_expert_episodes(out_dir: str | Path, n_episodes: int, *, seed: int = 0, frame_size: tuple[int, int] = FRAME_SIZE,
                          scenarios: Sequence[Scenario] = DEFAULT_SCENARIOS, tail: int = STOP_TAIL, noise: float = 0.0,
                          progress: bool = False) -> list[Path]:
    """Write `n_episodes` V4 files cycling through `scenarios`; world seed `[seed, i // len(scenarios)]`.

    Left and right variants of a scenario within one cycle share their world seed (mirror pairs). With
    `noise`, see `expert_episode`; a noisy run the expert cannot rescue is recorded again with other
    noise draws, then without noise.
    """
    from robovlms_mobile.sim.splits import check_data_seed

    check_data_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = datetime(2025, 3, 3, 9, 0, 0) + timedelta(days=seed % 3650)
    paths = []
    for i in tqdm(range(n_episodes), desc="expert episodes", disable=not progress):
        sc = scenarios[i % len(scenarios)]
        world_seed = [seed, i // len(scenarios)]
        world = build_world(sc, world_seed)
        ep = _noisy_or_clean(world, frame_size, tail, noise, np.random.default_rng([seed, i]))
        stamp = start + timedelta(seconds=47 * i)
        path = claim(out_dir / f"episode_{stamp:%Y%m%d_%H%M%S}_{sc.tag}.h5", flag="episode")
        attrs = {"obstacle_layout_type": f"{sc.n_boxes}box_{sc.layout}", "collection_datetime": stamp.isoformat(),
                 "sim_world_seed": np.array(world_seed, np.int64)}
        write_episode_v4(path, ep.images, ep.actions, event_types_for(ep.actions),
                         instruction=world.instruction, attrs=attrs)
        written(path)
        paths.append(path)
    return paths


def _noisy_or_clean(world: World, frame_size: tuple[int, int], tail: int, noise: float, rng: np.random.Generator,
                    tries: int = 5) -> ExpertEpisode:
    for _ in range(tries if noise > 0 else 0):
        try:
            return expert_episode(world, frame_size, tail=tail, noise=noise, rng=rng)
        except RuntimeError:
            continue
    return expert_episode(world, frame_size, tail=tail)
