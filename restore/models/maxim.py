"""MAXIM: Multi-Axis MLP for Image Processing (Tu et al., CVPR 2022).

A faithful PyTorch port of the official Flax model (google-research/maxim,
``maxim/models/maxim.py``): the same modules, the same order of operations and
the same parameters, so the official checkpoints load strictly and reproduce
the official outputs (see ``convert.py`` and ``tests/models``).

Reading order follows the paper's figure: gated-MLP mixing layers, the
multi-axis block (MAB), the cross-gating block (CGB), SAM, the UNet blocks and
finally the multi-stage, multi-scale ``MAXIM``. Internals are channels-last
(B, H, W, C); ``MAXIM.forward`` takes and returns NCHW images.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from restore.models.layers import (
    RCAB,
    RDCAB,
    Conv,
    Conv1x1,
    ConvTransposeUp,
    UpSampleRatio,
    dense,
    layer_norm,
    linear,
    linear_of_concat,
    mix_tokens,
    partition,
    resize,
    tiles,
    unpartition,
)
from restore.models.mixers import ATTENTION_GATED, MultiAxisAttentionGate, build_mixer, check_mixer_config

Size2 = tuple[int, int]


class GatingUnit(nn.Module):
    """gMLP spatial gating: u * (Dense_tokens(LN(v)) + 1), halving the channels.

    ``across_windows`` picks the token axis: the windows of a fixed
    ``grid_size`` grid (GridGatingUnit) or the positions inside each
    ``block_size`` window (BlockGatingUnit).
    """

    flax_names = {"norm": "intermediate_layernorm", "spatial": "Dense_0"}

    def __init__(self, channels: int, size: Size2, across_windows: bool, use_bias: bool = True):
        super().__init__()
        self.size = size
        self.across_windows = across_windows
        self.norm = layer_norm(channels // 2)
        self.spatial = dense(size[0] * size[1], size[0] * size[1], use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)
        window = window_of(x, self.size, self.across_windows)
        # LayerNorm is per pixel, so it runs after the copy into the token layout.
        mixed = mix_tokens(self.norm(partition(v, window, self.across_windows)), self.spatial)  # (T, N, C/2)
        # u * (mixed + 1) as u + u * mixed, reading mixed back through a view.
        tiled_u = tiles(u, window)  # (B, gh, fh, gw, fw, C/2)
        out = torch.addcmul(tiled_u, tiled_u, unpartition(mixed, u.shape, window, self.across_windows))
        return out.reshape(u.shape)


def window_of(x: torch.Tensor, size: Size2, across_windows: bool) -> Size2:
    """The window (fh, fw) of a grid of ``size`` windows, or ``size`` itself for blocks."""
    if not across_windows:
        return size
    return x.shape[1] // size[0], x.shape[2] // size[1]


class GmlpLayer(nn.Module):
    """Residual gMLP over one axis: LN, Dense, GELU, gating unit, Dense, + x.

    The official GridGmlpLayer and BlockGmlpLayer differ only in the gating
    unit's token axis; every other operation is per pixel, so it runs on the
    un-partitioned image and only the gating unit visits the partition.
    """

    def __init__(
        self,
        channels: int,
        size: Size2,
        across_windows: bool,
        factor: int = 2,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
    ):
        super().__init__()
        unit = "GridGatingUnit" if across_windows else "BlockGatingUnit"
        self.flax_names = {
            "norm": "LayerNorm",
            "in_project": "in_project",
            "gating": unit,
            "out_project": "out_project",
        }
        self.norm = layer_norm(channels)
        self.in_project = dense(channels, channels * factor, use_bias)
        self.gating = GatingUnit(channels * factor, size, across_windows, use_bias)
        self.out_project = dense(channels * factor // 2, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gating(linear(self.norm(x), self.in_project.weight, self.in_project.bias, activation="gelu"))
        return linear(y, self.out_project.weight, self.out_project.bias, residual=x, dropout=self.dropout)


class MultiAxisGmlpBlock(nn.Module):
    """MAB (official ResidualSplitHeadMultiAxisGmlpLayer): a global grid head and
    a local block head on the two halves of the projected channels."""

    flax_names = {
        "norm": "LayerNorm_in",
        "in_project": "in_project",
        "grid": "GridGmlpLayer",
        "block": "BlockGmlpLayer",
        "out_project": "out_project",
    }

    def __init__(
        self,
        channels: int,
        block_size: Size2,
        grid_size: Size2,
        block_gmlp_factor: int = 2,
        grid_gmlp_factor: int = 2,
        input_proj_factor: int = 2,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
    ):
        super().__init__()
        inner = channels * input_proj_factor
        self.norm = layer_norm(channels)
        self.in_project = dense(channels, inner, use_bias)
        self.grid = GmlpLayer(inner // 2, grid_size, True, grid_gmlp_factor, dropout_rate, use_bias)
        self.block = GmlpLayer(inner // 2, block_size, False, block_gmlp_factor, dropout_rate, use_bias)
        self.out_project = dense(inner, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(self.norm(x), self.in_project.weight, self.in_project.bias, activation="gelu")
        u, v = y.chunk(2, dim=-1)
        return linear_of_concat([self.grid(u), self.block(v)], self.out_project, residual=x, dropout=self.dropout)


class SpatialGatingWeights(nn.Module):
    """The gating signal of a CGB (official GetSpatialGatingWeights).

    Like a MAB without norms, gating or residual: a grid Dense on one half of
    the projected channels and a block Dense on the other. Its spatial Dense
    biases start at one, as in the official initialisation.
    """

    flax_names = {
        "norm": "LayerNorm_in",
        "in_project": "in_project",
        "grid": "Dense_0",
        "block": "Dense_1",
        "out_project": "out_project",
    }

    def __init__(
        self, channels: int, block_size: Size2, grid_size: Size2, dropout_rate: float = 0.0, use_bias: bool = True
    ):
        super().__init__()
        self.block_size, self.grid_size = block_size, grid_size
        self.norm = layer_norm(channels)
        # The official callers never override this block's input_proj_factor (2).
        self.in_project = dense(channels, 2 * channels, use_bias, init="lecun")
        self.grid = dense(grid_size[0] * grid_size[1], grid_size[0] * grid_size[1], use_bias)
        self.block = dense(block_size[0] * block_size[1], block_size[0] * block_size[1], use_bias)
        if use_bias:
            nn.init.ones_(self.grid.bias)
            nn.init.ones_(self.block.bias)
        self.out_project = dense(2 * channels, channels, use_bias, init="lecun")
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(self.norm(x), self.in_project.weight, self.in_project.bias, activation="gelu")
        u, v = y.chunk(2, dim=-1)
        grid_window = window_of(u, self.grid_size, True)
        u = mix_tokens(partition(u, grid_window, True), self.grid)  # (Gh*Gw, B*fh*fw, C)
        v = mix_tokens(partition(v, self.block_size, False), self.block)  # (fh*fw, B*gh*gw, C)
        # out_project(cat([u, v])) split by input columns; being per pixel, each half is
        # projected in its own token layout. The grid half is copied back to (B, H, W, C)
        # and the block half, read through a view, added to it (out of place: the ONNX
        # exporter mistranslates in-place updates through views).
        weight_u, weight_v = self.out_project.weight.chunk(2, dim=1)
        out = unpartition(linear(u, weight_u.contiguous()), x.shape, grid_window, True).reshape(x.shape)
        v = linear(v, weight_v.contiguous(), self.out_project.bias)
        out = tiles(out, self.block_size) + unpartition(v, x.shape, self.block_size, False)
        return self.dropout(out.reshape(x.shape))


class CrossGatingBlock(nn.Module):
    """CGB: two features gate each other through multi-axis spatial weights.

    Returns (x', y') with y' = y + out_y(y * g(x)) and
    x' = x + y' + out_x(x * g(y)), x and y after their 1x1 projections.
    """

    def __init__(
        self,
        features: int,
        x_channels: int,
        y_channels: int,
        block_size: Size2,
        grid_size: Size2,
        upsample_y: bool,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        mixer: str = "gmlp",
    ):
        super().__init__()
        self.flax_names = {
            **({"upsample_y": "ConvTranspose_0"} if upsample_y else {}),
            "project_x": "Conv_0",
            "project_y": "Conv_1",
            "norm_x": "LayerNorm_x",
            "norm_y": "LayerNorm_y",
            "in_project_x": "in_project_x",
            "in_project_y": "in_project_y",
            "gating_x": "SplitHeadMultiAxisGating_x",
            "gating_y": "SplitHeadMultiAxisGating_y",
            "out_project_x": "out_project_x",
            "out_project_y": "out_project_y",
        }
        self.upsample_y = ConvTransposeUp(y_channels, features, use_bias) if upsample_y else None
        self.project_x = Conv1x1(x_channels, features, use_bias)
        self.project_y = Conv1x1(features if upsample_y else y_channels, features, use_bias)
        self.norm_x, self.norm_y = layer_norm(features), layer_norm(features)
        self.in_project_x = dense(features, features, use_bias, init="lecun")
        self.in_project_y = dense(features, features, use_bias, init="lecun")
        # The gating weights follow the mixer where it has a multi-axis gate (see restore.models.mixers).
        gating = MultiAxisAttentionGate if mixer in ATTENTION_GATED else SpatialGatingWeights
        self.gating_x = gating(features, block_size, grid_size, dropout_rate, use_bias)
        self.gating_y = gating(features, block_size, grid_size, dropout_rate, use_bias)
        self.out_project_x = dense(features, features, use_bias, init="lecun")
        self.out_project_y = dense(features, features, use_bias, init="lecun")
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upsample_y is not None:
            y = self.upsample_y(y)
        shortcut_x, shortcut_y = self.project_x(x), self.project_y(y)
        x = linear(self.norm_x(shortcut_x), self.in_project_x.weight, self.in_project_x.bias, activation="gelu")
        y = linear(self.norm_y(shortcut_y), self.in_project_y.weight, self.in_project_y.bias, activation="gelu")
        gate_x, gate_y = self.gating_x(x), self.gating_y(y)
        out_y, out_x = self.out_project_y, self.out_project_x
        y = linear(y * gate_x, out_y.weight, out_y.bias, residual=shortcut_y, dropout=self.dropout)
        x = linear(x * gate_y, out_x.weight, out_x.bias, residual=shortcut_x + y, dropout=self.dropout)
        return x, y


class ConvSkipFusion(nn.Module):
    """The skip fusion used instead of a CGB when ``use_cross_gating=False``:
    a 1x1 then a 3x3 convolution; the global feature passes through unchanged."""

    def __init__(self, in_channels: int, features: int, use_bias: bool = True):
        super().__init__()
        self.reduce = Conv1x1(in_channels, features, use_bias)
        self.conv = Conv(features, features, use_bias=use_bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(self.reduce(x)), y


def start_near_zero(conv: Conv, scale: float = 1e-3) -> Conv:
    """Shrink an image head's initial weights so an untrained MAXIM returns (almost) its input.

    Every image MAXIM emits is ``head(features) + input``. With the official
    lecun-normal init the decoder features have a standard deviation of about 6,
    so an untrained network adds noise of that size to a [0, 1] image and training
    starts far below the degraded input's PSNR. Scaling the heads (not zeroing
    them: gradients must still reach every layer at the first step) starts
    training at the input. Converted checkpoints overwrite this init.
    """
    with torch.no_grad():
        conv.weight.mul_(scale)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


class SAM(nn.Module):
    """Supervised attention module: emits this stage's image at one scale and
    features re-weighted by that image for the next stage."""

    flax_names = {"feature_conv": "Conv_0", "image_conv": "Conv_1", "attention_conv": "Conv_2"}

    def __init__(self, features: int, output_channels: int = 3, use_bias: bool = True):
        super().__init__()
        self.output_channels = output_channels
        self.feature_conv = Conv(features, features, use_bias=use_bias)
        self.image_conv = start_near_zero(Conv(features, output_channels, use_bias=use_bias))
        self.attention_conv = Conv(output_channels, features, use_bias=use_bias)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        restored = self.image_conv(x, residual=image if self.output_channels == 3 else None)
        attention = torch.sigmoid(self.attention_conv(restored))
        return torch.addcmul(x, self.feature_conv(x), attention), restored


@dataclass(frozen=True)
class BlockConfig:
    """What every MAB-carrying block of one UNet level shares."""

    block_size: Size2
    grid_size: Size2
    num_groups: int
    block_gmlp_factor: int
    grid_gmlp_factor: int
    input_proj_factor: int
    channels_reduction: int
    lrelu_slope: float
    dropout_rate: float
    use_bias: bool
    use_global_mlp: bool = True
    mixer: str = "gmlp"
    block: str = "maxim"

    def cross_gating(self, features: int, x_channels: int, y_channels: int, upsample_y: bool) -> CrossGatingBlock:
        """A cross-gating block at this level's block and grid sizes."""
        return CrossGatingBlock(
            features,
            x_channels,
            y_channels,
            self.block_size,
            self.grid_size,
            upsample_y,
            self.dropout_rate,
            self.use_bias,
            self.mixer,
        )

    def mab(self, channels: int, input_proj_factor: int | None = None) -> nn.Module:
        """The spatial mixer of a group: the official MAB, or one from ``restore.models.mixers``."""
        if self.mixer != "gmlp":
            return build_mixer(self, channels)
        return MultiAxisGmlpBlock(
            channels,
            self.block_size,
            self.grid_size,
            self.block_gmlp_factor,
            self.grid_gmlp_factor,
            self.input_proj_factor if input_proj_factor is None else input_proj_factor,
            self.dropout_rate,
            self.use_bias,
        )


