"""The expert's route: shortest key-press path on the lattice anchored at the robot, passing on one side.

Nodes are `origin + LATTICE * (i, j)`; a move is one key press (8 directions, {0, +-1} per axis).
A move is allowed when the robot disc, inflated by PLAN_MARGIN, stays clear along the whole move,
and when crossing the obstacles' middle it is on the instructed side. Cost: metres driven, plus a
small charge per change of direction (fewer, longer straight runs, as a person at the keys drives),
plus a charge for being off the start line before the obstacles: it keeps straight on and turns out
only when the obstacles come close, so when it turns depends on how far they are.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from robovlms_mobile.sim.world import LATTICE, World

PLAN_MARGIN = 0.04  # metres of clearance the expert keeps beyond the robot's radius
TURN_COST = 0.05  # metres charged per change of key
OFF_LINE_COST = 0.1  # metres charged per step and per lattice step off the start line, before the obstacles
DIRS = tuple((dx, dy) for dx in (1, 0, -1) for dy in (0, 1, -1) if (dx, dy) != (0, 0))
_SAMPLES = np.linspace(0.0, 1.0, 9)


def _grid(world: World, origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, int, int]:
    x_min, x_max, y_min, y_max = world.room
    ox, oy = origin
    i0, i1 = math.floor((x_min - ox) / LATTICE), math.ceil((x_max - ox) / LATTICE)
    j0, j1 = math.floor((y_min - oy) / LATTICE), math.ceil((y_max - oy) / LATTICE)
    return np.arange(i0, i1 + 1), np.arange(j0, j1 + 1), i0, j0


def plan_route(world: World, origin: tuple[float, float], goal: tuple[float, float], side: str) -> list[tuple[float, float]] | None:
    """Lattice nodes from `origin` (excluded) to the node nearest `goal`, passing on `side`; None when there is no route."""
    ii, jj, i0, j0 = _grid(world, origin)
    ox, oy = origin
    I, J = np.meshgrid(ii, jj, indexing="ij")  # (ni, nj)
    x_mid = float(np.mean(world.obstacle_x))
    i_front = (world.obstacle_x[0] - ox) / LATTICE
    yc = float(np.mean([b.center[1] for b in world.boxes]))
    ok = {}
    for d, (dx, dy) in enumerate(DIRS):
        t = _SAMPLES[:, None, None]
        xs, ys = ox + (I + t * dx) * LATTICE, oy + (J + t * dy) * LATTICE  # (S, ni, nj)
        free = ~world.blocked(xs, ys, PLAN_MARGIN).any(0)
        xa, xb = ox + I * LATTICE, ox + (I + dx) * LATTICE
        crosses = (xa < x_mid) & (x_mid <= xb)
        with np.errstate(divide="ignore", invalid="ignore"):
            y_cross = oy + (J + dy * (x_mid - xa) / (xb - xa)) * LATTICE
        wrong = crosses & ((y_cross > yc) != (side == "left"))
        ok[d] = free & ~wrong
    start = (-i0, -j0)
    gi, gj = round((goal[0] - ox) / LATTICE) - i0, round((goal[1] - oy) / LATTICE) - j0
    shape = I.shape
    if not (0 <= gi < shape[0] and 0 <= gj < shape[1] and 0 <= start[0] < shape[0] and 0 <= start[1] < shape[1]):
        return None
    best: dict[tuple[int, int, int], float] = {}
    parent: dict[tuple[int, int, int], tuple[int, int, int] | None] = {}
    heap = [(0.0, 0, (start[0], start[1], -1), None)]
    count = 0
    while heap:
        cost, _, state, prev = heapq.heappop(heap)
        if state in parent:
            continue
        parent[state] = prev
        i, j, last = state
        if (i, j) == (gi, gj):
            nodes = []
            while state is not None and parent[state] is not None:
                nodes.append((ox + (state[0] + i0) * LATTICE, oy + (state[1] + j0) * LATTICE))
                state = parent[state]
            return nodes[::-1]
        for d, (dx, dy) in enumerate(DIRS):
            ni, nj = i + dx, j + dy
            if not (0 <= ni < shape[0] and 0 <= nj < shape[1]) or not ok[d][i, j]:
                continue
            nxt = (ni, nj, d)
            step_cost = (cost + LATTICE * math.hypot(dx, dy) + (TURN_COST if last not in (-1, d) else 0.0)
                         + (OFF_LINE_COST * abs(nj + j0) if ni + i0 < i_front - 1 else 0.0))
            if nxt not in parent and step_cost < best.get(nxt, math.inf) - 1e-12:
                best[nxt] = step_cost
                count += 1
                heapq.heappush(heap, (step_cost, count, nxt, state))
    return None
