"""LoRA on the Kosmos-2 backbone with peft, injected in place.

Upstream's `lora_enable` path imports `llava` (not a dependency), assigns to the read-only
`BaseRoboVLM.model` property; this injects adapters in place into the backbone instead, leaving
upstream's module tree and properties intact. `train_setup.lora_targets` picks the layers:
`text_attention` (the text transformer's attention projections) or `all_linear` (every linear
layer but `lm_head`, the vision tower and image-to-text projection included: on Kosmos-2 that is
what upstream's `llava.train.train.find_all_linear_names` selects, since none of its exclusions
name a Kosmos-2 module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peft import LoraConfig
    from torch import nn

# torch and peft are imported where used: config checks read LORA_TARGETS without them
# Kosmos-2 module names: text_model.model.layers.<i>.self_attn.{q,k,v,out}_proj.
TEXT_ATTENTION = r"text_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"
LORA_TARGETS = ("text_attention", "all_linear")  # the first is the default


def linear_layers(backbone: nn.Module) -> list[str]:
    """Names of every nn.Linear in `backbone` except the (tied) output head `lm_head`."""
    from torch import nn

    return sorted(n for n, m in backbone.named_modules() if isinstance(m, nn.Linear) and not n.endswith("lm_head"))


def lora_config_from(train_setup: dict[str, Any], backbone: nn.Module | None = None) -> "LoraConfig":
    """LoraConfig from upstream's `train_setup` keys lora_r / lora_alpha / lora_dropout / lora_bias / lora_targets."""
    from peft import LoraConfig

    targets = train_setup.get("lora_targets", LORA_TARGETS[0])
    if targets not in LORA_TARGETS:
        raise ValueError(f"train_setup.lora_targets = {targets!r}: expected one of {', '.join(LORA_TARGETS)}")
    if targets == "all_linear" and backbone is None:
        raise ValueError("lora_targets 'all_linear' needs the backbone to list its linear layers")
    return LoraConfig(
        r=int(train_setup.get("lora_r", 32)),
        lora_alpha=int(train_setup.get("lora_alpha", 32)),
        lora_dropout=float(train_setup.get("lora_dropout", 0.0)),
        bias=train_setup.get("lora_bias", "none"),
        target_modules=TEXT_ATTENTION if targets == "text_attention" else linear_layers(backbone),
    )


def apply_lora(backbone: nn.Module, train_setup: dict[str, Any]) -> list[str]:
    """Inject LoRA adapters into `backbone` in place; returns the adapted module names."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config_from(train_setup, backbone), backbone)
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in backbone.named_parameters() if ".lora_A." in n})
    if not adapted:
        raise ValueError("LoRA matched no module: is the backbone Kosmos-2 (text_model.model.layers.*.self_attn)?")
    for name, param in backbone.named_parameters():
        param.requires_grad_(".lora_" in name)
    return adapted
