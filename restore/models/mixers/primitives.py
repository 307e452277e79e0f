"""A layer the MaxViT and MixFormer mixers share: the depth-wise convolution, channels-last."""

from __future__ import annotations

import torch
from torch import nn


class DepthwiseConv(nn.Conv2d):
    """3x3 depth-wise convolution (one filter per channel) on channels-last tensors."""

    def __init__(self, channels: int, use_bias: bool = True):
        super().__init__(channels, channels, 3, padding=1, groups=channels, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> NCHW view -> depth-wise conv -> (B, H, W, C)
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
