"""Inference precision (`--dtype fp32|bf16|int8`): each loads and predicts close to fp32; the flag reaches the loader."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from helpers import free_port
from robovlms_mobile.runtime.loader import load_for_inference
from robovlms_mobile.runtime.policy import MobileVLAPolicy
from robovlms_mobile.runtime.precision import DTYPES, precision_copy, precision_of

LEFT = "go around the box on the left and stop in front of the bottle"
CLI = str(Path(sys.executable).with_name("robovlms-mobile"))
TOLERANCE = 0.01  # m/s; measured differences on the tiny model are below 0.001 (outputs up to ~0.17 m/s)


def stream(policy: MobileVLAPolicy, frames: np.ndarray) -> np.ndarray:
    """(n, chunk, 2) m/s: `frames` through one fresh episode."""
    episode = policy.new_episode()
    return np.stack([policy.predict(f, LEFT, episode) for f in frames])


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tiny_model_dir) -> MobileVLAPolicy:
    return MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir)


@pytest.fixture(scope="module")
def reference(fp32, frames) -> np.ndarray:
    return stream(fp32, frames[:8])


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_each_dtype_predicts_close_to_fp32(tiny_checkpoint, tiny_model_dir, frames, reference, dtype):
    policy = MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir, dtype=dtype)
    assert policy.dtype == dtype and policy.describe()["dtype"] == dtype
    out = stream(policy, frames[:8])
    assert out.shape == reference.shape == (8, policy.chunk_size, 2) and out.dtype == np.float64
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, reference, atol=TOLERANCE, rtol=0)
    assert not np.array_equal(out, reference)  # it did run in another precision
    if dtype == "bf16":
        assert all(p.dtype == torch.bfloat16 for p in policy.module.parameters())
    else:
        quantized = [n for n, m in policy.module.model.named_modules() if type(m).__name__ == "Linear"
                     and type(m).__module__.startswith("torch.ao.nn.quantized")]
        assert len(quantized) == policy.module.int8_linear_layers > 0
        assert not any(".lora_" in n for n in quantized)  # the adapters stay float (peft reads their weight dtype)


def test_fp32_is_the_default(fp32, reference):
    assert fp32.dtype == "fp32" and fp32.describe()["dtype"] == "fp32" and np.isfinite(reference).all()


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_precision_copy_equals_loading_in_that_dtype(tiny_checkpoint, tiny_model_dir, frames, dtype):
    """The benchmark's side-by-side copy is the loader's conversion, and leaves the fp32 module as it was."""
    module, meta = load_for_inference(tiny_checkpoint, tiny_model_dir)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    twin = precision_copy(module, dtype)
    assert precision_of(twin) == dtype and precision_of(module) == "fp32"
    after = module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    loaded, _ = load_for_inference(tiny_checkpoint, tiny_model_dir, dtype=dtype)
    kwargs = dict(max_speed=meta.max_speed, prompt_template=meta.prompt_template)
    np.testing.assert_allclose(stream(MobileVLAPolicy(twin, **kwargs), frames[:4]),
                               stream(MobileVLAPolicy(loaded, **kwargs), frames[:4]), atol=1e-6, rtol=0)
    if dtype == "int8":  # what int8 leaves float is shared with the fp32 module, not copied
        embed = [n for n, p in module.named_parameters() if "embed_tokens" in n][0]
        assert dict(twin.named_parameters())[embed].data_ptr() == dict(module.named_parameters())[embed].data_ptr()


def test_bad_dtype_is_refused_before_loading(tmp_path):
    missing = tmp_path / "missing.ckpt"  # never read: the dtype is checked first
    with pytest.raises(ValueError, match=r"^dtype must be one of fp32, bf16, int8, got 'fp16'$"):
        load_for_inference(missing, dtype="fp16")
    with pytest.raises(ValueError, match="int8 .* runs on CPU only, not on cuda:0"):
        load_for_inference(missing, device="cuda:0", dtype="int8")


def test_cli_dtype_constants_match_the_runtime():
    from robovlms_mobile.cli import options

    assert options.DTYPES == DTYPES


@pytest.mark.parametrize("argv", [["serve", "x.ckpt"], ["eval", "offline", "x.ckpt", "data"],
                                  ["eval", "closed-loop", "x.ckpt"], ["ros-bridge", "--checkpoint", "x.ckpt",
                                                                      "--instruction", "go"]])
def test_every_loading_command_has_the_dtype_option(argv):
    from robovlms_mobile.cli import build_parser

    assert build_parser().parse_args(argv).dtype == "fp32"
    assert build_parser().parse_args([*argv, "--dtype", "int8"]).dtype == "int8"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["serve", "x.ckpt", "--dtype", "fp16"], "argument --dtype: invalid choice: 'fp16' (choose from 'fp32', 'bf16', 'int8')"),
    (["eval", "offline", "x.ckpt", "data", "--dtype", "int4"], "argument --dtype: invalid choice: 'int4'"),
    (["serve", "CKPT", "--dtype", "int8", "--device", "cuda"], "--dtype int8 (dynamic int8 quantisation) runs on CPU only"),
    (["eval", "closed-loop", "--server", "http://127.0.0.1:1", "--dtype", "bf16"], "--dtype applies to a checkpoint"),
])
def test_bad_dtype_flags_are_one_line_errors(tiny_checkpoint, args, message):
    out = run(*[str(tiny_checkpoint) if a == "CKPT" else a for a in args])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


def test_serve_dtype_reaches_the_loader_and_health(tiny_checkpoint, tiny_model_dir, tmp_path, frames):
    """`serve --dtype int8`: /health reports it and /act answers finite velocities from the int8 model."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ROBOVLMS_MOBILE_API_KEY", "VLA_API_KEY")}
    with (tmp_path / "log.txt").open("w") as log:
        proc = subprocess.Popen([CLI, "serve", str(tiny_checkpoint), "--base-model-dir", str(tiny_model_dir), "--port",
                                 str(port), "--device", "cpu", "--dtype", "int8"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.monotonic() + 180, None
        while health is None and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "log.txt").read_text()[-4000:]
            try:
                health = httpx.get(url + "/health", timeout=1).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health["policy"]["dtype"] == "int8"
        from robovlms_mobile.runtime.client import PolicyClient

        with PolicyClient(url) as client:
            tick = client.act(frames[0], LEFT, episode_id=client.reset())
        assert len(tick["velocity"]) == 2 and np.isfinite(tick["chunk"]).all()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "dtype int8" in (tmp_path / "log.txt").read_text()
