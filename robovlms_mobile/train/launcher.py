"""`robovlms-mobile train CONFIG`: upstream's training pipeline, runnable on CPU as well as GPU.

It builds the same pieces as upstream `main.py experiment()` — `BaseTrainer.from_checkpoint`
(which dispatches on `trainer_type`), upstream `GRDataModule`, a Lightning `Trainer` from the
config's `trainer` section — without main.py's hard requirements (NCCL, `RANK`, copying files
into site-packages). Checkpoints go to `<output_dir>/`, the newest at `<output_dir>/last.ckpt`.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from robovlms_mobile.config import ConfigError, prepare_config
from robovlms_mobile.errors import StoppedBySignal
from robovlms_mobile.outputs import FolderLock, OutputError, check_output_root
from robovlms_mobile.train.registry import register

LIGHTNING_ONLY = ("logger",)  # config keys main.py converts itself before building the Trainer
# Config sections a callback composed from above must claim (`train(..., section_callbacks=)`):
# the launcher sits below evaluation, so it cannot build their callbacks itself.
CLAIMED_SECTIONS = ("sim_eval",)
SectionCallbacks = Mapping[str, Callable[[dict[str, Any], Path], Any]]


def claimed_callbacks(configs: dict[str, Any], output_dir: Path, section_callbacks: SectionCallbacks | None,
                      source: str = "config") -> list:
    """One callback per claimable section the config sets; a section nobody claims is a one-line ConfigError."""
    callbacks = []
    for name in CLAIMED_SECTIONS:
        if configs.get(name) is None:
            continue
        factory = (section_callbacks or {}).get(name)
        if factory is None:
            raise ConfigError(f"{source}: '{name}' is set but nothing here runs it (it needs the simulator evaluation "
                              f"that `robovlms-mobile train` adds); remove the section or train with `robovlms-mobile train`")
        callbacks.append(factory(configs[name], output_dir))
    return callbacks


def resolve_resume(resume: str | None, output_dir: Path) -> str | None:
    """`last` -> <output_dir>/last.ckpt when it exists (else start fresh); a path must exist."""
    if resume in (None, ""):
        return None
    if resume == "last":
        last = output_dir / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"--resume {resume!r}: no such checkpoint")
    return resume


def check_resume(path: str | None, configs: dict[str, Any]) -> None:
    """Read the resume checkpoint through the guarded path and check it fits the config, before the model is built.

    Lightning reads it again when `fit` starts, through `AtomicCheckpointIO.load_checkpoint` (the same guarded read).
    """
    from robovlms_mobile.checkpoint.format import load_checkpoint  # imports torch: not before the config is checked
    from robovlms_mobile.train.trainer import check_same_shape

    if path is not None:
        check_same_shape(load_checkpoint(path), configs, f"--resume {path}")


class OutputDirError(OSError):
    """The output directory cannot take checkpoints (not writable, or not enough free space)."""


def check_output_dir(output_dir: Path) -> None:
    """Fail before training if checkpoints could not be written there."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-probe-{os.getpid()}"  # one per process: ranks started together (torchrun) probe at once
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from None
    for stale in output_dir.glob(".*.ckpt.tmp-*"):  # left by a process killed mid-save
        stale.unlink(missing_ok=True)


def _rank() -> int:
    """This process's rank as the launchers set it (0 when not distributed)."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


def run_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoint files a run of this tool leaves in `output_dir` (Lightning's names, the sim-eval best)."""
    names = ("last.ckpt", "last-v*.ckpt", "epoch*-step*.ckpt", "best.ckpt")
    return sorted({p for pattern in names for p in output_dir.glob(pattern) if p.is_file() and not p.is_symlink()})


def check_previous_run(output_dir: Path, resume: str | None, *, fresh: bool) -> None:
    """A folder holding an earlier run's checkpoints is refused unless `--resume` continues it; `fresh` (a recipe
    rerunning itself into its own folder) deletes those checkpoints instead, so the one reported is the one written."""
    found = run_checkpoints(output_dir)
    if not found or resume:
        return
    if fresh:
        for path in found:
            path.unlink()
        return
    raise OutputError(f"output directory {output_dir} already holds a run ({', '.join(p.name for p in found[:3])}"
                      f"{' ...' if len(found) > 3 else ''}); continue it with --resume last, or choose another --output-dir")


