"""The config sections whose callbacks evaluation composes into training (`train(..., section_callbacks=)`).

Light on purpose: `robovlms-mobile train` imports this before the config is read, so a bad config
or flag is answered before Lightning and torch load (the callback module imports them when used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sim_eval_callback(section: dict[str, Any], output_dir: Path) -> Any:
    """The `sim_eval` config section's callback (a SimEvalCallback)."""
    from robovlms_mobile.eval.sim_eval_callback import SimEvalCallback

    return SimEvalCallback(output_dir, **section)


SECTION_CALLBACKS = {"sim_eval": sim_eval_callback}  # what `train` and the recipes hand the launcher
