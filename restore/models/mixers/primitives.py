"""Primitives the mixers share: the block/grid partition into token sets and a
depth-wise convolution, both on channels-last ``(B, H, W, C)`` tensors.

``layers.partition`` lays the same token sets out tokens first, ``(T, N, C)``,
so the gMLP's token-mixing Dense is one GEMM. Attention needs each set's
tokens then channels, ``(B, n, T, C)``, so the partition is spelled out here;
the token numbering (row-major within a window, row-major over the grid) is
the same as ``layers.partition``'s and the official ``block_images``'s.
"""

from __future__ import annotations

import torch
from torch import nn

Size2 = tuple[int, int]


def partition(x: torch.Tensor, size: Size2, across_windows: bool) -> torch.Tensor:
    """Cut ``x`` into token sets that attend among themselves.

    ``across_windows=False`` (block, local): the tokens are the positions of
    each non-overlapping ``size`` window. ``across_windows=True`` (grid,
    global, dilated): the image is laid on a fixed ``size`` grid of windows and
    the tokens are the windows' pixels at one offset, ``H / size[0]`` rows and
    ``W / size[1]`` columns apart.
    """
    b, h, w, c = x.shape
    if h % size[0] or w % size[1]:
        kind = "grid" if across_windows else "block"
        raise ValueError(f"a {h}x{w} feature map does not split into a {size[0]}x{size[1]} {kind}")
    if across_windows:
        gh, gw = size
        fh, fw = h // gh, w // gw
    else:
        fh, fw = size
        gh, gw = h // fh, w // fw
    tiles = x.reshape(b, gh, fh, gw, fw, c)
    if across_windows:
        # (B, gh, fh, gw, fw, C) -> (B, fh*fw groups, gh*gw tokens, C)
        return tiles.permute(0, 2, 4, 1, 3, 5).reshape(b, fh * fw, gh * gw, c)
    # (B, gh, fh, gw, fw, C) -> (B, gh*gw windows, fh*fw tokens, C)
    return tiles.permute(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, fh * fw, c)


def unpartition(tokens: torch.Tensor, height: int, width: int, size: Size2, across_windows: bool) -> torch.Tensor:
    """Inverse of :func:`partition`: ``(B, n, T, C)`` back to ``(B, H, W, C)``."""
    b, c = tokens.shape[0], tokens.shape[-1]
    if across_windows:
        gh, gw = size
        fh, fw = height // gh, width // gw
        # (B, fh, fw, gh, gw, C) -> (B, gh, fh, gw, fw, C)
        tiles = tokens.reshape(b, fh, fw, gh, gw, c).permute(0, 3, 1, 4, 2, 5)
    else:
        fh, fw = size
        gh, gw = height // fh, width // fw
        # (B, gh, gw, fh, fw, C) -> (B, gh, fh, gw, fw, C)
        tiles = tokens.reshape(b, gh, gw, fh, fw, c).permute(0, 1, 3, 2, 4, 5)
    return tiles.reshape(b, height, width, c)


class DepthwiseConv(nn.Conv2d):
    """3x3 depth-wise convolution (one filter per channel) on channels-last tensors."""

    def __init__(self, channels: int, use_bias: bool = True):
        super().__init__(channels, channels, 3, padding=1, groups=channels, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> NCHW view -> depth-wise conv -> (B, H, W, C)
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
