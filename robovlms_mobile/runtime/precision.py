"""Inference precision of a loaded MobileVLATrainer: fp32 as trained, bf16, or dynamic int8 (CPU).

- **fp32**: the module as trained.
- **bf16**: every floating weight and buffer cast to bfloat16 (half the memory) and the model's
  `forward_continuous` run under `torch.autocast(<device>, bfloat16)`, so float32 pixels and the
  plugin's own float32 tensors meet bf16 weights without a dtype error; callers still get
  tensors they turn into float32 velocities (`MobileVLAPolicy` and `eval offline` call `.float()`).
- **int8**: `torch.ao.quantization.quantize_dynamic` (weights int8, activations quantised per
  call) on every `nn.Linear` of the model except the LoRA adapters: peft's adapter code reads
  `lora_A.weight.dtype`, which a quantised module does not have. Dynamic int8 runs on CPU only.

`apply_precision` converts a module in place; `precision_copy` makes a second, converted module
next to an fp32 one without ever holding two fp32 copies (benchmarks/realsize.py times them
side by side). `precision_of` says which one a module is (the policy reports it in /health).
"""

from __future__ import annotations

import copy
import itertools
import threading
import warnings
from typing import Any

import torch

DTYPES = ("fp32", "bf16", "int8")  # cli/options.py repeats it so `--help` imports no torch (tested equal)
_ATTR = "_mobile_vla_dtype"


def check_dtype(dtype: str, device: str | torch.device = "cpu") -> str:
    """`dtype` if it is one of DTYPES and runs on `device`, else a one-line ValueError naming what is expected."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "int8" and str(device).split(":")[0] != "cpu":
        raise ValueError(f"--dtype int8 (dynamic int8 quantisation) runs on CPU only, not on {device}: "
                         f"use --device cpu, or --dtype bf16 on a GPU")
    return dtype


def precision_of(module: Any) -> str:
    """The precision `apply_precision` gave `module` ("fp32" for a module it never touched)."""
    return getattr(module, _ATTR, "fp32")


class AutocastForward:
    """`model.forward_continuous` under `torch.autocast(<the model's device>, dtype)`; set on the model instance.

    A callable object rather than a closure: `copy.deepcopy(model)` then re-points `model` at the copy.
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        self.model, self.dtype = model, dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = next(self.model.parameters()).device.type
        with torch.autocast(device, dtype=self.dtype):
            return type(self.model).forward_continuous(self.model, *args, **kwargs)


def quantize_int8(model: torch.nn.Module) -> int:
    """Dynamic int8 on every nn.Linear of `model` except LoRA adapters, in place; returns how many were quantised."""
    with warnings.catch_warnings():  # torch 2.14 deprecates eager-mode torch.ao quantisation (for torchao) loudly
        warnings.filterwarnings("ignore", message=r"(?s).*quantiz", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*quantiz", category=UserWarning)
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        names = {name: default_dynamic_qconfig for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and ".lora_" not in name}
        quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
    return len(names)


def apply_precision(module: Any, dtype: str, device: str | torch.device = "cpu") -> Any:
    """Convert an fp32 inference module (already on `device`, eval mode, no gradients) to `dtype`, in place."""
    check_dtype(dtype, device)
    if precision_of(module) != "fp32":
        raise ValueError(f"the module is {precision_of(module)} already; apply_precision converts an fp32 module")
    if dtype == "bf16":
        module.to(torch.bfloat16)
        module.model.forward_continuous = AutocastForward(module.model, torch.bfloat16)
    elif dtype == "int8":
        module.int8_linear_layers = quantize_int8(module.model)
    setattr(module, _ATTR, dtype)
    return module


def precision_copy(module: Any, dtype: str) -> Any:
    """A second module in `dtype` beside the fp32 `module`, which is left unchanged; never two fp32 copies at once.

    bf16: each floating tensor is copied straight into bfloat16. int8: the copy first shares every
    tensor with `module`, then its Linear layers are replaced by int8 ones (the shared tensors are
    never written), so the copy costs only the int8 weights.
    """
    check_dtype(dtype, module.device)
    if precision_of(module) != "fp32":
        raise ValueError(f"precision_copy starts from an fp32 module, got {precision_of(module)}")
    tensors = itertools.chain(module.parameters(), module.buffers())
    if dtype == "bf16":
        memo = {id(t): _like(t, t.detach().to(torch.bfloat16) if t.is_floating_point() else t.detach().clone())
                for t in tensors}
    else:  # fp32 stays fp32 (shared); int8 replaces the Linear layers of the copy only
        memo = {id(t): t for t in tensors}
    lock = getattr(module, "_mobile_vla_inference_lock", None)  # MobileVLAPolicy's per-model lock: the copy gets its own
    if lock is not None:
        memo[id(lock)] = threading.Lock()
    return apply_precision(copy.deepcopy(module, memo), dtype, module.device)


def _like(original: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """`data` as a Parameter when `original` is one (no gradient: an inference copy), else as is."""
    return torch.nn.Parameter(data, requires_grad=False) if isinstance(original, torch.nn.Parameter) else data
