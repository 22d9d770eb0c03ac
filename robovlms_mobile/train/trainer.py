"""MobileVLATrainer: upstream's BaseTrainer with a 2-DOF batch, plugin LoRA and slim checkpoints.

Selected with `"trainer_type": "MobileVLATrainer"` in a config, through upstream's unedited
`main.py` (see registry.py). Differences from BaseTrainer:
- `_process_batch`: no arm/gripper split and no `.cuda()`; labels are `(velocity_chunk, None)`;
  the loader's uint8 `rgb` is normalised here, on the device (`normalise_batch`; float passes as is).
- LoRA applied with peft to the Kosmos-2 text attention only (model/lora.py), not upstream's
  `llava` path; vision stays frozen; the trainable-parameter count is printed.
- `train_setup.gradient_checkpointing` enables (non-reentrant) activation recomputation in Kosmos-2.
- checkpoints keep the trainable tensors plus config, action scale, prompt, window/chunk and the
  training instructions (checkpoint_meta.py); every checkpoint it reads goes through the guarded
  `checkpoint.load_checkpoint`, and the backbone is built without remote code (model/model_folder.py).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from robovlms.train.base_trainer import BaseTrainer

from robovlms_mobile.checkpoint.format import FORMAT_VERSION, PLUGIN_KEY, CheckpointError, load_checkpoint
from robovlms_mobile.checkpoint.metadata import MAX_INSTRUCTIONS, TRAINER_TYPE, plugin_entry
from robovlms_mobile.config import validate_config
from robovlms_mobile.data.dataset import DATA_SOURCE
from robovlms_mobile.data.transforms import normalise_batch
from robovlms_mobile.model.kosmos2_patch import ensure_kosmos2_patch
from robovlms_mobile.model.lora import LORA_TARGETS, apply_lora
from robovlms_mobile.model.policy_head import ZERO_INIT_MODULE
from robovlms_mobile.model.model_folder import upstream_builders_guarded
from robovlms_mobile.task import ACTION_AXES
from robovlms_mobile.errors import clip


def set_gradient_checkpointing(backbone: torch.nn.Module, enabled: bool) -> None:
    """Recompute Kosmos-2 layer activations in backward (`train_setup.gradient_checkpointing`; upstream ignores it).

    Non-reentrant checkpointing: it needs no input that requires grad, so it works with the
    frozen backbone + LoRA; it is active only in train mode.
    """
    if enabled:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif getattr(backbone, "is_gradient_checkpointing", False):
        backbone.gradient_checkpointing_disable()


class MobileVLATrainer(BaseTrainer):
    """Lightning module training Kosmos-2 + LoRA + MobileVLALSTMDecoder on velocity chunks."""

    def __init__(self, configs: dict[str, Any], *, validate: bool = True):
        """`validate=False` only for a config already checked elsewhere (the loader's inference skeleton)."""
        if validate:
            validate_config(configs)
        ensure_kosmos2_patch()
        super().__init__(configs)

    # ---- model -------------------------------------------------------------------------
    def _init_policy(self) -> torch.nn.Module:
        wanted = self.configs
        upstream_view = copy.deepcopy(wanted)
        upstream_view["train_setup"]["lora_enable"] = False  # upstream's LoRA path needs llava
        self.configs = upstream_view
        try:
            with upstream_builders_guarded():  # no remote code, no upstream tokenizer fallback (rmtree)
                model = super()._init_policy()
        finally:
            self.configs = wanted
        if wanted["train_setup"].get("lora_enable", False):
            adapted = apply_lora(model.backbone, wanted["train_setup"])
            # as upstream after get_peft_model: the word embedding trains on top of LoRA when asked
            model.word_embedding.requires_grad_(bool(wanted["train_setup"].get("train_text_embedding", False)))
            # upstream's get_peft_model would leave only adapters trainable: `train_vision: true` is honoured
            # here; without it the vision tower's own weights stay frozen (its adapters, if any, train)
            train_vision = bool(wanted["train_setup"].get("train_vision", False))
            for name, param in model.vision_tower.named_parameters():
                param.requires_grad_(train_vision or ".lora_" in name)
            targets = wanted["train_setup"].get("lora_targets", LORA_TARGETS[0])
            self._main_rank_print(f"LoRA ({targets}) on {len(adapted)} Kosmos-2 linear layers")
        set_gradient_checkpointing(model.backbone, bool(wanted["train_setup"].get("gradient_checkpointing", False)))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        self.trainable_parameters = trainable
        self._main_rank_print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
        return model

    def setup(self, stage: str) -> None:
        """Expose Lightning's ranks the way upstream's helpers read them (RANK / WORLD_SIZE env).

        Upstream's GRDataModule only shards with a DistributedSampler when `WORLD_SIZE > 1` in
        the environment (torchrun sets it; Lightning's own DDP launcher does not).
        """
        if self.trainer is not None and self.trainer.world_size > 1:
            os.environ["WORLD_SIZE"] = str(self.trainer.world_size)
            os.environ["RANK"] = str(self.trainer.global_rank)
            os.environ["LOCAL_RANK"] = str(self.trainer.local_rank)

    # ---- batches -----------------------------------------------------------------------
    def _process_batch(self, batch: dict[str, Any] | list) -> tuple:
        if isinstance(batch, list):
            batch = batch[0]

        def to(x: Any) -> Any:
            return x.to(self.device, non_blocking=True) if isinstance(x, torch.Tensor) else x

        rgb = to(batch["rgb"])
        if rgb.ndim == 4:
            rgb = rgb.unsqueeze(1)
        assert rgb.ndim == 5, f"rgb must be (B, T, 3, H, W), got {tuple(rgb.shape)}"
        rgb = normalise_batch(rgb[:, : self.configs["window_size"]])  # uint8 from the loader -> CLIP float, on the device
        action, chunk, chunk_mask = to(batch.get("action")), to(batch.get("action_chunck")), to(batch.get("chunck_mask"))
        if chunk is not None:
            assert chunk.shape[-1] == len(ACTION_AXES), f"action_chunck must end in {len(ACTION_AXES)} axes, got {tuple(chunk.shape)}"
        hand_rgb = to(batch.get("hand_rgb")) if self.use_hand_rgb else None
        return (
            rgb, hand_rgb, None, to(batch["text"]), to(batch["text_mask"]),
            None, None,  # forward-prediction frames: not used
            action, None,  # whole velocity vector, no gripper
            chunk, None,  # labels: (velocity_chunk, None)
            chunk_mask, None, None, None, None,
            batch.get("raw_text"), to(batch.get("rel_state")), batch.get("data_source", DATA_SOURCE),
        )

    def _get_loss(self, prediction: dict[str, Any]) -> dict[str, Any]:
        loss = prediction.get("loss_velocity_act")
        if loss is None:
            raise KeyError(f"no 'loss_velocity_act' in the model output {sorted(prediction)}: act_head.type must be MobileVLALSTMDecoder")
        return {"loss": loss, "loss_velocity": loss, "mae_velocity": prediction.get("mae_velocity_act")}

    # ---- checkpoints -------------------------------------------------------------------
    def plugin_metadata(self) -> dict[str, Any]:
        """What inference needs besides weights: config, action scale, prompt, window/chunk, instructions."""
        return plugin_entry(self.configs, int(getattr(self, "trainable_parameters", 0)), self.training_instructions())

    def training_instructions(self) -> list[str] | None:
        """The instructions of the training episodes (None when no datamodule is attached)."""
        trainer = getattr(self, "_trainer", None)
        found: set[str] = set()
        pending = [getattr(getattr(trainer, "datamodule", None), "_train_datasets", None)]
        while pending and len(found) <= MAX_INSTRUCTIONS:
            item = pending.pop()
            if isinstance(item, (list, tuple)):
                pending.extend(item)
            elif hasattr(item, "datasets"):  # ConcatDataset
                pending.extend(item.datasets)
            elif hasattr(item, "episodes"):
                found.update(e.instruction for e in item.episodes if isinstance(getattr(e, "instruction", None), str))
        return sorted(found) if found else None

    def trainable_keys(self) -> set[str]:
        """State-dict keys of the trained tensors (everything else is the frozen backbone)."""
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint[PLUGIN_KEY] = self.plugin_metadata()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume only from a checkpoint of the same window/chunk (one-line error otherwise)."""
        check_same_shape(checkpoint, self.configs, "--resume checkpoint")

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load a (possibly trainable-only) state dict; strict = every trainable tensor present, nothing unknown."""
        try:
            result = super().load_state_dict(state_dict, strict=False, assign=assign)
        except RuntimeError as exc:  # shape mismatches: torch lists every tensor over many lines
            detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).splitlines()[0])
            raise CheckpointError(f"checkpoint does not match the model: {detail[:300]}") from None
        missing = sorted(set(result.missing_keys) & self.trainable_keys())
        if strict and (missing or result.unexpected_keys):
            raise CheckpointError(
                f"checkpoint does not match the model: missing trainable {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        return result

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path | None = None, ckpt_source: str = "torch", configs: dict[str, Any] | None = None):
        """Build from `configs`, then load trainable weights from a plugin checkpoint (weights_only)."""
        if configs is None:
            raise ValueError("MobileVLATrainer.from_checkpoint needs the experiment configs")
        if ckpt_path is None:
            return cls(configs)
        ckpt = load_checkpoint(ckpt_path)  # model_load_path: the same guarded read
        check_same_shape(ckpt, configs, f"model_load_path {str(ckpt_path)!r}")
        model = cls(configs)
        try:
            result = model.load_state_dict(ckpt["state_dict"], strict=False)
        except CheckpointError as exc:
            raise CheckpointError(f"{ckpt_path}: {exc}") from None
        # a zero-initialised addition (the committed-action projection) may be absent: without it the model is unchanged
        missing = sorted(k for k in set(result.missing_keys) & model.trainable_keys() if ZERO_INIT_MODULE not in k)
        if missing or result.unexpected_keys:
            raise CheckpointError(f"{ckpt_path}: checkpoint does not match the model: missing trainable {missing[:5]}"
                                  f"{'...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}")
        return model


