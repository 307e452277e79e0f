"""Primitives shared by the MAXIM family.

Layout convention: every module in ``restore.models`` works on channels-last
tensors ``(B, H, W, C)``, as the official Flax model does. Channel mixing is
then a plain ``F.linear`` over the last axis and LayerNorm needs no permute.
Spatial convolutions see the same memory through an NCHW *view* whose strides
are channels-last, which PyTorch's convolutions consume without a copy.

Modules here compute with plain PyTorch ops; ``restore.models.fast`` swaps some
of them for fused oneDNN kernels in CPU float32 inference, an opt-in step.

Each composite module declares ``flax_names``: its sub-module paths mapped to
the names the official checkpoint uses, so ``convert.py`` can walk the tree and
name every parameter without a hand-written table per variant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Flax defaults, which the official model relies on (docs/model.md, parity traps 4 and 5).
LAYERNORM_EPS = 1e-6
DENSE_INIT_STD = 0.02


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (``flax.linen.gelu``'s default)."""
    return F.gelu(x, approximate="tanh")


def layer_norm(channels: int) -> nn.LayerNorm:
    return nn.LayerNorm(channels, eps=LAYERNORM_EPS)


def dense(
    in_features: int, out_features: int, use_bias: bool, init: str = "normal", then_gelu: bool = False
) -> nn.Linear:
    """A Flax ``Dense`` over the last axis, initialised the official way; with
    ``then_gelu`` followed by GELU (:class:`DenseGELU`).

    ``init`` is ``"normal"`` (N(0, 0.02), the official ``weight_initializer``)
    or ``"lecun"`` (Flax's default kernel init, used where the official code
    passes no initializer).
    """
    layer = (DenseGELU if then_gelu else nn.Linear)(in_features, out_features, bias=use_bias)
    return init_dense_(layer, init)


