"""`robovlms-mobile rehearse`: the real pipeline at a given architecture, memory per phase, the GPU estimate."""

from __future__ import annotations

import json
import os
import mmap
import time
from pathlib import Path

import pytest
import torch

from helpers import run_python
from robovlms_mobile.train.memory import GIB, PeakRSS, gpu_estimate

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rehearse_tiny_trains_saves_and_reloads(tmp_path, capsys, monkeypatch):
    from robovlms_mobile.cli import main

    monkeypatch.chdir(REPO_ROOT)  # the config names its parent relative to the repository
    out = tmp_path / "figures.json"
    assert main(["rehearse", "configs/tiny_cpu.json", "--tiny", "--steps", "1", "--json", str(out)]) == 0
    report = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["architecture"] == "tiny" and r["params_trainable"] < r["params_total"]
    assert set(r["phases"]) == {"weights", "build", "step", "save", "load"}
    assert all(p["peak_rss_gb"] > 0 for p in r["phases"].values())
    assert len(r["step_seconds"]) == 1 and r["ckpt_bytes"] > 0 and r["reloaded_tensors"] > 0
    assert set(r["checkpointing"]) == {"off", "on"}
    assert (r["window"], r["chunk"], r["cpu_batch"], r["config_batch"]) == (8, 10, 1, 4)
    for line in ("parameters: total", "peak RSS", "seconds per optimiser step", "checkpoint on disk",
                 "gradient checkpointing", "GPU memory ESTIMATE", "estimate method: ESTIMATE",
                 "CPU rehearsal ran batch 1 (the config's batch_size 4"):
        assert line in report, line


@pytest.mark.parametrize("flag", ["--steps", "--batch-size", "--threads"])
def test_rehearse_rejects_non_positive_counts(flag, capsys):
    from robovlms_mobile.cli import main

    assert main(["rehearse", "configs/tiny_cpu.json", flag, "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"robovlms-mobile rehearse: error: {flag} must be >= 1, got 0"


def test_gradient_checkpointing_same_gradients(tiny_config):
    """Checkpointing recomputes activations; the loss and the LoRA/decoder gradients stay the same."""
    import contextlib
    import io

    from robovlms_mobile.train.launcher import build_datamodule
    from robovlms_mobile.train.registry import register
    from robovlms_mobile.train.trainer import MobileVLATrainer, set_gradient_checkpointing

    register()
    tiny_config["train_setup"]["gradient_checkpointing"] = True
    with contextlib.redirect_stdout(io.StringIO()):
        module = MobileVLATrainer(tiny_config)
    backbone = module.model.backbone
    assert backbone.is_gradient_checkpointing
    batch = next(iter(build_datamodule(tiny_config, module).train_dataloader()))
    module.train()  # checkpointing is active in train mode only
    grads = {}
    for enabled in (True, False):
        set_gradient_checkpointing(backbone, enabled)
        module.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks in both passes (the recomputation replays the RNG)
        loss = module.training_step(batch, 0)
        loss = loss["loss"] if isinstance(loss, dict) else loss
        loss.backward()
        grads[enabled] = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    assert not backbone.is_gradient_checkpointing
    assert grads[True].keys() == grads[False].keys() and any(".lora_" in n for n in grads[True])
    for name, g in grads[True].items():
        torch.testing.assert_close(g, grads[False][name], rtol=1e-4, atol=1e-6, msg=name)


def test_peak_rss_sees_an_allocation():
    with PeakRSS(interval=0.005) as rss:
        # a fresh anonymous mapping, every page written: a tensor could reuse pages an earlier test in
        # this worker freed but the allocator kept resident, and then RSS would not rise at all
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"\1" * len(block))
        deadline = time.monotonic() + 10  # hold it until the sampler thread has seen it (a loaded machine may delay it)
        while rss.rise < 48 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.01)
        block.close()
    assert rss.rise >= 48 * 2**20


def test_gpu_estimate_terms():
    e = gpu_estimate(total_params=1_000_000_000, trainable_params=10_000_000, precision="bf16-mixed",
                     activation_bytes_cpu=GIB, cpu_batch=1, batch=4)
    assert e["weights_gb"] == pytest.approx(4e9 / GIB)  # fp32 master weights under bf16-mixed
    assert e["adamw_gb"] == pytest.approx(2 * e["grads_gb"])
    assert e["activations_gb"] == pytest.approx(2.0)  # 1 GiB x 4/1 x 0.5
    assert e["total_gb"] == pytest.approx(e["weights_gb"] + e["grads_gb"] + e["adamw_gb"] + 2.0 + 1.0)
    assert e["method"].startswith("ESTIMATE")
    true16 = gpu_estimate(total_params=1_000_000_000, trainable_params=0, precision="bf16", activation_bytes_cpu=0,
                          cpu_batch=1, batch=1)
    assert true16["weights_gb"] == pytest.approx(2e9 / GIB)


def test_full_size_tokenizer_has_kosmos2_vocab(tmp_path):
    from transformers import CLIPImageProcessor, Kosmos2Processor

    from robovlms_mobile.model.full_kosmos import PROCESSOR_ADDED_TOKENS, published_kosmos2_config
    from robovlms_mobile.model.tiny_kosmos import build_tokenizer

    vocab = published_kosmos2_config().text_config.vocab_size
    assert vocab == 65037
    tok = build_tokenizer(tmp_path, vocab_size=vocab - PROCESSOR_ADDED_TOKENS)
    processor = Kosmos2Processor(CLIPImageProcessor(), tok)
    assert len(processor.tokenizer) == vocab
    assert tok.convert_tokens_to_ids("<mask>") == vocab - PROCESSOR_ADDED_TOKENS - 1
    ids = tok("go around the box on the left").input_ids
    assert tok.unk_token_id not in ids and max(ids) < 1000  # the padding never changes how text tokenises
    with pytest.raises(ValueError, match="vocab_size 10 is below"):
        build_tokenizer(tmp_path / "small", vocab_size=10)


@pytest.mark.slow
def test_rehearse_real_size_one_step(tmp_path):
    """Kosmos-2 at its published size (1.72 B parameters with the head), 1 step on CPU (~10-30 min, ~10 GiB RSS).

    Gradient checkpointing is on in the step: without it the forward + backward at batch 1 alone
    passes 14 GiB RSS (measured, docs/realsize.md), more than a shared 24 GB machine can give.
    """
    out = tmp_path / "figures.json"
    code = ("import sys; from robovlms_mobile.cli import main; sys.exit(main(['rehearse', 'configs/mobile_vla_lora.json', "
            "'--steps', '1', '--threads', '1', '--gradient-checkpointing', 'on', '--no-checkpointing-check', "
            "'--max-rss-gb', '13', '--json', sys.argv[1]]))")
    proc = run_python(code, str(out), cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
                      timeout=4 * 3600)
    r = json.loads(out.read_text())
    assert r["architecture"] == "published" and 1.6e9 < r["params_total"] < 1.8e9
    assert 1e6 < r["params_trainable"] < 0.1 * r["params_total"]
    assert r["config_gradient_checkpointing"] and len(r["step_seconds"]) == 1
    assert 0 < r["ckpt_bytes"] < 2 * 2**30 and r["reloaded_tensors"] > 0  # slim: trainable tensors + AdamW states only
    assert list(r["gpu_estimate"]) == ["checkpointing_on"] and "GPU memory ESTIMATE" in proc.stdout
