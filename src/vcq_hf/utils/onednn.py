"""Faster CPU decode steps: run a model's `nn.Linear` layers through oneDNN instead of MKL's sgemm while sampling.

A decode step multiplies a handful of rows (the batch, twice with guidance) by every weight matrix of the model. On
the CPUs we measured (x86-64 with AVX-512, torch 2.13, one thread) MKL's sgemm reaches about 11 GB/s of weight
traffic at 4 rows and 4.5 GB/s at 32, while oneDNN's inner-product primitive (`torch.ops.mkldnn._linear_pointwise`, the
kernel inductor itself emits for frozen CPU linears) on the same, unpacked weights takes 1.4x (4 rows) to 1.8x (32
rows) less time for the layer shapes of GPT-B (`benchmarks/results/vs_llamagen.md`). The results equal
`F.linear`'s up to floating-point rounding (accumulation order), and no weight is copied or repacked.

[`onednn_linears`] switches the `nn.Linear` modules of a model to that kernel for the duration of a `with` block, for
fp32 CPU inputs without autograd only (anything else, e.g. a training step or a CUDA tensor, takes `F.linear`), and
restores them on exit. Inside `torch.compile` the kernel is called through the custom op `vcq_hf::onednn_linear`
(inductor's own lowering of `_linear_pointwise` accepts only prepacked weights).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's CPU linear kernel."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@torch.library.custom_op("vcq_hf::onednn_linear", mutates_args=())
def onednn_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(input, weight, bias)` on oneDNN (CPU); an opaque op under `torch.compile`."""
    return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")


@onednn_linear.register_fake
def _(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return input.new_empty(*input.shape[:-1], weight.shape[0])


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, on oneDNN for fp32 CPU tensors outside autograd (where it is faster at few rows)."""
    if (
        input.device.type == "cpu"
        and input.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.dim() == 2
        and not torch.is_grad_enabled()
    ):
        if torch.compiler.is_compiling():
            return onednn_linear(input, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")
    return F.linear(input, weight, bias)


def _onednn_forward(self: nn.Linear, input: torch.Tensor) -> torch.Tensor:
    return linear(input, self.weight, self.bias)


@contextmanager
def onednn_linears(model: nn.Module) -> Iterator[None]:
    """Within the block, the plain `nn.Linear` modules of `model` compute with [`linear`]; restored on exit.

    Modules whose `forward` is already replaced on the instance (e.g. by accelerate's hooks) and subclasses of
    `nn.Linear` are left alone; without oneDNN in this torch build the block runs unchanged.
    """
    if not onednn_available():
        yield
        return
    forward = {}
    for module in model.modules():
        if type(module) is nn.Linear and "forward" not in module.__dict__:
            forward[module] = types.MethodType(_onednn_forward, module)
            module.forward = forward[module]
    try:
        yield
    finally:
        for module, method in forward.items():
            if module.__dict__.get("forward") is method:
                del module.forward


__all__ = ["linear", "onednn_available", "onednn_linear", "onednn_linears"]