class DenseGELU(nn.Linear):
    """A Dense followed by GELU, the official ``nn.Dense(...)(x); nn.gelu(x)``.

    One module rather than two calls so that ``restore.models.fast`` can run the
    pair as one oneDNN kernel: the GELU of MAXIM's wide input projections is a
    full pass over their output (measured: 12-15% of a CPU forward).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu(super().forward(x))


def init_dense_(layer: nn.Linear, init: str) -> nn.Linear:
    if init == "normal":
        nn.init.normal_(layer.weight, std=DENSE_INIT_STD)
    else:
        lecun_normal_(layer.weight, fan_in=layer.in_features)
    if layer.bias is not None:
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

    MAXIM only resizes by powers of two, which take fast exact paths: a
    strided view for nearest downsampling, plain bilinear for upsampling (the
    antialiased filter is the plain one when enlarging) and a separable
    depthwise convolution for antialiased downsampling. ATen's antialiased
    kernel is several times slower on channels-last data and has no bfloat16
    CPU kernel, so it only serves other ratios, in float32.
    """
    (h, w), (oh, ow) = x.shape[1:3], size
    if (h, w) == (oh, ow):
        return x
    if mode == "nearest" and h % oh == 0 and w % ow == 0:
        sh, sw = h // oh, w // ow
        return x[:, sh // 2 :: sh, sw // 2 :: sw]
    nchw = x.permute(0, 3, 1, 2)
    if mode == "nearest":
        out = F.interpolate(nchw, size=size, mode="nearest-exact")
    elif oh % h == 0 and ow % w == 0:
        out = F.interpolate(nchw, size=size, mode="bilinear", align_corners=False)
    elif h % oh == 0 and w % ow == 0 and (h // oh) % 2 == 0 and (w // ow) % 2 == 0 and not torch.jit.is_tracing():
        # A trace would freeze the taps' shapes to the example's size; exporters map
        # the ATen kernel below to their own antialiased resize instead.
        out = _antialiased_downsample(nchw, h // oh, w // ow)
    else:
        # The antialiased kernel has no bfloat16/half version on CPU: run it in
        # float32 under mixed precision (it is a cheap, memory-bound op).
        compute = nchw if nchw.dtype in (torch.float32, torch.float64) else nchw.float()
        out = F.interpolate(compute, size=size, mode="bilinear", align_corners=False, antialias=True).to(nchw.dtype)
    return out.permute(0, 2, 3, 1)


def _antialiased_downsample(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    """torch's antialiased bilinear downsampling by even integer factors, as two
    depthwise strided convolutions (NCHW view in, NCHW view out).

    For a factor s the triangle filter has 2s taps starting s/2 before the
    block of s inputs; taps that fall outside the image are dropped and the
    remaining weights renormalised, which here is zero padding followed by a
    per-row (per-column) rescale of the outputs.
    """
    c = x.shape[1]
    taps_h, scale_h = _triangle_taps(sh, x.shape[2] // sh, x)
    taps_w, scale_w = _triangle_taps(sw, x.shape[3] // sw, x)
    x = F.conv2d(x, taps_h.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(sh, 1), padding=(sh // 2, 0), groups=c)
    x = F.conv2d(x, taps_w.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, sw), padding=(0, sw // 2), groups=c)
    return x * (scale_h[:, None] * scale_w[None, :])


def _triangle_taps(factor: int, out_size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2*factor filter taps of torch's antialiased downsampling (summing to 1)
    and, per output position, the factor that renormalises the taps left inside
    an image of ``factor * out_size`` pixels; both on ``like``'s device and dtype."""
    offsets = torch.arange(2 * factor, dtype=torch.float64, device=like.device)
    taps = (1 - (offsets - factor + 0.5).abs() / factor) / factor
    positions = (
        torch.arange(out_size, dtype=torch.float64, device=like.device)[:, None] * factor - factor // 2 + offsets
    )
    inside = (positions >= 0) & (positions < factor * out_size)
    return taps.to(like.dtype), (1 / (taps * inside).sum(1)).to(like.dtype)


class TokenDense(nn.Linear):
    """A Dense along the token axis of (T, N, C) tokens (the gMLP's spatial projection).

    One GEMM with the (T, T) weight on the left of the tokens flattened to
    (T, N*C), the bias indexed by the output token; initialised as the official
    spatial Dense (N(0, 0.02), zero bias).
    """

    def __init__(self, tokens: int, use_bias: bool = True):
        super().__init__(tokens, tokens, bias=use_bias)
        init_dense_(self, "normal")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        flat = tokens.reshape(tokens.shape[0], -1)  # (T, N*C); a copy only for a strided channel half
        mixed = self.weight @ flat if self.bias is None else torch.addmm(self.bias[:, None], self.weight, flat)
        return mixed.view(tokens.shape[0], -1, tokens.shape[-1])  # -1: an ONNX trace keeps the size dynamic


def linear_of_concat(parts: list[torch.Tensor], dense: nn.Module) -> torch.Tensor:
    """``dense(torch.cat(parts, -1))`` without building the concatenation.

    ``dense`` is an ``nn.Linear`` or a ``Conv1x1``. Its weight is split by input
    columns: the first part's product carries the bias and the GEMM (``addmm``)
    accumulates the others onto it. In training this also keeps autograd from
    storing a concatenated copy of parts it already holds.
    """
    weights = dense.weight.flatten(1).split([p.shape[-1] for p in parts], dim=1)
    out = F.linear(parts[0], weights[0], dense.bias)
    flat = out.view(-1, out.shape[-1])
    for part, weight in zip(parts[1:], weights[1:]):
        # Out of place: the ONNX exporter mistranslates in-place updates through views.
        flat = torch.addmm(flat, part.reshape(-1, part.shape[-1]), weight.t())
    return flat.view(out.shape)


class MlpBlock(nn.Module):
    """Dense -> GELU -> dropout -> Dense over channels."""

    flax_names = {"fc1": "Dense_0", "fc2": "Dense_1"}

    def __init__(self, channels: int, mlp_dim: int, dropout_rate: float = 0.0, use_bias: bool = True):
        super().__init__()
        self.fc1 = dense(channels, mlp_dim, use_bias, then_gelu=True)
        self.dropout = nn.Dropout(dropout_rate)
        self.fc2 = dense(mlp_dim, channels, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.fc1(x)))


class CALayer(nn.Module):
    """Squeeze-and-excitation channel attention."""

    flax_names = {"squeeze": "Conv_0", "excite": "Conv_1"}

    def __init__(self, features: int, reduction: int = 4, use_bias: bool = True):
        super().__init__()
        self.squeeze = Conv1x1(features, features // reduction, use_bias)
        self.excite = Conv1x1(features // reduction, features, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights (B, 1, 1, C); callers that add a residual fuse
        the product into it with ``torch.addcmul``."""
        y = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        return torch.sigmoid(self.excite(F.relu(self.squeeze(y))))


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
        y = self.conv2(F.leaky_relu(self.conv1(self.norm(x)), self.lrelu_slope, inplace=True))
        return torch.addcmul(x, y, self.channel_attention.scale(y))  # x + channel_attention(y)


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
        y = self.channel_mixing(self.norm(x))
        return torch.addcmul(x, y, self.channel_attention.scale(y))  # x + channel_attention(y)


class UpSampleRatio(nn.Module):
    """Bilinear resize by a power-of-two ratio and a 1x1 projection."""

    flax_names = {"conv": "Conv_0"}

    def __init__(self, in_channels: int, features: int, ratio: float, use_bias: bool = True):
        super().__init__()
        self.ratio = ratio
        self.conv = Conv1x1(in_channels, features, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if self.ratio < 1:
            size = (h // round(1 / self.ratio), w // round(1 / self.ratio))
            return self.conv(resize(x, size, "bilinear"))
        # The 1x1 projection and the resize commute (resize weights sum to one),
        # so when enlarging project first, on ratio^2 times fewer pixels.
        size = (h * round(self.ratio), w * round(self.ratio))
        return resize(self.conv(x), size, "bilinear")
