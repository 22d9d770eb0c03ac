"""`robovlms-mobile rehearse CONFIG`: build, train, save and reload the config's model at its real size on CPU.

No weights are needed: the backbone is Kosmos-2 at its published architecture with random
weights (model/full_kosmos.py, written once to a cache folder and then loaded through
upstream's own `from_pretrained`). Everything after that is the real path: MobileVLATrainer
(LoRA, decoder, trainable-parameter setup), upstream's GRDataModule over synthetic episodes
drawn on the fly, a Lightning `fit` of K optimiser steps with the config's window, chunk, LoRA,
gradient accumulation and clipping, `Trainer.save_checkpoint` (slim plugin checkpoint, atomic
write) and `runtime.loader.load_for_inference` (weights_only). Each phase reports its wall time
and peak RSS; gradient checkpointing is measured by one forward + backward with it off and on;
the GPU memory in the config's precision is an estimate derived from these (memory.py).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from robovlms_mobile.train.memory import GIB, MemoryGuard, PeakRSS, PhaseLog, gpu_estimate
from robovlms_mobile.outputs import write_text

DEFAULT_CACHE = Path(os.environ.get("ROBOVLMS_MOBILE_CACHE", Path.home() / ".cache" / "robovlms-mobile"))
FULL_MODEL_DIRNAME = "kosmos-2-patch14-224-random"
CPU_PRECISION = "32-true"


def _quiet():
    """Silence upstream's per-parameter prints and Lightning's banners."""
    import logging

    stack = contextlib.ExitStack()
    for name in ("lightning.pytorch", "lightning.fabric", "transformers"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def prepare_backbone(*, tiny: bool, model_dir: str | Path | None, work: Path) -> Path:
    """The backbone folder: the tiny Kosmos-2, or the full-size random one (built once, then reused)."""
    if tiny:
        from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

        return build_tiny_kosmos2(work / "tiny-kosmos2")
    from robovlms_mobile.model.full_kosmos import build_random_kosmos2

    return build_random_kosmos2(Path(model_dir) if model_dir else DEFAULT_CACHE / FULL_MODEL_DIRNAME)


def rehearsal_config(configs: dict[str, Any], backbone: Path, data_dir: Path, out: Path, *, steps: int,
                     batch_size: int) -> dict[str, Any]:
    """The config as it runs here: backbone and data pointed at local folders, CPU fp32, `steps` steps."""
    from robovlms_mobile.model.model_folder import point_config_at

    cfg = point_config_at(configs, backbone)
    cfg.pop("parent", None)
    for name in ("train_dataset", "val_dataset"):
        section = cfg.get(name)
        if isinstance(section, dict):
            section["data_dir"] = str(data_dir)
            for key in ("split_file", "cache_dir"):  # the synthetic episodes have neither
                section.pop(key, None)
    cfg.update(batch_size=batch_size, num_workers=1, model_load_path=None, resume=None,
               output_root=str(out), log_root=str(out / "logs"), cache_root=str(out / "cache"))
    cfg["train_setup"]["precision"] = CPU_PRECISION
    cfg["trainer"].update(accelerator="cpu", devices=1, strategy="auto", precision=CPU_PRECISION, max_steps=steps,
                          max_epochs=max(1, steps))
    return cfg


def synthetic_data(configs: dict[str, Any], out: Path, *, windows: int, seed: int) -> Path:
    """Episodes of exactly window + chunk frames, enough for `windows` training windows after the val split."""
    from robovlms_mobile.data.synthetic import generate_episodes

    val_ratio = float((configs.get("train_dataset") or {}).get("val_ratio", 0.1))
    n = max(6, int(windows / max(1e-6, 1 - val_ratio)) + 3)
    generate_episodes(out, n, seed=seed, frame_size=(72, 128), length=configs["window_size"] + configs["fwd_pred_next_n"])
    return out


class StepTimer(Callback):
    """Lightning callback: wall time of every optimiser step (its accumulated micro-batches + the update)."""

    def __init__(self, accumulate: int) -> None:
        self.accumulate = accumulate
        self.steps: list[float] = []
        self._t0: float | None = None
        self._micro = 0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._micro % self.accumulate == 0:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._micro += 1
        if self._micro % self.accumulate == 0 and self._t0 is not None:
            self.steps.append(time.perf_counter() - self._t0)


def forward_backward(module: Any, batch: dict[str, Any]) -> tuple[float, int]:
    """One real training_step + backward outside the loop (no optimiser): (seconds, peak RSS rise in bytes)."""
    module.zero_grad(set_to_none=True)
    gc.collect()
    start = time.perf_counter()
    with PeakRSS() as rss:
        loss = module.training_step(batch, 0)
        loss = loss["loss"] if isinstance(loss, dict) else loss
        loss.backward()
    seconds = time.perf_counter() - start
    module.zero_grad(set_to_none=True)
    return seconds, rss.rise


def compare_checkpointing(module: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Forward + backward on the same batch with gradient checkpointing off, then on."""
    from robovlms_mobile.train.trainer import set_gradient_checkpointing

    trainer, module.trainer = module.trainer, None  # self.log outside a loop is a no-op without a trainer
    module.train()
    result = {}
    try:
        for enabled in (True, False):  # the lighter pass first
            set_gradient_checkpointing(module.model.backbone, enabled)
            seconds, rise = forward_backward(module, batch)
            result["on" if enabled else "off"] = {"seconds": seconds, "rss_rise": rise}
    finally:
        set_gradient_checkpointing(module.model.backbone, bool(module.configs["train_setup"].get("gradient_checkpointing")))
        module.trainer = trainer
    return result


