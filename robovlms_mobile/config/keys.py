"""Every config key this package knows: what it does here, how its value is checked.

Three kinds: USED (read by this package or by upstream code on our training path), MAPPED
(the lab's original or upstream name for one of ours: rewritten with one notice line), and
NO_EFFECT (accepted with one notice line when its value would have done something). Any other
key in a Mobile VLA config is an error, so a typo never trains silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robovlms_mobile.config.checks import (Check, anything, boolean, integer, is_false, is_null, list_of, name, number, obj,
                                           one_of, optional, path_like, paths, string)
from robovlms_mobile.model.lora import LORA_TARGETS
from robovlms_mobile.task import CHUNK, MAX_SPEED, WINDOW
from robovlms_mobile.upstream import CNN_TYPE, DATASET_TYPE, HEAD_TYPE, TRAINER_TYPE  # noqa: F401  (re-exported)

USED, MAPPED, NO_EFFECT = "used", "mapped", "no effect here"

KOSMOS_TYPE = "RoboKosMos"
CHUNK_ALIASES = ("action_chunk_size", "chunk_size", "act_step")  # the other names of fwd_pred_next_n


def _always(v: Any) -> bool:
    return True


def falsy(v: Any) -> bool:
    """null, false, 0, '' or an empty list/object: a value under which a no-effect key changes nothing."""
    return v is None or v is False or v == 0 or v == "" or v == [] or v == {}


def equals(*values: Any) -> Callable[[Any], bool]:
    """Neutral when the value is one of `values` (or null)."""
    return lambda v: v is None or any(v == x and type(v) is type(x) for x in values)


@dataclass(frozen=True)
class Key:
    """One key: its kind, what it does here (one line), its value check, and when it is neutral."""

    kind: str
    what: str
    check: Check = anything
    neutral: Callable[[Any], bool] = _always  # NO_EFFECT: no notice while this holds


def used(what: str, check: Check = anything) -> Key:
    return Key(USED, what, check)


def mapped(what: str, check: Check = anything) -> Key:
    return Key(MAPPED, what, check)


def no_effect(what: str, check: Check = anything, neutral: Callable[[Any], bool] = falsy) -> Key:
    return Key(NO_EFFECT, what, check, neutral)


POS_INT, NONNEG_INT = integer(1), integer(0)
UPSTREAM_ARG = "set by upstream main.py's command line (accepted so its configs validate)"

TOP: dict[str, Key] = {
    "parent": used("inherit every key of this config file (from the cwd, else beside this file); this file's keys win",
                   optional(string)),
    "robovlm_name": used("backbone class: RoboKosMos (Kosmos-2 + LoRA) or RoboResNet (the CNN baseline)",
                         one_of(KOSMOS_TYPE, CNN_TYPE)),
    "trainer_type": used("Lightning module: MobileVLATrainer (2-DOF velocity chunks)", one_of(TRAINER_TYPE)),
    "task_name": no_effect("a label (upstream main.py puts it in log paths)", optional(string), _always),
    "exp_name": used("run folder name: checkpoints go to <output_root>/<exp_name>", name),
    "model": used("backbone family passed to upstream ('kosmos'; 'resnet' for the CNN baseline)", string),
    "model_url": no_effect("never downloaded here: the backbone is read from model_path", optional(string), _always),
    "model_path": used("local backbone folder (config.json, weights, processor)", string),
    "model_config": used("the backbone's config.json", string),
    "model_load_path": used("checkpoint whose weights initialise the model (null: from the backbone)", optional(string)),
    "model_load_source": used("format of model_load_path ('torch')", one_of("torch")),
    "resume": no_effect("use `robovlms-mobile train --resume` (last or a checkpoint path)", optional(string)),
    "seed": used("seed for weights, sampling and the data loaders (+ rank)", integer()),
    "seq_len": used("upstream's step-count estimate for the LR schedule", number(0)),
    "image_size": used("frames are resized to image_size x image_size", integer(16, 4096)),
    "image_mean": no_effect("frames are normalised with the backbone's CLIP mean/std (data/transforms.py)",
                            list_of(number(), 3), equals([0.48145466, 0.4578275, 0.40821073])),
    "image_std": no_effect("frames are normalised with the backbone's CLIP mean/std (data/transforms.py)",
                           list_of(number(), 3), equals([0.26862954, 0.26130258, 0.27577711])),
    "window_size": used(f"frames of history per training window (default {WINDOW}); the action head uses this value", POS_INT),
    "fwd_pred_next_n": used(f"actions predicted per frame, the chunk (default {CHUNK}); canonical name of the chunk length",
                            POS_INT),
    "arm_gripper_loss_ratio": no_effect("no gripper in 2-DOF navigation: the loss is the velocity Huber loss", number(0)),
    "cap_loss_ratio": no_effect("no caption loss in 2-DOF navigation", number(0)),
    "fwd_loss_ratio": no_effect("no forward-prediction loss in 2-DOF navigation", number(0)),
    "batch_size": used("windows per batch and process", POS_INT),
    "num_workers": used("DataLoader worker processes (upstream needs >= 1: 0 is raised to 1 with a notice)", NONNEG_INT),
    "data_scale": no_effect("not read by upstream at the pinned commit", number(0), equals(1, 1.0)),
    "optimizer": used("upstream's optimiser name ('adamw')", string),
    "learning_rate": used("peak learning rate", number(0, lo_open=True)),
    "min_lr_scale": used("final LR as a fraction of learning_rate (cosine schedules)", number(0)),
    "weight_decay": used("AdamW weight decay", number(0)),
    "warmup_epochs": used("linear warm-up length in epochs", number(0)),
    "warmup_steps": used("linear warm-up length in optimiser steps", NONNEG_INT),
    "warmup_ratio": no_effect("not read by upstream at the pinned commit", optional(number(0, 1))),
    "scheduler": used("upstream's LR schedule ('constant', 'cosine')", string),
    "use_hand_rgb": used("must be false: the robot has no wrist camera", is_false),
    "use_time_causal_attn": no_effect("not read by upstream at the pinned commit", boolean),
    "use_mim_obs_loss": no_effect("not read on the Kosmos-2 path", boolean),
    "use_pixel_loss": no_effect("not read by upstream at the pinned commit", boolean),
    "use_obs_queries": no_effect("not read by upstream at the pinned commit", boolean),
    "use_vision_resampler": used("must be false: image tokens go to the LM without a resampler", is_false),
    "vision_resampler": no_effect("the resampler is not built (use_vision_resampler is false)", optional(obj)),
    "vision_masked_ratio": no_effect("masked-image loss is off (use_mim_obs_loss)", number(0, 1), equals(0, 0.0)),
    "use_tube_mask": no_effect("masked-image loss is off", boolean),
    "act_encoder": no_effect("no action encoder on this path", optional(obj)),
    "output_root": used("checkpoints go to <output_root>/<exp_name> (written into, never emptied)", path_like),
    "log_root": no_effect("logs go to <output_dir>/logs", optional(path_like), _always),
    "cache_root": no_effect("the frame cache is train_dataset.cache_dir", optional(path_like), _always),
    "gpus": used("devices when trainer.devices is not set (upstream's name); the launcher records the count", POS_INT),
    "num_nodes": used("machines for DDP (-> trainer.num_nodes)", POS_INT),
    "gradient_clip_val": used("gradient clipping when trainer.gradient_clip_val is not set", optional(number(0))),
    "stall_timeout_min": used("end the run with one line when no rank made progress for this many minutes "
                              "(default 30; 0: off; train/watchdog.py)", number(0)),
    "checkpoint_every_n_steps": used("also write last.ckpt every N optimiser steps (0: per epoch only)", NONNEG_INT),
    "train_setup": used("what trains: LoRA, frozen parts (section)", obj),
    "act_head": used("the action head (section)", obj),
    "fwd_head": used("must be null: no forward-prediction head", is_null),
    "tokenizer": used("the processor/tokenizer folder (section)", obj),
    "vlm": used("the backbone folder (section)", obj),
    "trainer": used("Lightning Trainer arguments (section)", obj),
    "train_dataset": used("training episodes (section)", obj),
    "val_dataset": used("validation episodes (section)", obj),
    "cnn_backbone": used("the CNN baseline's network, with robovlm_name RoboResNet (section)", obj),
    "sim_eval": used("closed-loop simulator evaluation every N epochs, best.ckpt by success (section; "
                     "sim_eval_callback.py)", optional(obj)),
    "norm_action": mapped("labels are always scaled to [-1, 1] by train_dataset.max_speed (recorded in the checkpoint)",
                          boolean),
    "norm_min": mapped("see norm_action: the scale is max_speed, not a clip at norm_min", number()),
    "norm_max": mapped("see norm_action: the scale is max_speed, not a clip at norm_max", number()),
    **{alias: mapped("another name of fwd_pred_next_n (the chunk length)", POS_INT) for alias in CHUNK_ALIASES},
    # written by launchers into the config they train with (and so found in checkpoints)
    "output_dir": used("set by the launcher: the run's checkpoint folder", optional(path_like)),
    "log_dir": used(UPSTREAM_ARG, optional(path_like)),
    "raw_config_path": used(UPSTREAM_ARG, optional(string)),
    "config": used(UPSTREAM_ARG, optional(string)),
    "data_dir": used(UPSTREAM_ARG, optional(string)),
    "annotation_file": used(UPSTREAM_ARG, optional(string)),
    "data_subfolder": used(UPSTREAM_ARG, optional(string)),
    "task_num": used(UPSTREAM_ARG, optional(integer())),
    "use_multi_modal_emb": used(UPSTREAM_ARG, is_false),
    "no_video_pretrained_model": used(UPSTREAM_ARG, boolean),
    "finetune": used(UPSTREAM_ARG, boolean),
    "llm": used(UPSTREAM_ARG, optional(obj)),
}

TRAIN_SETUP: dict[str, Key] = {
    "precision": no_effect("replaced by trainer.precision (as upstream main.py does)", anything, _always),
    "predict_action": used("must be true: the model predicts actions", one_of(True)),
    "predict_forward": used("must be false: no image prediction", is_false),
    "predict_forward_hand": used("must be false: no wrist camera", is_false),
    "predict_caption": used("must be false: no caption loss", is_false),
    "train_vision": used("train the vision encoder too", boolean),
    "freeze_backbone": used("freeze the language model (LoRA still trains)", boolean),
    "freeze_resampler": used("upstream's resampler freeze flag (no resampler here)", boolean),
    "train_text_embedding": used("train the word embeddings", boolean),
    "gradient_checkpointing": no_effect("not read on the Kosmos-2 path at the pinned commit", boolean),
    "lora_enable": used("LoRA adapters on the Kosmos-2 backbone (which layers: lora_targets)", boolean),
    "lora_r": used("LoRA rank", POS_INT),
    "lora_alpha": used("LoRA scaling alpha", number(0, lo_open=True)),
    "lora_dropout": used("LoRA dropout", number(0, 1, hi_open=True)),
    "lora_bias": used("LoRA bias: 'none', 'all' or 'lora_only'", one_of("none", "all", "lora_only")),
    "lora_targets": used("which layers LoRA adapts: 'text_attention' (the text transformer's q/k/v/out projections) or "
                         "'all_linear' (every linear layer but lm_head, vision tower included: what upstream's llava "
                         "helper selects on Kosmos-2)", one_of(*LORA_TARGETS)),
    "bits": no_effect("LLaVA quantisation option, not read by upstream", integer(), equals(-1, 16, 32)),
    "freeze_mm_mlp_adapter": no_effect("LLaVA option, not read by upstream", boolean),
    "tune_mm_mlp_adapter": no_effect("LLaVA option, not read by upstream", boolean),
    "mm_use_im_start_end": no_effect("LLaVA option, not read by upstream", boolean),
    "mm_use_im_patch_token": no_effect("LLaVA option, not read by upstream", boolean),
    "mm_projector_lr": no_effect("LLaVA option, not read by upstream", optional(number(0))),
}

ACT_HEAD: dict[str, Key] = {
    "type": used(f"{HEAD_TYPE}: LSTM over the action token -> (chunk, 2) velocities in [-1, 1] "
                 "(upstream's 'LSTMDecoder' is mapped to it)", one_of(HEAD_TYPE)),
    "action_dim": used("must be 2: [linear_x, linear_y]", one_of(2)),
    "hidden_size": used("LSTM width", POS_INT),
    "num_layers": used("LSTM layers", POS_INT),
    "policy_rnn_dropout_p": used("dropout between LSTM layers", number(0, 1, hi_open=True)),
    "down_sample": used("'none' or 'pooling' over the action tokens", one_of("none", "pooling")),
    "latent": used("action tokens per frame", POS_INT),
    "window_size": used("copy of the top-level window_size (upstream uses the top-level value)", POS_INT),
    "fwd_pred_next_n": used("copy of the top-level fwd_pred_next_n (upstream uses the top-level value)", POS_INT),
    "action_space": used("must be 'continuous'", one_of("continuous")),
    "with_history": used("the LSTM runs over the window's history", boolean),
    "history_type": used("'post': history after the VLM (streaming at inference)", one_of("post", "pre")),
    "huber_delta": used("Huber loss delta", number(0, lo_open=True)),
    "sideways_weight": used("loss weight of linear_y labels where a sideways key was pressed (default 1)",
                            number(0, 100, lo_open=True)),
    "committed_steps": used("training-time RTC: condition on up to this many committed chunk steps (0: off, < chunk)",
                            integer(0)),
}

DATASET: dict[str, Key] = {
    "type": used(f"{DATASET_TYPE}: robot HDF5 episodes (V4/V5)", string),
    "data_dir": used("folder(s) of episode files (searched with subfolders)", paths),
    "pattern": used("file-name glob under data_dir (default '*.h5')", string),
    "split": used("'train', 'val' or 'test' (test needs split_file); default: train for train_dataset, val for val_dataset",
                  optional(one_of("train", "val", "test"))),
    "val_ratio": used("share of episodes held out for validation (seeded, scenario-stratified)", number(0, 1, lo_open=True, hi_open=True)),
    "split_seed": used("seed of the val_ratio split", integer()),
    "split_file": used("a split file from `data split` (overrides val_ratio)", optional(string)),
    "max_speed": used(f"labels = velocity / max_speed, in [-1, 1] (default {MAX_SPEED} m/s; recorded in the checkpoint)",
                      number(0, lo_open=True)),
    "prompt_template": used("prompt around the instruction; must contain {instruction}", string),
    "skip_invalid": used("leave invalid episode files out with a warning instead of stopping", boolean),
    "cache_dir": used("memory-mapped cache of resized frames", optional(string)),
    "mirror": used("mirror augmentation: flip frames, swap left/right in the instruction, negate linear_y; "
                   "true = probability 0.5, or a probability in [0, 1] (training only)", anything),
    "color_jitter": used("colour jitter strength in [0, 1): one brightness/contrast/saturation factor per window "
                         "(training only)", number(0, 1, hi_open=True)),
    "require_full_chunks": used("refuse episodes shorter than window + chunk instead of masking their missing "
                                "future steps out of the loss (default false)", boolean),
    "frame_strides": used("training aid for asynchronous execution: each training window draws a frame spacing from "
                          "this list (default [1]); a strided window is labelled at its newest position only", anything),
    "rgb_pad": used("random-shift augmentation: pad by rgb_pad px (edge replicate), random crop back; "
                    "training only; -1 or 0: off", integer(-1, 256)),
    "model_name": no_effect("the tokenizer comes from the model folder", optional(string), _always),
    "shift_first": no_effect("read neither by the original dataset nor by upstream", boolean),
    "episode_pattern": mapped("the original's name of pattern (a glob in data_dir)", string),
    "train_split": mapped("the original's train share: val_ratio = 1 - train_split (seeded, stratified, "
                          "not by sorted file order)", number(0, 1, lo_open=True, hi_open=True)),
    "is_validation": mapped("the original's split flag: true -> split 'val', false -> split 'train'", boolean),
    **{alias: mapped("another name of the top-level fwd_pred_next_n (must agree with it)", POS_INT) for alias in CHUNK_ALIASES},
    "window_size": no_effect("the top-level window_size is used (upstream passes it to the dataset)", POS_INT, _always),
    "fwd_pred_next_n": no_effect("the top-level fwd_pred_next_n is used (upstream passes it to the dataset)", POS_INT, _always),
}

TOKENIZER: dict[str, Key] = {
    "type": used("transformers class that loads the processor", one_of("AutoProcessor", "AutoTokenizer")),
    "pretrained_model_name_or_path": used("local processor folder (checked before training: loads, no custom code)", string),
    "tokenizer_type": used("upstream's prompt family ('kosmos')", string),
    "max_text_len": used("prompt length limit in tokens", POS_INT),
    "additional_special_tokens": used("extra tokens (null: none)", optional(list_of(string))),
    "use_local_files": used("load the processor offline only", boolean),
}

VLM: dict[str, Key] = {
    "type": used("transformers class that loads the backbone", one_of("AutoModelForVision2Seq")),
    "name": used("backbone family ('kosmos')", string),
    "pretrained_model_name_or_path": used("local backbone folder (checked before training: no custom code)", string),
}

CNN: dict[str, Key] = {
    "arch": used("ResNet variant", string),
    "hidden_size": used("fusion width", POS_INT),
    "input_size": used("frames are resized to this for the CNN", POS_INT),
    "fusion_layers": used("transformer layers fusing image and instruction", POS_INT),
    "heads": used("attention heads (divide hidden_size)", POS_INT),
}

LAUNCHER_SET = ("callbacks", "plugins", "logger", "default_root_dir", "enable_progress_bar")
LIGHTNING_ARGS = ("accelerator", "strategy", "devices", "num_nodes", "precision", "fast_dev_run", "max_epochs", "min_epochs",
                  "max_steps", "min_steps", "max_time", "limit_train_batches", "limit_val_batches", "limit_test_batches",
                  "limit_predict_batches", "overfit_batches", "val_check_interval", "check_val_every_n_epoch",
                  "num_sanity_val_steps", "log_every_n_steps", "enable_checkpointing", "enable_model_summary",
                  "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "benchmark",
                  "inference_mode", "use_distributed_sampler", "profiler", "detect_anomaly", "barebones", "sync_batchnorm",
                  "reload_dataloaders_every_n_epochs", "enable_autolog_hparams", "model_registry")
PRECISIONS = ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", 64, 32, 16)

TRAINER: dict[str, Key] = {
    **{k: used(f"Lightning Trainer({k}=...)") for k in LIGHTNING_ARGS},
    "accelerator": used("Lightning accelerator: 'cpu', 'gpu'/'cuda' or 'auto'", one_of("cpu", "gpu", "cuda", "auto", "mps", "tpu")),
    "precision": used("Lightning precision (also copied to train_setup.precision)", one_of(*PRECISIONS)),
    "max_epochs": used("Lightning max_epochs (-1: no limit)", integer(-1)),
    "max_steps": used("Lightning max_steps (-1: no limit)", integer(-1)),
    "accumulate_grad_batches": used("batches per optimiser step", POS_INT),
    "log_every_n_steps": used("Lightning logging interval", POS_INT),
    "check_val_every_n_epoch": used("validate every N epochs", optional(POS_INT)),
    "gradient_clip_val": used("Lightning gradient clipping", optional(number(0))),
    "devices": used("processes/GPUs on this node ('auto', a count, or a list)", anything),
    "logger": no_effect("the launcher logs CSV to <output_dir>/logs (upstream main.py builds its loggers from this)",
                        anything, _always),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "train_setup": TRAIN_SETUP, "act_head": ACT_HEAD, "train_dataset": DATASET, "val_dataset": DATASET,
    "tokenizer": TOKENIZER, "vlm": VLM, "cnn_backbone": CNN, "trainer": TRAINER,
}
