"""`robovlms-mobile sim show SCENARIO` (an expert run as PNG frames) and `sim record DIR` (expert runs as V4 episodes)."""

from __future__ import annotations

import argparse
import json

from robovlms_mobile.cli.options import add_progress_option, command, command_group, frame_size, positive_int, probability
from robovlms_mobile.data.format import DISTANCES
from robovlms_mobile.recipes.demo import DEMO_FRAME_SIZE
from robovlms_mobile.task import FRAME_SIZE


def scenario_arg(text: str):
    """argparse type: a scenario name (see `parse_scenario`)."""
    from robovlms_mobile.sim.scenarios import parse_scenario

    try:
        return parse_scenario(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_show(args: argparse.Namespace) -> int:
    from robovlms_mobile.sim.expert import expert_episode
    from robovlms_mobile.sim.media import save_gif, save_pngs, side_by_side
    from robovlms_mobile.sim.render import render_map
    from robovlms_mobile.sim.scenarios import build_world, scenario_name

    scenario = args.scenario
    world = build_world(scenario, args.seed)
    ep = expert_episode(world, args.frame_size)
    out = args.out or f"runs/sim/{scenario_name(scenario)}_seed{args.seed}"
    paths = save_pngs(ep.images, out)
    save_pngs([render_map(world, ep.trail, size=256)], out, prefix="map")
    if args.gif:
        save_gif([side_by_side(f, world, ep.trail[: i + 1]) for i, f in enumerate(ep.images)], f"{out}/expert.gif")
    print(json.dumps({"scenario": scenario_name(scenario), "instruction": world.instruction, "frames": len(paths),
                      "out": str(out), "outcome": ep.outcome.reason, "path_length_m": round(ep.outcome.path_length, 3)}))
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from robovlms_mobile.sim.expert import write_expert_episodes

    paths = write_expert_episodes(args.dir, args.n, seed=args.seed, frame_size=args.frame_size, noise=args.noise,
                                  progress=not args.no_progress)
    print(json.dumps({"episodes": len(paths), "out": str(args.dir), "seed": args.seed, "noise": args.noise,
                      "frame_size": list(args.frame_size)}))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `sim show` and `sim record`."""
    sub = command_group(subparsers, "sim", help="the closed-loop simulator (show a scenario, record expert episodes)",
                        description="Deterministic simulator of the navigation task.")
    s = command(sub, "show", _cmd_show, help="drive SCENARIO with the scripted expert and write its frames as PNG",
                     description="Write the first-person frames (frame_NNN.png) and a top-down map (map_000.png) of "
                                 "the scripted expert driving SCENARIO.")
    s.add_argument("scenario", type=scenario_arg, help=f"e.g. 1box_left_close, 2box_right_far, 2box_vert_left_medium (distances: {', '.join(DISTANCES)})")
    s.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    s.add_argument("--out", help="output folder (default: runs/sim/<scenario>_seed<seed>)")
    s.add_argument("--frame-size", type=frame_size, default=FRAME_SIZE, help="HxW (default: %(default)s)")
    s.add_argument("--gif", action="store_true", help="also write expert.gif (camera + map)")
    r = command(sub, "record", _cmd_record, help="write scripted-expert episodes of the training worlds as V4 files",
                     description="Drive the scripted expert through the standard scenarios in the data split's worlds "
                                 "[SEED, k] (sim/splits.py) and write each run as a V4 episode, as the robot's "
                                 "collector does. --noise P injects DART-style noise: with probability P per step "
                                 "the robot executes a random sideways key while the file records the expert's own "
                                 "key (its correction from where it is).")
    r.add_argument("dir", help="output folder (existing episodes are never overwritten)")
    r.add_argument("-n", type=positive_int, default=96, help="episodes, cycling through the 12 scenarios (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="data world seed, 0-999 (default: %(default)s)")
    r.add_argument("--frame-size", type=frame_size, default=DEMO_FRAME_SIZE, help="HxW (default: %(default)s, the demo's)")
    r.add_argument("--noise", type=probability, default=0.0, help="DART noise probability per step (default: %(default)s)")
    add_progress_option(r)
