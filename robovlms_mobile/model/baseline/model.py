"""ResNet image encoder + learned token embeddings + one small attention layer: the baseline's "backbone".

It stands where Kosmos-2 stands in upstream's `BaseRoboVLM.forward_continuous`: image features
come from `encode_images`, instruction tokens from `embed_tokens`, and `forward(inputs_embeds=...)`
returns hidden states, so the learnable action token, the LSTM decoder and the loss are the same.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

ARCHS = ("resnet10", "resnet18")
POOL = (2, 4)  # keep a coarse left/centre/right layout of the feature map in the image token


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)  # no running statistics: slim checkpoints hold everything


def build_resnet(arch: str) -> nn.Module:
    """torchvision ResNet (random init, GroupNorm) without its classifier; outputs (N, 512, h, w)."""
    if arch == "resnet18":
        net = resnet18(weights=None, norm_layer=_group_norm)
    elif arch == "resnet10":
        net = ResNet(BasicBlock, [1, 1, 1, 1], norm_layer=_group_norm)
    else:
        raise ValueError(f"cnn_backbone.arch {arch!r}: expected one of {ARCHS}")
    return nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc


class ResNetInstructionModel(nn.Module):
    """Image -> one token (ResNet, 2x4 pooled layout, linear); tokens -> learned embeddings; a small fusion encoder."""

    def __init__(self, vocab_size: int, pad_token_id: int, arch: str = "resnet18", hidden_size: int = 256,
                 input_size: int = 112, fusion_layers: int = 1, heads: int = 4):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden_size, use_cache=False, arch=arch, input_size=input_size)
        self.input_size = input_size
        self.vision = build_resnet(arch)
        self.image_proj = nn.Linear(512 * POOL[0] * POOL[1], hidden_size)
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id)
        layer = nn.TransformerEncoderLayer(hidden_size, heads, 2 * hidden_size, dropout=0.0, batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, fusion_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised frames -> (N, 1, hidden) image tokens."""
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        feats = F.adaptive_avg_pool2d(self.vision(images), POOL)  # (N, 512, 2, 4)
        return rearrange(self.image_proj(rearrange(feats, "n c h w -> n (c h w)")), "n d -> n 1 d")

    def forward(self, input_ids: Any = None, attention_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool = True, **kwargs: Any) -> SimpleNamespace:
        """(N, L, hidden) embeddings (image, text, action tokens) -> hidden states, as a transformers model returns them."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        padding = None if attention_mask is None else ~attention_mask.bool()  # (N, L), True = ignore
        out = self.norm(self.fusion(inputs_embeds, src_key_padding_mask=padding))
        return SimpleNamespace(hidden_states=(inputs_embeds, out), logits=None, loss=None, past_key_values=None)