class UNetEncoderBlock(nn.Module):
    """1x1 input conv over [x, skip]; ``num_groups`` x (MAB, RCAB); long skip;
    an optional CGB with the previous stage's features; optional 4x4/2 down conv.

    Returns (down, bridge) when ``downsample`` else the block output.
    """

    def __init__(
        self,
        in_channels: int,
        features: int,
        cfg: BlockConfig,
        downsample: bool = True,
        cross_gating: bool = False,
        input_proj_factor: int | None = None,
    ):
        super().__init__()
        groups = range(cfg.num_groups)
        self.flax_names = {
            "in_conv": "Conv_0",
            **({f"mabs.{g}": f"SplitHeadMultiAxisGmlpLayer_{g}" for g in groups} if cfg.use_global_mlp else {}),
            # The official RCAB names have no underscore before the group index.
            **{f"rcabs.{g}": f"channel_attention_block_1{g}" for g in groups},
            **({"cross_gating": "cross_gating_block"} if cross_gating else {}),
            **({"down": "Conv_1"} if downsample else {}),
        }
        self.in_conv = Conv1x1(in_channels, features, cfg.use_bias)
        self.mabs = nn.ModuleList(cfg.mab(features, input_proj_factor) for _ in groups) if cfg.use_global_mlp else None
        # A MaxViT block brings its own convolutions and squeeze-excitation (MBConv) in the RCAB's place.
        self.rcabs = nn.ModuleList(
            RCAB(features, cfg.channels_reduction, cfg.lrelu_slope, cfg.use_bias)
            if cfg.block == "maxim"
            else nn.Identity()
            for _ in groups
        )
        self.cross_gating = cfg.cross_gating(features, features, features, upsample_y=False) if cross_gating else None
        self.down = Conv(features, features, kernel_size=4, stride=2, use_bias=cfg.use_bias) if downsample else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, previous: torch.Tensor | None = None):
        """``previous`` is the sum of the previous stage's bridge and decoder
        output at this level; it drives the cross-gating block."""
        if skip is not None:
            x = torch.cat([x, skip], dim=-1)
        x = shortcut = self.in_conv(x)
        for g, rcab in enumerate(self.rcabs):
            if self.mabs is not None:
                x = self.mabs[g](x)
            x = rcab(x)
        x = x + shortcut
        if self.cross_gating is not None:
            x, _ = self.cross_gating(x, previous)
        if self.down is None:
            return x
        return self.down(x), x