def release(trainer: Any, module: Any) -> None:
    """Free the trained model's tensors now: Lightning keeps references to the module after `fit`
    (bound `log` methods, its data-hook selector), so `del` alone leaves ~7 GB resident."""
    module.zero_grad(set_to_none=True)
    for optimizer in trainer.optimizers:
        optimizer.state.clear()
    module.to("meta")


def rehearse(config: str | Path | dict[str, Any], *, steps: int = 2, batch_size: int = 1, model_dir: str | Path | None = None,
             work_dir: str | Path | None = None, tiny: bool = False, checkpointing: bool = True, seed: int = 0,
             keep_model: bool = False, max_rss_gb: float | None = 12.0, gradient_checkpointing: bool | None = None,
             log=print) -> dict[str, Any]:
    """Run the rehearsal; returns every figure (and the reloaded module under "module" when `keep_model`)."""
    from lightning import Trainer, seed_everything

    from robovlms_mobile.checkpoint.atomic_io import AtomicCheckpointIO
    from robovlms_mobile.config import load_config, validate_config
    from robovlms_mobile.train.launcher import build_datamodule
    from robovlms_mobile.train.registry import register
    from robovlms_mobile.runtime.loader import load_for_inference
    from robovlms_mobile.train.trainer import MobileVLATrainer

    if steps < 1 or batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be >= 1, got {steps} and {batch_size}")
    original = copy.deepcopy(config) if isinstance(config, dict) else load_config(config)
    validate_config(original)
    if gradient_checkpointing is not None:  # override the config's train_setup.gradient_checkpointing
        original["train_setup"]["gradient_checkpointing"] = bool(gradient_checkpointing)
    register()
    tmp = tempfile.TemporaryDirectory(prefix="rehearse-") if work_dir is None else None
    work = Path(work_dir or tmp.name)
    phases = PhaseLog()
    guard = MemoryGuard(int(max_rss_gb * GIB) if max_rss_gb else 2**62, what="robovlms-mobile rehearse")
    accumulate = int(original["trainer"].get("accumulate_grad_batches", 1) or 1)
    try:
        with guard:
            phases.on_start = lambda name: setattr(guard, "phase", name)
            with phases.run("weights"):
                backbone = prepare_backbone(tiny=tiny, model_dir=model_dir, work=work)
            data = synthetic_data(original, work / "episodes", windows=steps * accumulate * batch_size, seed=seed)
            cfg = rehearsal_config(original, backbone, data, work / "run", steps=steps, batch_size=batch_size)
            log(f"backbone {backbone} ({'tiny' if tiny else 'published Kosmos-2 architecture, random weights'}); "
                f"window {cfg['window_size']}, chunk {cfg['fwd_pred_next_n']}, batch {batch_size} x accumulate {accumulate}")
            seed_everything(seed, workers=True, verbose=False)
            with phases.run("build"), _quiet():
                module = MobileVLATrainer(cfg)
            total = sum(p.numel() for p in module.parameters())
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            log(f"built: {total:,} parameters, {trainable:,} trainable ({phases.phases['build'].seconds:.0f} s)")
            timer = StepTimer(accumulate)
            trainer = Trainer(accelerator="cpu", devices=1, precision=CPU_PRECISION, max_steps=steps, max_epochs=max(1, steps),
                              accumulate_grad_batches=accumulate, gradient_clip_val=original["trainer"].get("gradient_clip_val"),
                              limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False, logger=False,
                              enable_progress_bar=False, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
                              callbacks=[timer], default_root_dir=work / "run")
            datamodule = build_datamodule(cfg, module)
            with phases.run("step"), _quiet():
                trainer.fit(module, datamodule=datamodule)
            if trainer.global_step != steps:
                raise RuntimeError(f"the rehearsal ran {trainer.global_step} optimiser steps, expected {steps}")
            log(f"trained {steps} step(s): {', '.join(f'{s:.1f}' for s in timer.steps)} s")
            ckpt = work / "run" / "rehearsal.ckpt"
            with phases.run("save"):
                trainer.save_checkpoint(ckpt)
            saved = {k: v.detach().clone() for k, v in module.state_dict().items() if k in module.trainable_keys()}
            gc_cmp = None
            if checkpointing:
                guard.phase = "gradient-checkpointing comparison"
                with _quiet():
                    gc_cmp = compare_checkpointing(module, next(iter(datamodule.train_dataloader())))
                log(f"gradient checkpointing: forward+backward rise {gc_cmp['off']['rss_rise'] / GIB:.2f} GiB off, "
                    f"{gc_cmp['on']['rss_rise'] / GIB:.2f} GiB on")
            release(trainer, module)
            del trainer, datamodule, module
            gc.collect()
            with phases.run("load"), _quiet():
                loaded, info = load_for_inference(ckpt, backbone)
            state = loaded.state_dict()
            mismatched = [k for k, v in saved.items() if not torch.equal(state[k], v)]
            if mismatched:
                raise RuntimeError(f"reloaded checkpoint differs from the trained weights in {mismatched[:3]}")
            result = summarise(original, phases, timer.steps, total, trainable, ckpt.stat().st_size, gc_cmp, batch_size,
                               accumulate, tiny=tiny, reloaded=len(saved))
            result.update(checkpoint=str(ckpt), backbone_dir=str(backbone))
            if keep_model:
                result["module"], result["info"] = loaded, info
            return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def summarise(configs: dict[str, Any], phases: PhaseLog, step_seconds: list[float], total: int, trainable: int,
              ckpt_bytes: int, gc_cmp: dict[str, Any] | None, cpu_batch: int, accumulate: int, *, tiny: bool,
              reloaded: int) -> dict[str, Any]:
    """Every figure of a rehearsal, JSON-friendly."""
    precision = configs["trainer"].get("precision", 32)
    grads = trainable * 4
    use_gc = bool(configs["train_setup"].get("gradient_checkpointing", False))
    if gc_cmp is not None:  # activations = the forward+backward rise minus the trainable gradients
        activations = {f"checkpointing_{k}": max(0, v["rss_rise"] - grads) for k, v in gc_cmp.items()}
    else:  # only the steps' mode; their rise also holds the AdamW states
        activations = {f"checkpointing_{'on' if use_gc else 'off'}": max(0, phases.phases["step"].rise - 3 * grads)}
    estimates = {name: gpu_estimate(total_params=total, trainable_params=trainable, precision=precision,
                                    activation_bytes_cpu=act, cpu_batch=cpu_batch, batch=int(configs["batch_size"]))
                 for name, act in sorted(activations.items())}
    return {
        "architecture": "tiny" if tiny else "published",
        "params_total": total, "params_trainable": trainable,
        "cpu_batch": cpu_batch, "config_batch": int(configs["batch_size"]), "accumulate": accumulate,
        "window": int(configs["window_size"]), "chunk": int(configs["fwd_pred_next_n"]),
        "config_gradient_checkpointing": use_gc,
        "phases": {p.name: {"seconds": p.seconds, "peak_rss_gb": p.peak_rss / GIB} for p in phases.phases.values()},
        "step_seconds": step_seconds,
        "step_s": statistics.median(step_seconds[1:] if len(step_seconds) > 1 else step_seconds),
        "peak_rss_gb": max(p.peak_rss for p in phases.phases.values()) / GIB,
        "ckpt_bytes": ckpt_bytes, "reloaded_tensors": reloaded,
        "checkpointing": None if gc_cmp is None else {
            k: {"seconds": v["seconds"], "rss_rise_gb": v["rss_rise"] / GIB} for k, v in gc_cmp.items()},
        "gpu_estimate": estimates, "torch_threads": torch.get_num_threads(),
    }


