"""The one place the plugin applies its Kosmos-2 `inputs_embeds` patch (patches/kosmos2_inputs_embeds.py)."""

from __future__ import annotations


def ensure_kosmos2_patch() -> None:
    """Apply the in-memory Kosmos-2 inputs_embeds patch to transformers' modeling_kosmos2 (idempotent)."""
    from transformers.models.kosmos2 import modeling_kosmos2

    from robovlms_mobile.patches import kosmos2_inputs_embeds

    kosmos2_inputs_embeds.apply(modeling_kosmos2)
