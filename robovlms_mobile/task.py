"""The task's facts, each stated once: action axes, speeds, timing, window/chunk, instruction limits.

Every module that needs one of these imports it from here; values that follow from them are derived
here too, so changing the window or the chunk moves everything that depends on it.
"""

from __future__ import annotations

import unicodedata
from typing import Any

ACTION_AXES: tuple[str, ...] = ("linear_x", "linear_y")  # the policy's 2-DOF output, in this order
RAW_ACTION_COLUMNS: tuple[str, ...] = ("linear_x", "linear_y", "angular_z")  # columns of `actions` in files
ACTION_DIM = len(ACTION_AXES)

MAX_SPEED = 1.15  # m/s: the collectors' key-press speed; labels are scaled by it into [-1, 1]
STEP_S = 0.4  # seconds of motion per recorded frame (one key press on the robot)

FRAME_SIZE: tuple[int, int] = (144, 256)  # HxW: default camera frames of the simulator, synthetic data and evaluation

WINDOW = 8  # frames of history the policy sees
CHUNK = 10  # future actions predicted per window (upstream: fwd_pred_next_n)
FULL_EPISODE_FRAMES = WINDOW + CHUNK - 1  # 17: frames one complete training window spans

# words that name the robot's moves or its instruction: no pretraining caption may contain one
# (model/grounding.py), so the backbone learns what a frame shows, never what to do next
ACTION_WORDS: frozenset[str] = frozenset({
    "forward", "forwards", "backward", "backwards", "back", "left", "right", "stop", "stops", "stopped", "move", "moves",
    "moving", "turn", "turns", "turning", "go", "goes", "going", "drive", "driving", "pass", "passing", "around", "detour",
    "side", "next", "straight", "steer", "avoid", "approach", "instruction", "action", "press", "key"})

MAX_INSTRUCTION_CHARS = 512  # characters, everywhere an instruction enters (files, server, CLI)
MAX_PROMPT_TOKENS = 256  # the tokenizer truncates the filled prompt at this many tokens


def check_instruction(value: Any, *, where: str = "instruction", allow_empty: bool = False) -> str:
    """The one instruction check: a string of at most MAX_INSTRUCTION_CHARS with a visible character; returns it stripped.

    Visible: a letter, digit, punctuation mark or symbol. Zero-width spaces, joiners, BOMs and other
    format or control characters alone are an empty instruction that looks filled in.
    """
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_INSTRUCTION_CHARS:
        raise ValueError(f"{where}: {len(value)} characters; the limit is {MAX_INSTRUCTION_CHARS}")
    text = value.strip()
    if not text and allow_empty:
        return text
    if not any(unicodedata.category(c)[0] in "LNPS" for c in text):
        shown = f"{len(text)} invisible character(s) (U+{ord(text[0]):04X} ...); " if text else ""
        raise ValueError(f"{where}: {shown}expected a non-empty string with visible characters")
    return text
