"""MAXIM: Multi-Axis MLP for Image Processing (Tu et al., CVPR 2022).

A faithful PyTorch port of the official Flax model (google-research/maxim,
``maxim/models/maxim.py``): the same modules, the same order of operations and
the same parameters, so the official checkpoints load strictly and reproduce
the official outputs (see ``convert.py`` and ``tests/models``).

Reading order follows the paper's figure: the cross-gating block (CGB), SAM,
the UNet blocks and finally the multi-stage, multi-scale ``MAXIM``. The spatial
mixer of each block (the official multi-axis gated MLP, ``mixers/gmlp.py``, or
another) and the CGB's gate come from the registry in ``restore.models.mixers``;
the configuration is ``MaximConfig`` (``config.py``). Internals are channels-last
(B, H, W, C); ``MAXIM.forward`` takes and returns NCHW images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from restore.models.config import MaximConfig
from restore.models.layers import Conv, Conv1x1, ConvTransposeUp, UpSampleRatio, dense, layer_norm, resize
from restore.models.mixers import Level
from restore.models.partition import Size2


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
        level: Level,
        upsample_y: bool,
    ):
        super().__init__()
        use_bias = level.use_bias
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
        self.in_project_x = dense(features, features, use_bias, init="lecun", then_gelu=True)
        self.in_project_y = dense(features, features, use_bias, init="lecun", then_gelu=True)
        self.gating_x = level.family.gate(features, level)
        self.gating_y = level.family.gate(features, level)
        self.out_project_x = dense(features, features, use_bias, init="lecun")
        self.out_project_y = dense(features, features, use_bias, init="lecun")
        self.dropout = nn.Dropout(level.dropout_rate)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upsample_y is not None:
            y = self.upsample_y(y)
        shortcut_x, shortcut_y = self.project_x(x), self.project_y(y)
        x = self.in_project_x(self.norm_x(shortcut_x))
        y = self.in_project_y(self.norm_y(shortcut_y))
        gate_x, gate_y = self.gating_x(x), self.gating_y(y)
        y = shortcut_y + self.dropout(self.out_project_y(y * gate_x))
        x = shortcut_x + y + self.dropout(self.out_project_x(x * gate_y))
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
        restored = self.image_conv(x)
        if self.output_channels == 3:
            restored = restored + image
        attention = torch.sigmoid(self.attention_conv(restored))
        return torch.addcmul(x, self.feature_conv(x), attention), restored


class UNetEncoderBlock(nn.Module):
    """1x1 input conv over [x, skip]; ``num_groups`` x (MAB, RCAB); long skip;
    an optional CGB with the previous stage's features; optional 4x4/2 down conv.

    Returns (down, bridge) when ``downsample`` else the block output.
    """

    def __init__(
        self,
        in_channels: int,
        features: int,
        level: Level,
        downsample: bool = True,
        cross_gating: bool = False,
    ):
        super().__init__()
        groups = range(level.num_groups)
        self.flax_names = {
            "in_conv": "Conv_0",
            **({f"mabs.{g}": f"SplitHeadMultiAxisGmlpLayer_{g}" for g in groups} if level.use_global_mlp else {}),
            # The official RCAB names have no underscore before the group index.
            **{f"rcabs.{g}": f"channel_attention_block_1{g}" for g in groups},
            **({"cross_gating": "cross_gating_block"} if cross_gating else {}),
            **({"down": "Conv_1"} if downsample else {}),
        }
        family = level.family
        self.in_conv = Conv1x1(in_channels, features, level.use_bias)
        self.mabs = nn.ModuleList(family.spatial(features, level) for _ in groups) if level.use_global_mlp else None
        self.rcabs = nn.ModuleList(family.channel(features, level, False) for _ in groups)
        self.cross_gating = (
            CrossGatingBlock(features, features, features, level, upsample_y=False) if cross_gating else None
        )
        self.down = Conv(features, features, kernel_size=4, stride=2, use_bias=level.use_bias) if downsample else None

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

    def __init__(self, in_channels: int, bridge_channels: int, features: int, level: Level):
        super().__init__()
        self.up = ConvTransposeUp(in_channels, features, level.use_bias)
        # The official decoder does not forward input_proj_factor: its MABs use 2.
        level = dataclasses.replace(level, input_proj_factor=2)
        self.block = UNetEncoderBlock(features + bridge_channels, features, level, downsample=False)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.block(self.up(x), skip=bridge)


class BottleneckBlock(nn.Module):
    """1x1 input projection; ``num_groups`` x (MAB, RDCAB); long skip."""

    def __init__(self, in_channels: int, features: int, level: Level):
        super().__init__()
        groups = range(level.num_groups)
        self.flax_names = {
            "input_proj": "input_proj",
            **{f"mabs.{g}": f"SplitHeadMultiAxisGmlpLayer_{g}" for g in groups},
            **{f"rdcabs.{g}": f"channel_attention_block_1_{g}" for g in groups},
        }
        self.input_proj = Conv1x1(in_channels, features, level.use_bias)
        self.mabs = nn.ModuleList(level.family.spatial(features, level) for _ in groups)
        self.rdcabs = nn.ModuleList(level.family.channel(features, level, True) for _ in groups)

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

    def __init__(self, cfg: MaximConfig, index: int):
        super().__init__()
        d, n, f = cfg.depth, cfg.num_supervision_scales, cfg.features
        is_first, self.is_last = index == 0, index == cfg.num_stages - 1
        level_channels = [f * 2**i for i in range(d)]
        bottleneck_channels = level_channels[-1]
        bias = cfg.use_bias

        self.input_convs = nn.ModuleList(Conv(cfg.in_channels, level_channels[i], use_bias=bias) for i in range(n))
        self.input_fusions = None
        if not is_first:
            self.input_fusions = nn.ModuleList(
                CrossGatingBlock(c, c, c, cfg.level(i), upsample_y=False)
                if cfg.use_cross_gating
                else Conv1x1(2 * c, c, bias)
                for i, c in enumerate(level_channels[:n])
            )
        self.encoders = nn.ModuleList(
            UNetEncoderBlock(
                2 * f if i == 0 else level_channels[i - 1] + (level_channels[i] if i < n else 0),
                level_channels[i],
                cfg.level(i),
                downsample=True,
                cross_gating=not is_first,
            )
            for i in range(d)
        )
        self.bottleneck = nn.ModuleList(
            BottleneckBlock(bottleneck_channels, bottleneck_channels, cfg.bottleneck)
            for _ in range(cfg.num_bottleneck_blocks)
        )
        # skip_resizes[i][j] brings bridge j to level i; decoder_resizes[i][j]
        # brings skip feature j (coarsest first) to level i.
        self.skip_resizes = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(level_channels[j], c, 2.0 ** (j - i), bias) for j in range(d))
            for i, c in enumerate(level_channels)
        )
        self.skip_fusions = nn.ModuleList(
            CrossGatingBlock(
                c, d * c, bottleneck_channels if i == d - 1 else level_channels[i + 1], cfg.level(i), upsample_y=True
            )
            if cfg.use_cross_gating
            else ConvSkipFusion(d * c, c, bias)
            for i, c in enumerate(level_channels)
        )
        self.decoder_resizes = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(level_channels[d - 1 - j], c, 2.0 ** (d - 1 - j - i), bias) for j in range(d))
            for i, c in enumerate(level_channels)
        )
        self.decoders = nn.ModuleList(
            UNetDecoderBlock(bottleneck_channels if i == d - 1 else level_channels[i + 1], d * c, c, cfg.level(i))
            for i, c in enumerate(level_channels)
        )
        if self.is_last:
            self.heads = nn.ModuleList(
                start_near_zero(Conv(c, cfg.num_outputs, use_bias=bias)) for c in level_channels[:n]
            )
        else:
            self.heads = nn.ModuleList(SAM(c, cfg.num_outputs, bias) for c in level_channels[:n])
        self.flax_names = self._flax_names(index, d, n, cfg.use_cross_gating)

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
                    outputs.append(self.heads[i](x) + shortcuts[i])
                else:
                    sam[i], image = self.heads[i](x, shortcuts[i])
                    outputs.append(image)
        return outputs, StageFeatures(bridges, decoded, sam)


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

    config_class = MaximConfig  # what a config's fields are checked against (restore.config_types)

    def __init__(self, config: MaximConfig | None = None, **fields):
        super().__init__()
        if config is not None and fields:
            raise TypeError("MAXIM: give a MaximConfig or its fields, not both")
        self.config = config if config is not None else MaximConfig(**fields)
        self.stages = nn.ModuleList(MaximStage(self.config, s) for s in range(self.config.num_stages))
        self.flax_names = {f"stages.{s}": "" for s in range(self.config.num_stages)}

    @property
    def size_multiple(self) -> Size2:
        """(mh, mw): input height and width must be multiples of these (``MaximConfig.size_multiple``)."""
        return self.config.size_multiple

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"MAXIM expects a (B, {cfg.in_channels}, H, W) image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[2:]
        mh, mw = self.size_multiple
        if h % mh or w % mw:
            raise ValueError(
                f"MAXIM: input {h}x{w} is not a multiple of {mh}x{mw}; pad it first with "
                "restore.inference.pad_to_multiple (or run restore.inference.restore_image), which crops back."
            )
        image = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # (B, H, W, C), no copy
        shortcuts = [image] + [
            resize(image, (h // 2**i, w // 2**i), "nearest") for i in range(1, cfg.num_supervision_scales)
        ]
        outputs, previous = [], None
        checkpointing = cfg.activation_checkpointing and torch.is_grad_enabled()
        for stage in self.stages:
            stage_outputs, previous = stage(shortcuts, previous, checkpointing)
            outputs.append([out.permute(0, 3, 1, 2) for out in stage_outputs])
        return outputs

    @staticmethod
    def final_output(outputs: list[list[torch.Tensor]]) -> torch.Tensor:
        """The restored image: last stage, full resolution."""
        return outputs[-1][-1]
