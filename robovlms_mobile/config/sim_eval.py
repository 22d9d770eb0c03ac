"""The `sim_eval` config section (closed-loop evaluation during training): its keys and their checks."""

from __future__ import annotations

from typing import Any

SIM_EVAL_KEYS = {"every_n_epochs": int, "episodes": int, "seed": int, "gifs": int, "scenarios": list, "frame_size": list}


def check_sim_eval(section: Any) -> dict[str, int]:
    """Validate the ``sim_eval`` config section; raises ValueError naming the key."""
    if not isinstance(section, dict):
        raise ValueError("'sim_eval' must be an object, e.g. {\"every_n_epochs\": 2, \"episodes\": 1}")
    from robovlms_mobile.sim.scenarios import parse_scenario

    for key, value in section.items():
        if key not in SIM_EVAL_KEYS:
            raise ValueError(f"unknown key 'sim_eval.{key}'; allowed: {sorted(SIM_EVAL_KEYS)}")
        if key == "scenarios":
            if not isinstance(value, list) or not value:
                raise ValueError(f"'sim_eval.scenarios' = {value!r}: expected a non-empty list of names like '1box_left_close'")
            for name in value:
                parse_scenario(str(name))  # ValueError names the bad one
            continue
        if key == "frame_size":
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in value)):
                raise ValueError(f"'sim_eval.frame_size' = {value!r}: expected [height, width], integers >= 16")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key in ("seed", "gifs") else 1):
            raise ValueError(f"'sim_eval.{key}' = {value!r}: expected an integer >= {0 if key in ('seed', 'gifs') else 1}")
        if key == "seed":
            from robovlms_mobile.sim.splits import check_val_seed

            check_val_seed(value)  # best.ckpt is never chosen on data or test worlds
    return dict(section)
