"""The configuration of a MAXIM network: one frozen dataclass, checked once.

Field names and defaults are the official ones (``Model`` in google-research/maxim,
``maxim/models/maxim.py``), so an official config means the same here; ``mixer``,
``block``, ``in_channels`` and ``activation_checkpointing`` are ours (see ``MAXIM``).
:data:`VARIANTS` are the official ``Model(variant=...)`` presets; the presets this
project trains with live in ``conf/model/*.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

from restore.models.mixers import BLOCKS, MIXERS, Level, MixerFamily
from restore.models.partition import Size2


@dataclass(frozen=True)
class MaximConfig:
    features: int = 64
    depth: int = 3
    num_stages: int = 2
    num_groups: int = 1
    use_bias: bool = True
    num_supervision_scales: int = 1
    lrelu_slope: float = 0.2
    use_global_mlp: bool = True
    use_cross_gating: bool = True
    high_res_stages: int = 2
    block_size_hr: Size2 = (16, 16)
    block_size_lr: Size2 = (8, 8)
    grid_size_hr: Size2 = (16, 16)
    grid_size_lr: Size2 = (8, 8)
    num_bottleneck_blocks: int = 1
    block_gmlp_factor: int = 2
    grid_gmlp_factor: int = 2
    input_proj_factor: int = 2
    channels_reduction: int = 4
    num_outputs: int = 3
    dropout_rate: float = 0.0
    in_channels: int = 3
    mixer: str = "gmlp"
    block: str = "maxim"
    activation_checkpointing: bool = False
    family: MixerFamily = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("block_size_hr", "block_size_lr", "grid_size_hr", "grid_size_lr"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        for name in (
            "features",
            "depth",
            "num_stages",
            "num_groups",
            "num_supervision_scales",
            "num_bottleneck_blocks",
            "channels_reduction",
            "num_outputs",
            "in_channels",
        ):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"MAXIM: {name} must be a positive integer, got {value!r}")
        if self.num_supervision_scales > self.depth:
            raise ValueError(
                f"MAXIM: num_supervision_scales ({self.num_supervision_scales}) cannot exceed depth ({self.depth})"
            )
        for name in ("block_gmlp_factor", "grid_gmlp_factor", "input_proj_factor"):
            value = getattr(self, name)
            if int(value) != value or value < 1 or (value * self.features) % 2:
                raise ValueError(
                    f"MAXIM: {name} must be a positive integer that keeps the channel count even, got {value!r}"
                )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"MAXIM: dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        object.__setattr__(self, "family", self._mixer_family())
        if self.grid_size_lr != self.block_size_lr:
            warnings.warn(
                f"MAXIM: grid_size_lr={self.grid_size_lr} differs from block_size_lr={self.block_size_lr}; as in the "
                "official model, low-resolution levels use block_size_lr for the grid, so grid_size_lr has no effect.",
                stacklevel=3,
            )

    def _mixer_family(self) -> MixerFamily:
        """The registry entry of ``mixer`` (or of ``block`` when that replaces the whole group)."""
        mixers = [name for name in MIXERS if name not in BLOCKS]
        if self.mixer not in mixers:
            raise ValueError(f"MAXIM: mixer must be one of {', '.join(mixers)}; got {self.mixer!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"MAXIM: block must be one of {', '.join(BLOCKS)}; got {self.block!r}")
        family = MIXERS[self.mixer if self.block == "maxim" else self.block]
        if family.check is not None:
            family.check(self)
        defaults = {f.name: f.default for f in dataclasses.fields(MaximConfig)}
        unused = [f"{name}={getattr(self, name)}" for name in family.ignores if getattr(self, name) != defaults[name]]
        if unused:
            warnings.warn(
                f"MAXIM: {', '.join(unused)} only affect mixer=gmlp; {family.name} ignores them", stacklevel=4
            )
        return family

    def level(self, i: int) -> Level:
        """What the blocks of UNet level ``i`` share. Official quirk: below ``high_res_stages``
        the grid is ``grid_size_hr``, above it ``block_size_lr`` (``grid_size_lr`` is never read)."""
        if i < self.high_res_stages:
            return self._level(self.block_size_hr, self.grid_size_hr)
        return self._level(self.block_size_lr, self.block_size_lr)

    @property
    def bottleneck(self) -> Level:
        return self._level(self.block_size_lr, self.block_size_lr)

    def _level(self, block_size: Size2, grid_size: Size2) -> Level:
        return Level(
            block_size=block_size,
            grid_size=grid_size,
            num_groups=self.num_groups,
            use_global_mlp=self.use_global_mlp,
            block_gmlp_factor=self.block_gmlp_factor,
            grid_gmlp_factor=self.grid_gmlp_factor,
            input_proj_factor=self.input_proj_factor,
            channels_reduction=self.channels_reduction,
            lrelu_slope=self.lrelu_slope,
            dropout_rate=self.dropout_rate,
            use_bias=self.use_bias,
            family=self.family,
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
                level = self.level(i)
                m = math.lcm(m, 2**i * level.block_size[axis], 2**i * level.grid_size[axis])
            multiples.append(m)
        return multiples[0], multiples[1]

    def as_dict(self) -> dict:
        """The fields, JSON-ready (pairs as lists): ``MaximConfig(**cfg.as_dict())`` is ``cfg``."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in dataclasses.fields(self)
            if f.init
        }


def _pair(value, name: str) -> Size2:
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"MAXIM: {name} must be a positive int or a pair of positive ints, got {value!r}")
    return pair


def _official(features: int, num_stages: int) -> MaximConfig:
    return MaximConfig(
        features=features,
        depth=3,
        num_stages=num_stages,
        num_groups=2,
        num_bottleneck_blocks=2,
    )


# The official ``Model(variant=...)``: S (32 features) and M (64), the digit is num_stages;
# every other field keeps the class default (factors 2, channels_reduction 4,
# num_supervision_scales=1; the released checkpoints were run with 3, as conf/model/*.yaml are).
VARIANTS = {
    f"{size}-{stages}": _official(width, stages) for size, width in (("S", 32), ("M", 64)) for stages in (1, 2, 3)
}
