"""LoRA on the Kosmos-2 text-transformer attention projections only, with peft.

Upstream's `lora_enable` path imports `llava` (not a dependency), assigns to the read-only
`BaseRoboVLM.model` property and matches vision layers too; this injects adapters in place
into the backbone instead, leaving upstream's module tree and properties intact.
"""

from __future__ import annotations

from typing import Any

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

# Kosmos-2 module names: text_model.model.layers.<i>.self_attn.{q,k,v,out}_proj.
# The vision encoder (vision_model.*) and image_to_text_projection are never matched.
TEXT_ATTENTION = r"text_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"


def lora_config_from(train_setup: dict[str, Any]) -> LoraConfig:
    """LoraConfig from upstream's `train_setup` keys lora_r / lora_alpha / lora_dropout / lora_bias."""
    return LoraConfig(
        r=int(train_setup.get("lora_r", 32)),
        lora_alpha=int(train_setup.get("lora_alpha", 32)),
        lora_dropout=float(train_setup.get("lora_dropout", 0.0)),
        bias=train_setup.get("lora_bias", "none"),
        target_modules=TEXT_ATTENTION,
    )


def apply_lora(backbone: nn.Module, train_setup: dict[str, Any]) -> list[str]:
    """Inject LoRA adapters into `backbone` in place; returns the adapted module names."""
    inject_adapter_in_model(lora_config_from(train_setup), backbone)
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in backbone.named_parameters() if ".lora_A." in n})
    if not adapted:
        raise ValueError("LoRA matched no module: is the backbone Kosmos-2 (text_model.model.layers.*.self_attn)?")
    for name, param in backbone.named_parameters():
        param.requires_grad_(".lora_" in name)
    return adapted
