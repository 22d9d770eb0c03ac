"""Kosmos-2: accept `inputs_embeds` with neither `pixel_values` nor `image_embeds`.

RoboVLMs merges the image features into `inputs_embeds` itself and then calls
`Kosmos2ForConditionalGeneration` with no pixels, which stock transformers rejects ("You have
to specify either pixel_values or image_embeds"). Upstream's `main.py` works around it by
copying its own `tools/modeling_kosmos2.py` over the installed transformers file. This patch
does the same thing in memory instead: when both are missing, the call goes straight to the
text model, exactly as upstream's edited file does; every other call is untouched. It writes
nothing to site-packages and is a no-op on top of upstream's copied file.

Checked against the transformers versions in VERIFIED_TRANSFORMERS (tests/test_patches.py
re-verifies it on the installed version).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from types import ModuleType

TARGET_MODULE = "transformers.models.kosmos2.modeling_kosmos2"
VERIFIED_TRANSFORMERS = ("4.37.2",)
MARKER = "_robovlms_mobile_inputs_embeds_patch"


def is_applied(modeling: ModuleType) -> bool:
    """True if this patch already wraps Kosmos2ForConditionalGeneration.forward."""
    return bool(getattr(modeling.Kosmos2ForConditionalGeneration.forward, MARKER, False))


def upstream_copy_installed(modeling: ModuleType) -> bool:
    """True if upstream's main.py already overwrote the installed modeling file."""
    cls = modeling.Kosmos2ForConditionalGeneration
    source = inspect.getsource(getattr(cls.forward, "__wrapped__", cls.forward))
    return "if pixel_values is not None:" in source


def apply(modeling: ModuleType) -> bool:
    """Wrap the forward in memory; returns False if it was already applied."""
    import transformers

    cls = modeling.Kosmos2ForConditionalGeneration
    if is_applied(modeling):
        return False
    if transformers.__version__ not in VERIFIED_TRANSFORMERS:
        warnings.warn(
            f"Kosmos-2 inputs_embeds patch verified on transformers {VERIFIED_TRANSFORMERS}, "
            f"applying it to {transformers.__version__}",
            stacklevel=2,
        )
    original = cls.forward
    signature = inspect.signature(original)

    @functools.wraps(original)
    def forward(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        arguments = bound.arguments
        if arguments.get("pixel_values") is not None or arguments.get("image_embeds") is not None:
            return original(*bound.args, **bound.kwargs)
        return_dict = arguments.get("return_dict")
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        text_kwargs = {
            name: arguments.get(name)
            for name in (
                "input_ids", "attention_mask", "image_embeds_position_mask", "head_mask",
                "past_key_values", "inputs_embeds", "position_ids", "labels", "use_cache",
                "output_attentions", "output_hidden_states",
            )
        }
        lm = self.text_model(image_embeds=None, return_dict=True, **text_kwargs)
        output = modeling.Kosmos2ForConditionalGenerationModelOutput(
            loss=lm.loss,
            logits=lm.logits,
            past_key_values=lm.past_key_values,
            hidden_states=lm.hidden_states,
            attentions=lm.attentions,
        )
        return output if return_dict else output.to_tuple()

    setattr(forward, MARKER, True)
    cls.forward = forward
    return True