def check_same_shape(checkpoint: dict[str, Any], configs: dict[str, Any], what: str) -> None:
    """A plugin checkpoint whose recorded window/chunk equal the config's; else one-line CheckpointError."""
    info = checkpoint.get(PLUGIN_KEY)
    if not isinstance(info, dict):
        raise CheckpointError(f"{what}: not a robovlms-mobile checkpoint (no '{PLUGIN_KEY}' entry)")
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{what}: checkpoint format {repr(info.get('format_version'))[:40]}; this robovlms-mobile "
                              f"reads format {FORMAT_VERSION}")
    stored = info.get("config") if isinstance(info.get("config"), dict) else {}
    if stored.get("trainer_type") != TRAINER_TYPE:
        raise CheckpointError(f"{what}: stored trainer_type {clip(stored.get('trainer_type'))}; "
                              f"expected {TRAINER_TYPE!r}")
    shape = info.get("shape") if isinstance(info.get("shape"), dict) else {}
    for key, config_key in (("window", "window_size"), ("chunk", "fwd_pred_next_n")):
        recorded = shape.get(key, stored.get(config_key))
        if recorded != configs[config_key]:
            raise CheckpointError(f"{what}: trained with {key} {str(recorded)[:20]}, but the config has "
                                  f"{config_key} {configs[config_key]}; expected them to agree")