def checkpoint_bytes(module: Any) -> int:
    """Upper estimate of one resume checkpoint: fp32 trainable weights + two AdamW moments + 1 MB."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable * 4 * 3 + 2**20


def check_free_space(output_dir: Path, needed: int) -> None:
    """Refuse to start when the disk cannot hold two checkpoints (the new one is written beside the old)."""
    free = shutil.disk_usage(output_dir).free
    if free < 2 * needed:
        raise OutputDirError(
            f"output directory {output_dir} has {free / 2**20:.0f} MB free; checkpoints need about "
            f"{2 * needed / 2**20:.0f} MB (two of {needed / 2**20:.0f} MB while one is replaced)"
        )


def check_hardware_and_model(configs: dict[str, Any], source: str) -> None:
    """Before anything is built: a GPU accelerator needs a GPU, and the backbone folders load without custom code.

    Upstream's tokenizer builder deletes its folder when the first load fails; checking the folder
    here first means a config path never decides what is deleted.
    """
    import torch

    from robovlms_mobile.model.model_folder import BaseModelError, check_model_folder

    accelerator = configs["trainer"].get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{source}: 'trainer.accelerator' = {accelerator!r}: no GPU is visible here; expected 'cpu' or 'auto'")
    checked = set()
    for key in ("vlm", "tokenizer"):
        folder = configs[key].get("pretrained_model_name_or_path")
        if configs.get("robovlm_name") == "RoboResNet" and key == "vlm" or folder in checked:
            continue
        try:
            check_model_folder(folder, origin=f"{key}.pretrained_model_name_or_path")
        except BaseModelError as exc:
            raise ConfigError(f"{source}: '{key}.pretrained_model_name_or_path': {exc}") from None
        checked.add(folder)


def preflight_data(configs: dict[str, Any]) -> None:
    """Check every episode file (and split file) named by the config before the (large) model is built.

    Invalid files raise one InvalidEpisodesError listing them all, unless the section has
    `skip_invalid: true` (then they are skipped with a warning, as the dataset will).
    """
    from robovlms_mobile.config import DATASET_TYPE
    from robovlms_mobile.data.dataset import DEFAULT_MAX_SPEED, min_episode_frames, select_episodes

    seen = set()
    for name, default_split in (("train_dataset", "train"), ("val_dataset", "val")):
        section = configs.get(name)
        if not isinstance(section, dict) or section.get("type") != DATASET_TYPE:
            continue
        kwargs = dict(split=section.get("split") or default_split,
                      pattern=section.get("episode_pattern") or section.get("pattern", "*.h5"),
                      skip_invalid=section.get("skip_invalid", False), split_file=section.get("split_file"),
                      val_ratio=section.get("val_ratio", 0.1), split_seed=section.get("split_seed", 0))
        key = (str(section["data_dir"]), *map(str, kwargs.values()))
        if key not in seen:
            seen.add(key)
            min_length = min_episode_frames(configs["window_size"], configs["fwd_pred_next_n"],
                                            section.get("require_full_chunks", False) is True)
            select_episodes(section["data_dir"], min_length=min_length,
                            max_speed=section.get("max_speed", DEFAULT_MAX_SPEED), **kwargs)


def build_datamodule(configs: dict[str, Any], model: Any) -> Any:
    """Upstream GRDataModule with the kwargs main.py passes that MobileVLAH5Dataset reads."""
    from robovlms.data.datamodule.gr_datamodule import GRDataModule

    return GRDataModule(
        configs["train_dataset"],
        configs["val_dataset"],
        configs["batch_size"],
        configs["num_workers"],
        tokenizer=model.model.tokenizer,
        tokenizer_config=configs["tokenizer"],
        fwd_pred_next_n=configs["fwd_pred_next_n"],
        window_size=configs["window_size"],
        image_size=configs["image_size"],
        model_name=configs["model"],
        seed=configs.get("seed", 123),
    )


def build_trainer(configs: dict[str, Any], output_dir: Path, *, progress: bool = True, extra_callbacks: list | None = None) -> Any:
    """A Lightning Trainer from the config's `trainer` section, checkpointing into output_dir."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from robovlms_mobile.checkpoint.atomic_io import AtomicCheckpointIO
    from robovlms_mobile.train.progress import EpochSummary
    from robovlms_mobile.train.loggers import build_loggers
    from robovlms_mobile.train.watchdog import DEFAULT_MINUTES, StallWatchdog

    kwargs = {k: v for k, v in copy.deepcopy(configs["trainer"]).items() if k not in LIGHTNING_ONLY}
    kwargs.setdefault("devices", configs.get("gpus", "auto"))
    kwargs["num_nodes"] = configs.get("num_nodes", kwargs.get("num_nodes", 1))
    kwargs.setdefault("gradient_clip_val", configs.get("gradient_clip_val"))
    multi = kwargs.get("num_nodes", 1) > 1 or (isinstance(kwargs["devices"], int) and kwargs["devices"] > 1)
    stall_min = float(configs.get("stall_timeout_min", DEFAULT_MINUTES))
    if kwargs.get("strategy") == "ddp" or (multi and kwargs.get("strategy", "auto") == "auto"):
        from datetime import timedelta

        from lightning.pytorch.strategies import DDPStrategy

        # NCCL on GPUs, gloo on CPU: Lightning picks the backend from the accelerator. The collectives'
        # timeout outlasts the watchdog's, so a stall ends with the watchdog's line rather than a timeout trace.
        kwargs["strategy"] = DDPStrategy(find_unused_parameters=False, timeout=timedelta(minutes=max(30.0, stall_min + 10)))
    every_n_steps = int(configs.get("checkpoint_every_n_steps", 0))
    # enable_version_counter=False: last.ckpt is this run's own file, replaced in place (never a last-v1.ckpt
    # beside an older run's last.ckpt; check_previous_run refused or resumed that run before)
    epoch_ckpt = ModelCheckpoint(dirpath=output_dir, filename="epoch{epoch}-step{step}", auto_insert_metric_name=False,
                                 save_last=True, save_top_k=-1, every_n_epochs=1, enable_version_counter=False)
    callbacks = [StallWatchdog(stall_min)] if stall_min > 0 else []  # first: its marks precede the other hooks
    callbacks += [epoch_ckpt, LearningRateMonitor(logging_interval="step"), EpochSummary(), *(extra_callbacks or [])]
    if every_n_steps > 0:  # `last.ckpt` also every N optimiser steps, so a killed run loses at most N steps
        callbacks.append(ModelCheckpoint(dirpath=output_dir, save_last=True, save_top_k=0, every_n_train_steps=every_n_steps,
                                         enable_version_counter=False))
    return Trainer(
        **kwargs,
        plugins=[AtomicCheckpointIO()],
        callbacks=callbacks,
        logger=build_loggers(configs, output_dir),  # csv / tensorboard, one log continued on resume
        default_root_dir=output_dir,
        enable_progress_bar=progress,
    )


