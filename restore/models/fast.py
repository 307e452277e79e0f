"""oneDNN kernels for CPU float32 inference: an opt-in pass over a built model.

``for_cpu_inference(model)`` changes, in place, the class of each dense layer
(GELU included where one follows), token mixer and convolution of the MAXIM family to a subclass whose forward
calls oneDNN's pointwise kernels (``torch.ops.mkldnn._linear_pointwise`` and
``_convolution_pointwise``, the kernels inductor itself emits on CPU). For the
skinny channel GEMMs of MAXIM (tens of channels, 10^5 pixels) and its (T, T)
token mixing these beat the MKL GEMM behind ``F.linear`` on x86 CPUs
(docs/performance.md has the measured gain, and what ``torch.compile`` gives).
Parameters, ``state_dict`` and outputs stay the same.

The kernels have no autograd, autocast does not see them and exporters cannot
translate them, so every swapped forward falls back to the plain one whenever
:func:`onednn_applies` says no: with autograd on, under autocast, for another
dtype or device, while tracing or compiling, or with
``torch.backends.mkldnn.flags(enabled=False)``. A swapped model therefore
still trains, exports and compiles as the plain one does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils import flop_counter

from restore.models.layers import Conv, Conv1x1, DenseGELU, TokenDense

_HAS_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_applies(x: torch.Tensor) -> bool:
    """Whether the oneDNN kernels may stand in for the plain ops on ``x``."""
    return (
        not torch.compiler.is_compiling()  # first: dynamo folds it and reads no further
        and not torch.jit.is_tracing()
        and _HAS_POINTWISE
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDnnLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias) if onednn_applies(x) else super().forward(x)


class OneDnnDenseGELU(DenseGELU):
    """The GELU (tanh approximation) applied inside the kernel, in the same pass over the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not onednn_applies(x):
            return super().forward(x)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu", [], "tanh")


class OneDnnConv1x1(Conv1x1):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight.flatten(1), self.bias) if onednn_applies(x) else super().forward(x)


class OneDnnConv(Conv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not onednn_applies(x):
            return super().forward(x)
        geometry = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        out = torch.ops.mkldnn._convolution_pointwise(
            x.permute(0, 3, 1, 2), self.weight, self.bias, *geometry, "none", [], ""
        )
        return out.permute(0, 2, 3, 1)


class OneDnnTokenDense(TokenDense):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not onednn_applies(tokens):
            return super().forward(tokens)
        # weight @ flat computed as oneDNN's linear map of the (T, T) weight by flat^T (a view).
        mixed = _linear(self.weight, tokens.reshape(tokens.shape[0], -1).t(), None)
        if self.bias is not None:
            mixed.add_(self.bias[:, None])
        return mixed.view(tokens.shape[0], -1, tokens.shape[-1])


# Exact classes only: a subclass of one of these may compute something else.
_SWAPS = {
    nn.Linear: OneDnnLinear,
    DenseGELU: OneDnnDenseGELU,
    Conv1x1: OneDnnConv1x1,
    Conv: OneDnnConv,
    TokenDense: OneDnnTokenDense,
}


def for_cpu_inference(model: nn.Module) -> nn.Module:
    """Swap ``model``'s layers for their oneDNN versions, in place; returns ``model``.

    A no-op on builds of torch without the kernels. Safe to call twice.
    """
    if _HAS_POINTWISE:
        for module in model.modules():
            swap = _SWAPS.get(type(module))
            if swap is not None:
                module.__class__ = swap
    return model


def _linear_pointwise_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(x_shape[:-1]) * weight_shape[0] * weight_shape[1]


def _convolution_pointwise_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.conv_flop_count(x_shape, weight_shape, out_shape)


# FlopCounterMode counts the kernels like the ATen ops they replace.
if _HAS_POINTWISE:
    for _op, _formula in [
        (torch.ops.mkldnn._linear_pointwise, _linear_pointwise_flops),
        (torch.ops.mkldnn._convolution_pointwise, _convolution_pointwise_flops),
    ]:
        if _op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(_op)(_formula)