class UNetDecoderBlock(nn.Module):
    """2x2/2 transposed conv up, then an encoder block (no down) fed with the bridge."""

    flax_names = {"up": "ConvTranspose_0", "block": "UNetEncoderBlock_0"}

    def __init__(self, in_channels: int, bridge_channels: int, features: int, cfg: BlockConfig):
        super().__init__()
        self.up = ConvTransposeUp(in_channels, features, cfg.use_bias)
        # The official decoder does not forward input_proj_factor: its MABs use 2.
        self.block = UNetEncoderBlock(features + bridge_channels, features, cfg, downsample=False, input_proj_factor=2)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.block(self.up(x), skip=bridge)


class BottleneckBlock(nn.Module):
    """1x1 input projection; ``num_groups`` x (MAB, RDCAB); long skip."""

    def __init__(self, in_channels: int, features: int, cfg: BlockConfig):
        super().__init__()
        groups = range(cfg.num_groups)
        self.flax_names = {
            "input_proj": "input_proj",
            **{f"mabs.{g}": f"SplitHeadMultiAxisGmlpLayer_{g}" for g in groups},
            **{f"rdcabs.{g}": f"channel_attention_block_1_{g}" for g in groups},
        }
        self.input_proj = Conv1x1(in_channels, features, cfg.use_bias)
        self.mabs = nn.ModuleList(cfg.mab(features) for _ in groups)
        self.rdcabs = nn.ModuleList(
            RDCAB(features, cfg.channels_reduction, cfg.use_bias) if cfg.block == "maxim" else nn.Identity()
            for _ in groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = shortcut = self.input_proj(x)
        for mab, rdcab in zip(self.mabs, self.rdcabs):
            x = rdcab(mab(x))
        return x + shortcut


@dataclass
class StageFeatures:
    """What a stage hands to the next, each list indexed by UNet level / scale."""

    bridges: list[torch.Tensor]
    decoded: list[torch.Tensor]
    sam: list[torch.Tensor]


class MaximStage(nn.Module):
    """One UNet stage: input convs (+ SAM fusion), encoder, bottleneck,
    cross-gated skips, decoder, and SAM or output convs per supervised scale."""

    def __init__(self, net: MAXIM, index: int):
        super().__init__()
        d, n, f = net.depth, net.num_supervision_scales, net.features
        is_first, self.is_last = index == 0, index == net.num_stages - 1
        level_channels = [f * 2**i for i in range(d)]
        bottleneck_channels = level_channels[-1]
        bias = net.use_bias

        self.input_convs = nn.ModuleList(Conv(net.in_channels, level_channels[i], use_bias=bias) for i in range(n))
        self.input_fusions = None
        if not is_first:
            self.input_fusions = nn.ModuleList(
                net.level_config(i).cross_gating(c, c, c, upsample_y=False)
                if net.use_cross_gating
                else Conv1x1(2 * c, c, bias)
                for i, c in enumerate(level_channels[:n])
            )
        self.encoders = nn.ModuleList(
            UNetEncoderBlock(
                2 * f if i == 0 else level_channels[i - 1] + (level_channels[i] if i < n else 0),
                level_channels[i],
                net.level_config(i),
                downsample=True,
                cross_gating=not is_first,
            )
            for i in range(d)
        )
        self.bottleneck = nn.ModuleList(
            BottleneckBlock(bottleneck_channels, bottleneck_channels, net.bottleneck_config())
            for _ in range(net.num_bottleneck_blocks)
        )
        # skip_resizes[i][j] brings bridge j to level i; decoder_resizes[i][j]
        # brings skip feature j (coarsest first) to level i.
        self.skip_resizes = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(level_channels[j], c, 2.0 ** (j - i), bias) for j in range(d))
            for i, c in enumerate(level_channels)
        )
        self.skip_fusions = nn.ModuleList(
            net.level_config(i).cross_gating(
                c, d * c, bottleneck_channels if i == d - 1 else level_channels[i + 1], upsample_y=True
            )
            if net.use_cross_gating
            else ConvSkipFusion(d * c, c, bias)
            for i, c in enumerate(level_channels)
        )
        self.decoder_resizes = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(level_channels[d - 1 - j], c, 2.0 ** (d - 1 - j - i), bias) for j in range(d))
            for i, c in enumerate(level_channels)
        )
        self.decoders = nn.ModuleList(
            UNetDecoderBlock(
                bottleneck_channels if i == d - 1 else level_channels[i + 1], d * c, c, net.level_config(i)
            )
            for i, c in enumerate(level_channels)
        )
        if self.is_last:
            self.heads = nn.ModuleList(
                start_near_zero(Conv(c, net.num_outputs, use_bias=bias)) for c in level_channels[:n]
            )
        else:
            self.heads = nn.ModuleList(SAM(c, net.num_outputs, bias) for c in level_channels[:n])
        self.flax_names = self._flax_names(index, d, n, net.use_cross_gating)

    def _flax_names(self, s: int, d: int, n: int, use_cross_gating: bool) -> dict[str, str]:
        names = {}
        for i in range(n):
            names[f"input_convs.{i}"] = f"stage_{s}_input_conv_{i}"
            if self.input_fusions is not None:
                kind = "input_fuse_sam" if use_cross_gating else "input_catconv"
                names[f"input_fusions.{i}"] = f"stage_{s}_{kind}_{i}"
            head = "output_conv" if self.is_last else "supervised_attention_module"
            names[f"heads.{i}"] = f"stage_{s}_{head}_{i}"
        for i in range(d):
            names[f"encoders.{i}"] = f"stage_{s}_encoder_block_{i}"
            names[f"decoders.{i}"] = f"stage_{s}_decoder_block_{i}"
            if use_cross_gating:
                names[f"skip_fusions.{i}"] = f"stage_{s}_cross_gating_block_{i}"
            else:
                # Unnamed top-level convs, counted stage-major over levels d-1..0.
                m = s * d + (d - 1 - i)
                names[f"skip_fusions.{i}.reduce"] = f"Conv_{2 * m}"
                names[f"skip_fusions.{i}.conv"] = f"Conv_{2 * m + 1}"
            # One UpSampleRatio counter runs over the whole model, in call order.
            for j in range(d):
                names[f"skip_resizes.{i}.{j}"] = f"UpSampleRatio_{s * 2 * d * d + (d - 1 - i) * d + j}"
                names[f"decoder_resizes.{i}.{j}"] = f"UpSampleRatio_{s * 2 * d * d + d * d + (d - 1 - i) * d + j}"
        for b in range(len(self.bottleneck)):
            names[f"bottleneck.{b}"] = f"stage_{s}_global_block_{b}"
        return names

    def forward(self, shortcuts: list[torch.Tensor], previous: StageFeatures | None, checkpointing: bool = False):
        """``checkpointing`` recomputes each UNet block and cross-gating fusion
        in the backward pass instead of keeping its activations."""

        def run(block: nn.Module, *inputs):
            if checkpointing:
                return checkpoint(block, *inputs, use_reentrant=False)
            return block(*inputs)

        depth = len(self.encoders)
        features = []
        for i, conv in enumerate(self.input_convs):
            x = conv(shortcuts[i])
            if self.input_fusions is not None:
                fusion = self.input_fusions[i]
                if isinstance(fusion, CrossGatingBlock):
                    x, _ = run(fusion, x, previous.sam[i])
                else:
                    x = fusion(torch.cat([x, previous.sam[i]], dim=-1))
            features.append(x)

        x, bridges = features[0], []
        for i, encoder in enumerate(self.encoders):
            skip = features[i] if i < len(features) else None
            carried = None if previous is None else previous.bridges[i] + previous.decoded[i]
            x, bridge = run(encoder, x, skip, carried)
            bridges.append(bridge)

        for block in self.bottleneck:
            x = run(block, x)

        global_feature, skips = x, []  # skips: coarsest level first
        for i in reversed(range(depth)):
            signal = torch.cat([resize_(bridge) for resize_, bridge in zip(self.skip_resizes[i], bridges)], dim=-1)
            skip, global_feature = run(self.skip_fusions[i], signal, global_feature)
            skips.append(skip)

        outputs, decoded, sam = [], [None] * depth, [None] * len(features)
        for i in reversed(range(depth)):
            signal = torch.cat([resize_(skip) for resize_, skip in zip(self.decoder_resizes[i], skips)], dim=-1)
            x = decoded[i] = run(self.decoders[i], x, signal)
            if i < len(features):
                if self.is_last:
                    outputs.append(self.heads[i](x, residual=shortcuts[i]))
                else:
                    sam[i], image = self.heads[i](x, shortcuts[i])
                    outputs.append(image)
        return outputs, StageFeatures(bridges, decoded, sam)


