"""What the network hands a mixer, and what a mixer gives the network: the registry's two types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from restore.models.partition import Size2


@dataclass(frozen=True)
class Level:
    """The settings every block of one UNet level (or the bottleneck) shares."""

    block_size: Size2
    grid_size: Size2
    num_groups: int
    use_global_mlp: bool
    block_gmlp_factor: int
    grid_gmlp_factor: int
    input_proj_factor: int
    channels_reduction: int
    lrelu_slope: float
    dropout_rate: float
    use_bias: bool
    family: MixerFamily


Builder = Callable[[int, Level], nn.Module]  # (channels, level) -> module, channels-last in and out


@dataclass(frozen=True)
class MixerFamily:
    """One registry entry: the three modules a mixer choice puts into MAXIM.

    ``spatial`` takes the MAB's place in each (mixer, channel block) group of the
    encoders, decoders and bottlenecks; ``gate`` computes the multi-axis gating
    weights inside every cross-gating block; ``channel`` (channels, level,
    bottleneck) is the group's channel block (RCAB, or RDCAB in the bottleneck).
    ``ignores`` names the ``MaximConfig`` fields no module of the family reads
    (setting them warns); ``check`` rejects configs the family cannot build.
    """

    name: str
    spatial: Builder
    gate: Builder
    channel: Callable[[int, Level, bool], nn.Module]
    ignores: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None  # called with the MaximConfig
