"""Primitives shared by the MAXIM family.

Layout convention: every module in ``restore.models`` works on channels-last
tensors ``(B, H, W, C)``, as the official Flax model does. Channel mixing is
then a plain ``F.linear`` over the last axis and LayerNorm needs no permute.
Spatial convolutions see the same memory through an NCHW *view* whose strides
are channels-last, which PyTorch's convolutions consume without a copy.

Channel mixing and convolutions go through :func:`linear` and :meth:`Conv.forward`,
which in CPU float32 inference call oneDNN kernels with the following GELU,
leaky ReLU or residual add fused in (see :func:`onednn_inference`).

Each composite module declares ``flax_names``: its sub-module paths mapped to
the names the official checkpoint uses, so ``convert.py`` can walk the tree and
name every parameter without a hand-written table per variant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

# Flax defaults, which the official model relies on (docs/model.md, parity traps 4 and 5).
LAYERNORM_EPS = 1e-6
DENSE_INIT_STD = 0.02


def onednn_inference(x: torch.Tensor) -> bool:
    """Whether oneDNN's fused kernels may stand in for ATen's on ``x``.

    ``torch.ops.mkldnn._linear_pointwise`` / ``_convolution_pointwise`` (the
    kernels inductor uses on CPU) compute a linear map or convolution with a
    GELU, leaky ReLU or residual add applied in the same pass. For the skinny
    channel GEMMs of MAXIM (tens of channels, 10^5 pixels) oneDNN is also
    faster than the MKL GEMM behind ``F.linear``, and each fused activation or
    add saves a pass over the output. They have no autograd, autocast does not
    see them and exporters cannot translate them, so they serve eager float32
    CPU inference only. Under ``torch.compile`` the plain ops are traced and
    inductor fuses them itself; a TorchScript or ONNX trace records the plain
    ops; ``torch.backends.mkldnn.flags(enabled=False)`` turns them off.
    """
    return (
        not torch.compiler.is_compiling()  # first: dynamo folds it and reads no further
        and not torch.jit.is_tracing()
        and _HAS_ONEDNN_POINTWISE
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


_HAS_ONEDNN_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _linear_pointwise_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    # .default: (X, W, B, attr, scalars, algorithm); .binary: (X, other, W, B, attr)
    weight_shape = args[0] if len(args) == 5 else args[1]
    return 2 * math.prod(x_shape[:-1]) * weight_shape[0] * weight_shape[1]


def _convolution_pointwise_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    # .default: (X, W, B, padding, ...) with 10 arguments; .binary: (X, other, W, B, ...) with 13
    weight_shape = args[0] if len(args) == 9 else args[1]
    return flop_counter.conv_flop_count(x_shape, weight_shape, out_shape)


# FlopCounterMode counts the fused kernels like the ATen ops they replace.
if _HAS_ONEDNN_POINTWISE:
    for _op, _formula in [
        (torch.ops.mkldnn._linear_pointwise, _linear_pointwise_flops),
        (torch.ops.mkldnn._convolution_pointwise, _convolution_pointwise_flops),
    ]:
        if _op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(_op)(_formula)


def _active(dropout: nn.Module | None) -> bool:
    return dropout is not None and dropout.training and dropout.p > 0


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
) -> torch.Tensor:
    """``residual + dropout(act(x @ weight.T + bias))`` over the last axis.

    ``activation`` is None or "gelu" (tanh approximation); ``weight`` may be a
    1x1 convolution's (out, in, 1, 1) kernel. Fused into one oneDNN kernel
    where :func:`onednn_inference` allows and dropout is inactive.
    """
    weight = weight.flatten(1)
    if onednn_inference(x) and not _active(dropout) and not (activation and residual is not None):
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        if activation == "gelu":
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "tanh")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    out = F.linear(x, weight, bias)
    if activation == "gelu":
        out = gelu(out)
    elif activation is not None:
        raise ValueError(f"linear: unknown activation {activation!r} (expected None or 'gelu')")
    if dropout is not None:
        out = dropout(out)
    return out if residual is None else residual + out


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

    def forward(
        self, x: torch.Tensor, negative_slope: float | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``residual + leaky_relu(conv(x), negative_slope)``, each part optional;
        fused into one oneDNN kernel in CPU float32 inference."""
        # (B, H, W, C) -> NCHW view (channels-last strides) -> conv -> (B, H', W', C')
        nchw = x.permute(0, 3, 1, 2)
        if onednn_inference(x) and not (negative_slope is not None and residual is not None):
            geometry = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
            if residual is not None:
                out = torch.ops.mkldnn._convolution_pointwise.binary(
                    nchw, residual.permute(0, 3, 1, 2), self.weight, self.bias, *geometry, "add", None, None, [], None
                )
            elif negative_slope is not None:
                out = torch.ops.mkldnn._convolution_pointwise(
                    nchw, self.weight, self.bias, *geometry, "leaky_relu", [negative_slope], ""
                )
            else:
                out = torch.ops.mkldnn._convolution_pointwise(nchw, self.weight, self.bias, *geometry, "none", [], "")
            return out.permute(0, 2, 3, 1)
        out = super().forward(nchw).permute(0, 2, 3, 1)
        if negative_slope is not None:
            out = F.leaky_relu(out, negative_slope, inplace=True)
        return out if residual is None else residual + out


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution kept as a Conv2d parameter but computed as a linear map.

    On channels-last data a 1x1 convolution is exactly ``F.linear`` over the
    last axis; calling it directly skips the convolution dispatch.
    """

    def __init__(self, in_channels: int, out_channels: int, use_bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=use_bias)
        _init_conv(self, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


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


def mix_tokens(tokens: torch.Tensor, dense: nn.Linear) -> torch.Tensor:
    """Apply ``dense`` along the token axis of (T, N, C) ``tokens`` as one GEMM;
    the bias is indexed by the output token."""
    flat = tokens.reshape(tokens.shape[0], -1)  # (T, N*C); a copy only for a strided channel half
    if onednn_inference(flat):
        # weight @ flat as oneDNN's linear map of the (T, T) weight by flat^T (a view):
        # 1.3-1.7x the throughput of MKL's GEMM for these shapes on 2 cores.
        mixed = torch.ops.mkldnn._linear_pointwise(dense.weight, flat.t(), None, "none", [], "")
        if dense.bias is not None:
            mixed.add_(dense.bias[:, None])
        return mixed.view(tokens.shape[0], -1, tokens.shape[-1])
    if dense.bias is None:
        return (dense.weight @ flat).view(tokens.shape[0], -1, tokens.shape[-1])
    return torch.addmm(dense.bias[:, None], dense.weight, flat).view(tokens.shape[0], -1, tokens.shape[-1])


def linear_of_concat(
    parts: list[torch.Tensor],
    dense: nn.Module,
    *,
    residual: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
) -> torch.Tensor:
    """``residual + dropout(dense(torch.cat(parts, -1)))`` without building the
    concatenation.

    ``dense`` is an ``nn.Linear`` or a ``Conv1x1``. Its weight is split by input
    columns; the first part's product carries the bias and the products of the
    others are accumulated onto it: by the GEMM (``addmm``), or, in oneDNN
    inference, as each kernel's fused residual add.
    """
    weights = dense.weight.flatten(1).split([p.shape[-1] for p in parts], dim=1)
    if onednn_inference(parts[0]) and not _active(dropout):
        out = linear(parts[0], weights[0].contiguous(), dense.bias, residual=residual)
        for part, weight in zip(parts[1:], weights[1:]):
            out = linear(part, weight.contiguous(), residual=out)
        return out
    out = F.linear(parts[0], weights[0], dense.bias)
    flat = out.view(-1, out.shape[-1])
    for part, weight in zip(parts[1:], weights[1:]):
        # Out of place: the ONNX exporter mistranslates in-place updates through views.
        flat = torch.addmm(flat, part.reshape(-1, part.shape[-1]), weight.t())
    out = flat.view(out.shape)
    if dropout is not None:
        out = dropout(out)
    return out if residual is None else residual + out


class MlpBlock(nn.Module):
    """Dense -> GELU -> dropout -> Dense over channels."""

    flax_names = {"fc1": "Dense_0", "fc2": "Dense_1"}

    def __init__(self, channels: int, mlp_dim: int, dropout_rate: float = 0.0, use_bias: bool = True):
        super().__init__()
        self.fc1 = dense(channels, mlp_dim, use_bias)
        self.dropout = nn.Dropout(dropout_rate)
        self.fc2 = dense(mlp_dim, channels, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(x, self.fc1.weight, self.fc1.bias, activation="gelu")
        return linear(self.dropout(y), self.fc2.weight, self.fc2.bias)


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
        y = self.conv2(self.conv1(self.norm(x), negative_slope=self.lrelu_slope))
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
