"""Where and how tensors are computed, shared by every stage: the device (`device: cpu | cuda[:i] |
auto`) and the `compute` section (mixed precision, TF32, channels-last, torch.compile, gradient
checkpointing). fp32 without compile computes what plain fp32 computes; channels-last changes only the
memory layout of the convolutions (equal up to rounding, tests/test_compute.py) and makes the
recognition trainers about 1.3x faster on a CPU as well (bench/cpu_speed.py).
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for in params.yaml but CUDA is not available; use cpu or auto")
    return torch.device(name)


def autocast(device: torch.device | str, precision: str):
    """bf16 autocast for forwards (matmuls and convolutions in bf16, reductions and losses in fp32 as
    torch's autocast lists decide); fp32: no context at all. Callers cast what must be exact (log-probs,
    importance ratios, distances) back to fp32 themselves."""
    if precision not in PRECISIONS:
        raise ValueError(f"params.yaml: compute.precision = {precision!r}; use one of {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    kind = torch.device(device).type
    if kind != "cpu":
        return torch.autocast(kind, dtype=torch.bfloat16)
    return _cpu_bf16()


@contextlib.contextmanager
def _cpu_bf16():
    """CPU bf16 autocast on torch's own kernels: oneDNN's bf16 convolution on AMX CPUs (torch 2.14)
    returns garbage for small feature maps (a stride-2 3x3 conv of 192 channels on 4x2: errors of 1e37,
    NaN). A generator context, so the switch happens on entering the `with`, not on the call."""
    with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def configure(compute) -> None:
    """Process-wide backend switches: TF32 matmuls and convolutions on Ampere+ GPUs (no effect on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = compute.tf32
    torch.backends.cudnn.allow_tf32 = compute.tf32


def prepare_model(model: torch.nn.Module, compute, device: torch.device | str) -> torch.nn.Module:
    """Channels-last memory format for convolutional models and torch.compile, as `compute` asks.
    Returns the module to call (the compiled wrapper, or `model` itself)."""
    if compute.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compute.compile:
        return torch.compile(model, backend=compute.compile)
    return model
