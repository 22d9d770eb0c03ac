"""RoboResNet: upstream `BaseRoboVLM` with the ResNet baseline as its backbone.

Registered lazily as `robovlms.model.backbone.RoboResNet`, so upstream's `BaseTrainer` and
`MobileVLATrainer` build it from `"robovlm_name": "RoboResNet"`; the tokenizer comes from the
config's `tokenizer` section (the same prompt and tokenizer as the VLA), sizes from `cnn_backbone`.
"""

from __future__ import annotations

from typing import Any

from robovlms.model.backbone.base_backbone import BaseRoboVLM

from robovlms_mobile.model.baseline.model import ResNetInstructionModel
from robovlms_mobile.model.model_folder import build_processor

CNN_DEFAULTS = {"arch": "resnet18", "hidden_size": 256, "input_size": 112, "fusion_layers": 1, "heads": 4}


class RoboResNet(BaseRoboVLM):
    """Small ResNet + learned instruction embedding instead of Kosmos-2; same action token, head and loss."""

    def _init_backbone(self) -> tuple[Any, ResNetInstructionModel]:
        tokenizer = build_processor(self.configs["tokenizer"])  # local folder, no remote code, no rmtree fallback
        if "Processor" in self.configs["tokenizer"]["type"]:
            self.processor, tokenizer = tokenizer, tokenizer.tokenizer
        self.tokenizer = tokenizer
        cnn = {**CNN_DEFAULTS, **self.configs.get("cnn_backbone", {})}
        return tokenizer, ResNetInstructionModel(len(tokenizer), tokenizer.pad_token_id, **cnn)

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    @property
    def word_embedding(self):
        return self.backbone.embed_tokens

    @property
    def text_tower(self):
        return self.backbone.fusion

    @property
    def vision_tower(self):
        return self.backbone.vision

    @property
    def model(self):
        return self.backbone

    def model_encode_images(self, images):
        """(N, 3, S, S) -> (N, 1, hidden)."""
        return self.backbone.encode_images(images)