def _pair(value, name: str) -> Size2:
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"MAXIM: {name} must be a positive int or a pair of positive ints, got {value!r}")
    return pair


class MAXIM(nn.Module):
    """The multi-stage, multi-scale MAXIM network.

    Fields carry the official names and defaults (``maxim/models/maxim.py``),
    so an official config means the same here. Two official quirks are kept
    because the released checkpoints depend on them:

    - ``grid_size_lr`` is never read: low-resolution levels use
      ``block_size_lr`` for the grid too (a differing value warns).
    - ``input_proj_factor`` reaches the encoder and bottleneck MABs only;
      decoder MABs and every cross-gating block use 2.

    ``lrelu_slope`` reaches every RCAB (the official code hard-wires 0.2, the
    default, so released checkpoints are unaffected). ``in_channels`` is the
    image channel count, which Flax infers from the input.

    ``mixer`` (gmlp | attention | mixing) and ``block`` (maxim | maxvit) are
    ours, not official: they swap the spatial mixer or the whole UNet block
    (``restore.models.mixers``); the defaults are the official model.

    ``activation_checkpointing`` (not an official field) recomputes each UNet
    block (encoder, bottleneck and decoder blocks) and each cross-gating fusion
    in the backward pass instead of storing their activations: less training
    memory for more time, with the same parameters, outputs and gradients.

    ``forward`` takes NCHW images whose height and width are multiples of
    :attr:`size_multiple` (``restore.inference.pad_to_multiple`` handles any
    size) and returns ``outputs[stage][k]``, NCHW, each stage ordered from
    the coarsest scale to full resolution. :meth:`final_output` picks the
    restored image, ``outputs[-1][-1]``.
    """

    def __init__(
        self,
        features: int = 64,
        depth: int = 3,
        num_stages: int = 2,
        num_groups: int = 1,
        use_bias: bool = True,
        num_supervision_scales: int = 1,
        lrelu_slope: float = 0.2,
        use_global_mlp: bool = True,
        use_cross_gating: bool = True,
        high_res_stages: int = 2,
        block_size_hr: Size2 = (16, 16),
        block_size_lr: Size2 = (8, 8),
        grid_size_hr: Size2 = (16, 16),
        grid_size_lr: Size2 = (8, 8),
        num_bottleneck_blocks: int = 1,
        block_gmlp_factor: int = 2,
        grid_gmlp_factor: int = 2,
        input_proj_factor: int = 2,
        channels_reduction: int = 4,
        num_outputs: int = 3,
        dropout_rate: float = 0.0,
        in_channels: int = 3,
        mixer: str = "gmlp",
        block: str = "maxim",
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        for name, value in [
            ("features", features),
            ("depth", depth),
            ("num_stages", num_stages),
            ("num_groups", num_groups),
            ("num_supervision_scales", num_supervision_scales),
            ("num_bottleneck_blocks", num_bottleneck_blocks),
            ("channels_reduction", channels_reduction),
            ("num_outputs", num_outputs),
            ("in_channels", in_channels),
        ]:
            if int(value) != value or value < 1:
                raise ValueError(f"MAXIM: {name} must be a positive integer, got {value!r}")
        if num_supervision_scales > depth:
            raise ValueError(f"MAXIM: num_supervision_scales ({num_supervision_scales}) cannot exceed depth ({depth})")
        for name, value in [
            ("block_gmlp_factor", block_gmlp_factor),
            ("grid_gmlp_factor", grid_gmlp_factor),
            ("input_proj_factor", input_proj_factor),
        ]:
            if int(value) != value or value < 1 or (value * features) % 2:
                raise ValueError(
                    f"MAXIM: {name} must be a positive integer that keeps the channel count even, got {value!r}"
                )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"MAXIM: dropout_rate must be in [0, 1), got {dropout_rate!r}")
        check_mixer_config(
            mixer,
            block,
            features=features,
            use_global_mlp=use_global_mlp,
            gmlp_fields=dict(
                block_gmlp_factor=block_gmlp_factor,
                grid_gmlp_factor=grid_gmlp_factor,
                input_proj_factor=input_proj_factor,
            ),
            lrelu_slope=lrelu_slope,
        )
        self.features, self.depth, self.num_stages = features, depth, num_stages
        self.num_groups, self.use_bias = num_groups, use_bias
        self.num_supervision_scales, self.lrelu_slope = num_supervision_scales, lrelu_slope
        self.use_global_mlp, self.use_cross_gating = use_global_mlp, use_cross_gating
        self.high_res_stages = high_res_stages
        self.block_size_hr, self.block_size_lr = (
            _pair(block_size_hr, "block_size_hr"),
            _pair(block_size_lr, "block_size_lr"),
        )
        self.grid_size_hr, self.grid_size_lr = _pair(grid_size_hr, "grid_size_hr"), _pair(grid_size_lr, "grid_size_lr")
        if self.grid_size_lr != self.block_size_lr:
            warnings.warn(
                f"MAXIM: grid_size_lr={self.grid_size_lr} differs from block_size_lr={self.block_size_lr}; as in the "
                "official model, low-resolution levels use block_size_lr for the grid, so grid_size_lr has no effect.",
                stacklevel=2,
            )
        self.num_bottleneck_blocks = num_bottleneck_blocks
        self.block_gmlp_factor, self.grid_gmlp_factor = block_gmlp_factor, grid_gmlp_factor
        self.input_proj_factor, self.channels_reduction = input_proj_factor, channels_reduction
        self.num_outputs, self.dropout_rate, self.in_channels = num_outputs, dropout_rate, in_channels
        self.mixer, self.block = mixer, block
        self.activation_checkpointing = bool(activation_checkpointing)

        self.stages = nn.ModuleList(MaximStage(self, s) for s in range(num_stages))
        self.flax_names = {f"stages.{s}": "" for s in range(num_stages)}

    def level_config(self, level: int) -> BlockConfig:
        """Block and grid sizes of a UNet level (official: the low-res grid is block_size_lr)."""
        if level < self.high_res_stages:
            return self._block_config(self.block_size_hr, self.grid_size_hr)
        return self._block_config(self.block_size_lr, self.block_size_lr)

    def bottleneck_config(self) -> BlockConfig:
        return self._block_config(self.block_size_lr, self.block_size_lr)

    def _block_config(self, block_size: Size2, grid_size: Size2) -> BlockConfig:
        return BlockConfig(
            block_size,
            grid_size,
            self.num_groups,
            self.block_gmlp_factor,
            self.grid_gmlp_factor,
            self.input_proj_factor,
            self.channels_reduction,
            self.lrelu_slope,
            self.dropout_rate,
            self.use_bias,
            self.use_global_mlp,
            self.mixer,
            self.block,
        )

    @property
    def size_multiple(self) -> Size2:
        """(mh, mw): input height and width must be multiples of these.

        Every level i must split into its blocks and grid, the bottleneck
        into its blocks, and each of the ``depth`` downsamplings must halve
        an even size.
        """
        multiples = []
        for axis in range(2):
            m = 2**self.depth * self.block_size_lr[axis]
            for i in range(self.depth):
                cfg = self.level_config(i)
                m = math.lcm(m, 2**i * cfg.block_size[axis], 2**i * cfg.grid_size[axis])
            multiples.append(m)
        return multiples[0], multiples[1]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MAXIM expects a (B, {self.in_channels}, H, W) image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[2:]
        mh, mw = self.size_multiple
        if h % mh or w % mw:
            raise ValueError(
                f"MAXIM: input {h}x{w} is not a multiple of {mh}x{mw}; pad it first with "
                "restore.inference.pad_to_multiple (or run restore.inference.restore_image), which crops back."
            )
        image = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # (B, H, W, C), no copy
        shortcuts = [image] + [
            resize(image, (h // 2**i, w // 2**i), "nearest") for i in range(1, self.num_supervision_scales)
        ]
        outputs, previous = [], None
        checkpointing = self.activation_checkpointing and torch.is_grad_enabled()
        for stage in self.stages:
            stage_outputs, previous = stage(shortcuts, previous, checkpointing)
            outputs.append([out.permute(0, 3, 1, 2) for out in stage_outputs])
        return outputs

    @property
    def config(self) -> dict:
        """The constructor fields, JSON-ready: ``MAXIM(**model.config)`` rebuilds the network."""
        fields = inspect.signature(MAXIM.__init__).parameters
        return {f: list(v) if isinstance(v := getattr(self, f), tuple) else v for f in fields if f != "self"}

    @staticmethod
    def final_output(outputs: list[list[torch.Tensor]]) -> torch.Tensor:
        """The restored image: last stage, full resolution."""
        return outputs[-1][-1]
