"""The text prompt: one template, used identically in training and at serving time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robovlms_mobile.task import MAX_PROMPT_TOKENS

if TYPE_CHECKING:  # torch only for the annotation: config and the data CLI import this module, fast
    import torch

# Upstream RoboVLMs' Kosmos-2 text function (data_utils.get_text_function "kosmos") uses this
# wording; keeping it means an upstream-trained checkpoint and ours read the same prompt.
DEFAULT_PROMPT_TEMPLATE = "<grounding>An image of a robot {instruction}"
GROUNDING = "<grounding>"
MAX_TEXT_LEN = MAX_PROMPT_TOKENS


def format_prompt(instruction: str, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """Fill the template with a stripped instruction; a leading `<grounding>` already in the template is not repeated.

    The lab's 8-class rewrite stores instructions such as `<grounding>Navigate straight forward ...`.
    """
    text = instruction.strip()
    if template.lstrip().startswith(GROUNDING) and text.startswith(GROUNDING):
        text = text[len(GROUNDING):].lstrip()
    return template.format(instruction=text)


def encode_prompts(
    tokenizer: Any, instructions: list[str], template: str = DEFAULT_PROMPT_TEMPLATE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise instructions -> (input_ids (B, L), attention_mask (B, L)), right padded."""
    tokenizer.padding_side = "right"
    text = tokenizer(
        [format_prompt(s, template) for s in instructions],
        truncation=True,
        max_length=MAX_TEXT_LEN,
        padding="longest",
        return_tensors="pt",
    )
    return text["input_ids"], text["attention_mask"]


def validate_template(template: str) -> str:
    """Check the template has exactly one `{instruction}` field; returns it."""
    try:
        probe = template.format(instruction="\x00")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"prompt_template {template!r}: only the field {{instruction}} is allowed ({exc})") from None
    if probe.count("\x00") != 1:
        raise ValueError(f"prompt_template {template!r} must contain {{instruction}} exactly once")
    return template
