"""Primitives shared by the MAXIM family.

Layout convention: every module in ``restore.models`` works on channels-last
tensors ``(B, H, W, C)``, as the official Flax model does. Channel mixing is
then a plain ``F.linear`` over the last axis and LayerNorm needs no permute.
Spatial convolutions see the same memory through an NCHW *view* whose strides
are channels-last, which PyTorch's convolutions consume without a copy.

Each composite module declares ``flax_names``: its sub-module paths mapped to
the names the official checkpoint uses, so ``convert.py`` can walk the tree and
name every parameter without a hand-written table per variant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Flax defaults, which the official model relies on (ARCHITECTURE.md, traps 4 and 5).
LAYERNORM_EPS = 1e-6
DENSE_INIT_STD = 0.02


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (``flax.linen.gelu``'s default)."""
    return F.gelu(x, approximate="tanh")


def layer_norm(channels: int) -> nn.LayerNorm:
    return nn.LayerNorm(channels, eps=LAYERNORM_EPS)


def dense(in_features: int, out_features: int, use_bias: bool, init: str = "normal") -> nn.Linear:
    """A Flax ``Dense`` over the last axis, initialised the official way.

    ``init`` is ``"normal"`` (N(0, 0.02), the official ``weight_initializer``)
    or ``"lecun"`` (Flax's default kernel init, used where the official code
    passes no initializer).
    """
    layer = nn.Linear(in_features, out_features, bias=use_bias)
    if init == "normal":
        nn.init.normal_(layer.weight, std=DENSE_INIT_STD)
    else:
        lecun_normal_(layer.weight, fan_in=in_features)
    if use_bias:
        nn.init.zeros_(layer.bias)
    return layer


def lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
    """Flax ``lecun_normal``: truncated normal (2 std) with variance 1/fan_in."""
    # 0.8796... is the std of a unit normal truncated to [-2, 2]; Flax divides by it.
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _init_conv(conv: nn.Module, fan_in: int) -> None:
    lecun_normal_(conv.weight, fan_in)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class Conv(nn.Conv2d):
    """A spatial convolution on channels-last tensors, Flax 'SAME' padding.

    ``kernel_size`` 3 (stride 1) pads 1; ``kernel_size`` 4 with stride 2 halves
    an even size and also pads 1, which is what 'SAME' does for even inputs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, use_bias: bool = True
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=1, bias=use_bias)
        _init_conv(self, in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> NCHW view (channels-last strides) -> conv -> (B, H', W', C')
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution kept as a Conv2d parameter but computed as a linear map.

    On channels-last data a 1x1 convolution is exactly ``F.linear`` over the
    last axis; calling it directly skips the convolution dispatch.
    """

    def __init__(self, in_channels: int, out_channels: int, use_bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=use_bias)
        _init_conv(self, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.flatten(1), self.bias)


