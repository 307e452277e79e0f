"""MAXIM's own spatial mixer, the multi-axis gated MLP, and its cross-gating gate (``mixer=gmlp``).

The official modules (google-research/maxim, ``maxim/models/maxim.py``) with
their order of operations and parameters: ``MultiAxisGmlpBlock`` is the MAB
(official ResidualSplitHeadMultiAxisGmlpLayer) and ``SpatialGatingWeights``
the CGB's GetSpatialGatingWeights (docs/model.md, "Modules").
"""

from __future__ import annotations

import torch
from torch import nn

from restore.models.layers import TokenDense, dense, layer_norm, linear_of_concat
from restore.models.mixers.base import Level
from restore.models.partition import (
    PARTITIONS,
    Size2,
    block_partition,
    block_unpartition,
    grid_partition,
    grid_unpartition,
)


class GatingUnit(nn.Module):
    """gMLP spatial gating: u * (Dense_tokens(LN(v)) + 1), halving the channels.

    ``axis`` "grid" mixes the windows of a fixed ``size`` grid (GridGatingUnit),
    "block" the positions inside each ``size`` window (BlockGatingUnit).
    """

    flax_names = {"norm": "intermediate_layernorm", "spatial": "Dense_0"}

    def __init__(self, channels: int, size: Size2, axis: str, use_bias: bool = True):
        super().__init__()
        self.size = size
        self.partition, self.unpartition = PARTITIONS[axis]
        self.norm = layer_norm(channels // 2)
        self.spatial = TokenDense(size[0] * size[1], use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)
        # LayerNorm is per pixel, so it runs after the copy into the token layout.
        mixed = self.spatial(self.norm(self.partition(v, self.size)))  # (T, N, C/2)
        # u * (mixed + 1) as u + u * mixed, reading mixed back through a view.
        mixed = self.unpartition(mixed, u.shape, self.size)  # (B, gh, fh, gw, fw, C/2)
        tiled_u = u.view(mixed.shape)
        return torch.addcmul(tiled_u, tiled_u, mixed).reshape(u.shape)


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
        axis: str,
        factor: int = 2,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
    ):
        super().__init__()
        unit = "GridGatingUnit" if axis == "grid" else "BlockGatingUnit"
        self.flax_names = {
            "norm": "LayerNorm",
            "in_project": "in_project",
            "gating": unit,
            "out_project": "out_project",
        }
        self.norm = layer_norm(channels)
        self.in_project = dense(channels, channels * factor, use_bias, then_gelu=True)
        self.gating = GatingUnit(channels * factor, size, axis, use_bias)
        self.out_project = dense(channels * factor // 2, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gating(self.in_project(self.norm(x)))
        return x + self.dropout(self.out_project(y))


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
        self.in_project = dense(channels, inner, use_bias, then_gelu=True)
        self.grid = GmlpLayer(inner // 2, grid_size, "grid", grid_gmlp_factor, dropout_rate, use_bias)
        self.block = GmlpLayer(inner // 2, block_size, "block", block_gmlp_factor, dropout_rate, use_bias)
        self.out_project = dense(inner, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.in_project(self.norm(x)).chunk(2, dim=-1)
        return x + self.dropout(linear_of_concat([self.grid(u), self.block(v)], self.out_project))


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
        self.in_project = dense(channels, 2 * channels, use_bias, init="lecun", then_gelu=True)
        self.grid = TokenDense(grid_size[0] * grid_size[1], use_bias)
        self.block = TokenDense(block_size[0] * block_size[1], use_bias)
        if use_bias:
            nn.init.ones_(self.grid.bias)
            nn.init.ones_(self.block.bias)
        self.out_project = dense(2 * channels, channels, use_bias, init="lecun")
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.in_project(self.norm(x)).chunk(2, dim=-1)
        u = grid_unpartition(self.grid(grid_partition(u, self.grid_size)), x.shape, self.grid_size)
        v = block_unpartition(self.block(block_partition(v, self.block_size)), x.shape, self.block_size)
        return self.dropout(linear_of_concat([u.reshape(x.shape), v.reshape(x.shape)], self.out_project))


def build(channels: int, level: Level) -> MultiAxisGmlpBlock:
    return MultiAxisGmlpBlock(
        channels,
        level.block_size,
        level.grid_size,
        level.block_gmlp_factor,
        level.grid_gmlp_factor,
        level.input_proj_factor,
        level.dropout_rate,
        level.use_bias,
    )


def build_gate(channels: int, level: Level) -> SpatialGatingWeights:
    return SpatialGatingWeights(channels, level.block_size, level.grid_size, level.dropout_rate, level.use_bias)