def format_report(r: dict[str, Any]) -> str:
    """The human-readable rehearsal report (CPU measurements, then the GPU estimate)."""
    lines = [f"parameters: total {r['params_total']:,}, trainable {r['params_trainable']:,} "
             f"({100 * r['params_trainable'] / r['params_total']:.2f}%)"]
    if r["cpu_batch"] != r["config_batch"]:
        lines.append(f"NOTE: CPU rehearsal ran batch {r['cpu_batch']} (the config's batch_size {r['config_batch']} "
                     f"is used only in the GPU estimate; pass --batch-size {r['config_batch']} to run it)")
    lines.append(f"window {r['window']}, chunk {r['chunk']}, gradient accumulation {r['accumulate']}, gradient "
                 f"checkpointing {'on' if r['config_gradient_checkpointing'] else 'off'} in the steps, "
                 f"CPU fp32, torch threads {r['torch_threads']} (measured on this machine)")
    for name, p in r["phases"].items():
        lines.append(f"  phase {name:<7} {p['seconds']:8.1f} s   peak RSS {p['peak_rss_gb']:6.2f} GiB")
    lines.append(f"seconds per optimiser step: {', '.join(f'{s:.1f}' for s in r['step_seconds'])} (median {r['step_s']:.1f}"
                 f"{', first step excluded: warm-up' if len(r['step_seconds']) > 1 else ''})")
    lines.append(f"checkpoint on disk: {r['ckpt_bytes']:,} bytes ({r['ckpt_bytes'] / 2**20:.1f} MiB); "
                 f"{r['reloaded_tensors']} trained tensors reloaded identical")
    c = r["checkpointing"]
    if c:
        off, on = c["off"], c["on"]
        saving = 1 - on["rss_rise_gb"] / off["rss_rise_gb"] if off["rss_rise_gb"] > 0 else 0.0
        lines.append(f"gradient checkpointing (forward+backward, batch {r['cpu_batch']}): RSS rise "
                     f"{off['rss_rise_gb']:.2f} GiB off vs {on['rss_rise_gb']:.2f} GiB on (checkpointing saves {100 * saving:.0f}%), "
                     f"{off['seconds']:.1f} s vs {on['seconds']:.1f} s")
    for name, e in r["gpu_estimate"].items():
        lines.append(f"GPU memory ESTIMATE ({name.replace('_', ' ')}, {e['precision']}, batch {e['batch']}): "
                     f"{e['total_gb']:.1f} GiB = weights {e['weights_gb']:.2f} + grads {e['grads_gb']:.2f} + "
                     f"AdamW {e['adamw_gb']:.2f} + activations {e['activations_gb']:.2f} + 1 CUDA")
    lines.append(f"estimate method: {next(iter(r['gpu_estimate'].values()))['method']}")
    return "\n".join(lines)


def run_cli(args: Any) -> int:
    """`robovlms-mobile rehearse`: run, print the report, optionally write the figures as JSON."""
    import json
    import sys

    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--threads", 1 if args.threads is None else args.threads)):
        if value < 1:
            print(f"robovlms-mobile rehearse: error: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    gc_flag = {"config": None, "on": True, "off": False}[args.gradient_checkpointing]
    result = rehearse(args.config, steps=args.steps, batch_size=args.batch_size, model_dir=args.model_dir,
                      tiny=args.tiny, checkpointing=not args.no_checkpointing_check, max_rss_gb=args.max_rss_gb,
                      gradient_checkpointing=gc_flag)
    print(format_report(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=2), [args.config], flag="--json")
    return 0
