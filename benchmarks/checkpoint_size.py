"""Plugin checkpoint vs full-state checkpoint: the tiny model (real files) and real Kosmos-2 (meta device).

The plugin keeps only the trainable tensors (action token, LSTM decoder, LoRA) plus metadata;
a full-state checkpoint (what upstream's BaseTrainer writes) also stores the frozen backbone.
For the real Kosmos-2 the sizes are counted from parameter shapes on the meta device: nothing
is allocated and no weights are needed. Both ratios compare weights-only checkpoints (the
per-epoch artefacts); the resume checkpoint (`last.ckpt`) adds AdamW state, reported too.

Last line: `ckpt_ratio_tiny=... ckpt_ratio_real=...`
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def nbytes(state: dict) -> int:
    """Serialised size of a checkpoint dict."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def tiny_ratio() -> float:
    from conftest import make_tiny_config

    from robovlms_mobile.config import load_config
    from robovlms_mobile.data.synthetic import generate_episodes
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2
    from robovlms_mobile.train.trainer import MobileVLATrainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = load_config(REPO / "configs" / "tiny_cpu.json")
        cfg = make_tiny_config(base, build_tiny_kosmos2(tmp / "m"), tmp / "e", tmp)
        cfg["act_head"]["hidden_size"] = base["act_head"]["hidden_size"]
        generate_episodes(tmp / "e", 2, frame_size=(36, 64))
        module = MobileVLATrainer(cfg)
        full = {"state_dict": module.state_dict()}
        plugin = {"state_dict": {k: v for k, v in module.state_dict().items() if k in module.trainable_keys()},
                  "mobile_vla": module.plugin_metadata()}
        full_b, plugin_b = nbytes(full), nbytes(plugin)
    print(f"tiny: full-state {full_b / 1e6:.2f} MB, plugin {plugin_b / 1e6:.2f} MB")
    return full_b / plugin_b


def real_ratio() -> float:
    from robovlms_mobile.model.lora import apply_lora
    from robovlms_mobile.model.policy_head import MobileVLALSTMDecoder
    from robovlms_mobile.model.full_kosmos import published_kosmos2_config

    from transformers import Kosmos2ForConditionalGeneration

    cfg = json.loads((REPO / "configs" / "mobile_vla_lora.json").read_text())
    with torch.device("meta"):
        backbone = Kosmos2ForConditionalGeneration(published_kosmos2_config())
        backbone.requires_grad_(False)
        apply_lora(backbone, cfg["train_setup"])
        hidden = backbone.config.text_config.embed_dim
        head_cfg = {k: v for k, v in cfg["act_head"].items() if k != "type"}
        head = MobileVLALSTMDecoder(in_features=hidden, **head_cfg)
    action_token = hidden
    backbone_total = sum(p.numel() for p in backbone.parameters())
    lora = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    head_n = sum(p.numel() for p in head.parameters())
    trainable = lora + head_n + action_token
    full_b, plugin_b = 4 * (backbone_total + head_n + action_token), 4 * trainable  # fp32, as checkpoints are saved
    print(f"real Kosmos-2: {backbone_total / 1e9:.3f} B backbone params (incl. LoRA), trainable {trainable / 1e6:.1f} M "
          f"(LoRA {lora / 1e6:.1f} M, decoder {head_n / 1e6:.1f} M, action token {action_token})")
    print(f"real: full-state {full_b / 1e9:.2f} GB, plugin {plugin_b / 1e6:.0f} MB (weights, fp32)")
    adam = 8 * trainable
    print(f"real resume checkpoints with AdamW state: full {(full_b + adam) / 1e9:.2f} GB vs plugin "
          f"{(plugin_b + adam) / 1e6:.0f} MB, ratio {(full_b + adam) / (plugin_b + adam):.1f}x")
    return full_b / plugin_b


if __name__ == "__main__":
    tiny = tiny_ratio()
    real = real_ratio()
    print(f"ckpt_ratio_tiny={tiny:.2f} ckpt_ratio_real={real:.1f}")