def train(
    config: str | Path | dict[str, Any],
    *,
    output_dir: str | Path | None = None,
    resume: str | None = None,
    max_steps: int | None = None,
    max_epochs: int | None = None,
    devices: int | None = None,
    progress: bool = True,
    callbacks: list | None = None,
    section_callbacks: SectionCallbacks | None = None,
    stall_timeout_min: float | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train from a config file (or dict); returns final metrics and the checkpoint paths.

    `section_callbacks` maps a config section (`sim_eval`) to the factory of the callback that runs it.
    `stall_timeout_min` overrides the config's: minutes without progress on any rank before the
    run is ended with one line (0: no watchdog). The output folder is locked for the run (a second run
    into it is refused); one holding an earlier run is refused unless `resume` continues it, or `fresh`
    (a recipe rerunning into its own folder) deletes that run's checkpoints first.
    """
    configs, notes = prepare_config(config)  # before any upstream import: a bad config costs one line, nothing else
    source = "config" if isinstance(config, dict) else str(config)
    out = (check_output_root(output_dir, "--output-dir") if output_dir
           else check_output_root(configs.get("output_root", "runs")) / configs.get("exp_name", "default"))
    check_hardware_and_model(configs, source)
    register()
    if _rank() == 0:
        for line in notes:
            print(f"robovlms-mobile train: notice: {source}: {line}", file=sys.stderr)
    if max_steps is not None:
        configs["trainer"]["max_steps"] = max_steps
    if max_epochs is not None:
        configs["trainer"]["max_epochs"] = max_epochs
    if devices is not None:
        configs["trainer"]["devices"] = devices
    if stall_timeout_min is not None:
        configs["stall_timeout_min"] = stall_timeout_min
    configs["trainer"].setdefault("max_steps", -1)
    preflight_data(configs)
    claimed = claimed_callbacks(configs, out, section_callbacks, source)
    check_output_dir(out)
    lock = FolderLock(out, "output directory") if _rank() == 0 else None  # DDP ranks > 0 run under rank 0's lock
    if lock is not None:
        lock.acquire()
    try:
        return _train_locked(configs, out, resume=resume, fresh=fresh, progress=progress,
                             callbacks=[*(callbacks or []), *claimed])
    finally:
        if lock is not None:
            lock.release()


def _fit(trainer: Any, model: Any, datamodule: Any, ckpt_path: str | None, out: Path) -> None:
    """trainer.fit; a SIGTERM (Lightning's handler notes it) ends in last.ckpt at the newest step and StoppedBySignal."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread only
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main:  # Lightning chains it after its own handler; it chains a handler installed before it
        signal.signal(signal.SIGTERM, lambda signum, frame: _quiet_loader_deaths(signum, frame, previous))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except (SIGTERMException, RuntimeError) as exc:
        # SIGTERM to the process group kills the data-loader workers first: fit then fails fetching the next batch
        if not trainer.received_sigterm:
            raise
        saved = ""
        if trainer.world_size == 1 and trainer.global_step > 0:  # a collective save would wait for ranks already gone
            trainer.save_checkpoint(out / "last.ckpt", weights_only=False)  # full state: --resume last continues it
            saved = f"{out / 'last.ckpt'} holds step {trainer.global_step}; "
        raise StoppedBySignal(f"SIGTERM at step {trainer.global_step}: {saved}continue with --resume last") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _quiet_loader_deaths(signum: int, frame: Any, previous: Any) -> None:
    """On SIGTERM, stop torch's SIGCHLD handler: it raises again from each dying loader's __del__, a traceback after our one line."""
    signal.signal(signal.SIGCHLD, _ignore)  # a Python no-op, not SIG_DFL: a SIGCHLD already tripped would raise
    if callable(previous):
        previous(signum, frame)


def _ignore(signum: int, frame: Any) -> None:
    """Do nothing (a worker's exit once stopping is expected)."""


def _train_locked(configs: dict[str, Any], out: Path, *, resume: str | None, fresh: bool, progress: bool,
                  callbacks: list | None) -> dict[str, Any]:
    from lightning import seed_everything
    from robovlms.train.base_trainer import BaseTrainer

    ckpt_path = resolve_resume(resume, out)
    if _rank() == 0:
        check_previous_run(out, ckpt_path, fresh=fresh)
    check_resume(ckpt_path, configs)
    configs["output_dir"] = str(out)
    seed_everything(configs.get("seed", 123) + _rank(), workers=True)
    trainer = build_trainer(configs, out, progress=progress, extra_callbacks=callbacks)
    configs["gpus"] = trainer.num_devices
    configs["train_setup"]["precision"] = configs["trainer"].get("precision", 32)
    model = BaseTrainer.from_checkpoint(configs.get("model_load_path"), configs.get("model_load_source", "torch"), configs)
    check_free_space(out, checkpoint_bytes(model))
    datamodule = build_datamodule(configs, model)
    _fit(trainer, model, datamodule, ckpt_path, out)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    last = next((cb.last_model_path for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")), "")
    return {"metrics": metrics, "output_dir": str(out), "last_checkpoint": last or str(out / "last.ckpt"),
            "global_step": trainer.global_step, "model": model, "trainer": trainer}