class ConvTransposeUp(nn.ConvTranspose2d):
    """2x2 stride-2 transposed convolution: doubles height and width."""

    def __init__(self, in_channels: int, out_channels: int, use_bias: bool = True):
        super().__init__(in_channels, out_channels, 2, stride=2, bias=use_bias)
        # Flax computes fan_in from its (kh, kw, in, out) kernel.
        _init_conv(self, in_channels * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize channels-last ``x`` to ``size`` like ``jax.image.resize``.

    ``mode`` "nearest" samples floor((i + 0.5) * in / out), which is torch's
    'nearest-exact'; "bilinear" is JAX's antialiased triangle filter, which is
    torch's bilinear with ``antialias=True`` for both up- and downsampling.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    nchw = x.permute(0, 3, 1, 2)
    if mode == "nearest":
        out = F.interpolate(nchw, size=size, mode="nearest-exact")
    else:
        # The antialiased kernel has no bfloat16/half version on CPU: run it in
        # float32 under mixed precision (it is a cheap, memory-bound op).
        compute = nchw if nchw.dtype in (torch.float32, torch.float64) else nchw.float()
        out = F.interpolate(compute, size=size, mode="bilinear", align_corners=False, antialias=True).to(nchw.dtype)
    return out.permute(0, 2, 3, 1)


def mix_tokens(x: torch.Tensor, dense: nn.Linear, window: tuple[int, int], across_windows: bool) -> torch.Tensor:
    """Apply ``dense`` along a token axis of the block partition of ``x``.

    The image (B, H, W, C) is cut into non-overlapping ``window`` tiles (fh, fw)
    laid on a (gh, gw) grid. With ``across_windows=False`` the tokens mixed are
    the fh*fw positions inside each window (MAXIM's block, local branch); with
    ``across_windows=True`` they are the gh*gw windows seen at one offset
    (the grid, dilated global branch). Tokens are numbered row-major in both
    cases, as the official ``block_images`` does, and the dense bias is indexed
    by the output token.
    """
    b, h, w, c = x.shape
    fh, fw = window
    gh, gw = h // fh, w // fw
    tiles = x.reshape(b, gh, fh, gw, fw, c)
    if across_windows:
        order, inverse, tokens = (0, 2, 4, 5, 1, 3), (0, 4, 1, 5, 2, 3), (gh, gw)
    else:
        order, inverse, tokens = (0, 1, 3, 5, 2, 4), (0, 1, 4, 2, 5, 3), (fh, fw)
    # (B, gh, fh, gw, fw, C) -> (..., C, tokens): the mixed axis last, so one GEMM does it.
    moved = tiles.permute(order)
    mixed = dense(moved.reshape(*moved.shape[:-2], tokens[0] * tokens[1]))
    return mixed.reshape(moved.shape).permute(inverse).reshape(b, h, w, c)


class MlpBlock(nn.Module):
    """Dense -> GELU -> dropout -> Dense over channels."""

    flax_names = {"fc1": "Dense_0", "fc2": "Dense_1"}

    def __init__(self, channels: int, mlp_dim: int, dropout_rate: float = 0.0, use_bias: bool = True):
        super().__init__()
        self.fc1 = dense(channels, mlp_dim, use_bias)
        self.dropout = nn.Dropout(dropout_rate)
        self.fc2 = dense(mlp_dim, channels, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(gelu(self.fc1(x))))


class CALayer(nn.Module):
    """Squeeze-and-excitation channel attention."""

    flax_names = {"squeeze": "Conv_0", "excite": "Conv_1"}

    def __init__(self, features: int, reduction: int = 4, use_bias: bool = True):
        super().__init__()
        self.squeeze = Conv1x1(features, features // reduction, use_bias)
        self.excite = Conv1x1(features // reduction, features, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        return x * torch.sigmoid(self.excite(F.relu(self.squeeze(y))))


class RCAB(nn.Module):
    """Residual channel attention block: LN, conv, leaky ReLU, conv, SE, + x."""

    flax_names = {"norm": "LayerNorm", "conv1": "conv1", "conv2": "conv2", "channel_attention": "channel_attention"}

    def __init__(self, features: int, reduction: int = 4, lrelu_slope: float = 0.2, use_bias: bool = True):
        super().__init__()
        self.lrelu_slope = lrelu_slope
        self.norm = layer_norm(features)
        self.conv1 = Conv(features, features, use_bias=use_bias)
        self.conv2 = Conv(features, features, use_bias=use_bias)
        self.channel_attention = CALayer(features, reduction, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(self.norm(x)), self.lrelu_slope)
        return x + self.channel_attention(self.conv2(y))


class RDCAB(nn.Module):
    """Residual dense channel attention block (the bottleneck's channel mixer)."""

    flax_names = {"norm": "LayerNorm", "channel_mixing": "channel_mixing", "channel_attention": "channel_attention"}

    def __init__(self, features: int, reduction: int = 4, use_bias: bool = True):
        super().__init__()
        self.norm = layer_norm(features)
        # The official bottleneck never passes its dropout rate down to this block.
        self.channel_mixing = MlpBlock(features, features, 0.0, use_bias)
        self.channel_attention = CALayer(features, reduction, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel_attention(self.channel_mixing(self.norm(x)))


class UpSampleRatio(nn.Module):
    """Bilinear resize by a power-of-two ratio, then a 1x1 projection."""

    flax_names = {"conv": "Conv_0"}

    def __init__(self, in_channels: int, features: int, ratio: float, use_bias: bool = True):
        super().__init__()
        self.ratio = ratio
        self.conv = Conv1x1(in_channels, features, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if self.ratio < 1:
            size = (h // round(1 / self.ratio), w // round(1 / self.ratio))
        else:
            size = (h * round(self.ratio), w * round(self.ratio))
        return self.conv(resize(x, size, "bilinear"))
