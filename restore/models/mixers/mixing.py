"""MixFormer's mixing block (Chen et al., CVPR 2022, "MixFormer: Mixing Features
across Windows and Dimensions") as a MAXIM spatial mixer.

Two parallel branches on a pre-normed input: window self-attention (with
relative position bias, on half the channels) and a 3x3 depth-wise
convolution (on all channels). They exchange information both ways:

- channel interaction, conv -> attention: the pooled conv features pass a
  small bottleneck (C -> C/8 -> C/2) whose sigmoid rescales the attention
  values' channels;
- spatial interaction, attention -> conv: the attention output passes a
  bottleneck (C/2 -> C/16 -> 1) whose sigmoid map rescales the conv branch
  at every pixel.

The branches are normalised, concatenated (C) and projected; then an FFN
(expansion 4), each with a residual. Windows are the level's ``block_size``
(MixFormer uses 7 x 7), so the cost is linear in pixels.

Departures from the paper's ImageNet model, and why: every BatchNorm becomes
a LayerNorm over channels (restoration trains on small batches of patches
and evaluates whole images, where batch statistics do not carry over; MAXIM
normalises the same way), and the two interaction bottlenecks drop their norm
(on a pooled vector or a few-channel map a LayerNorm over as little as one
channel would erase the signal).
"""

from __future__ import annotations

import torch
from torch import nn

from restore.models.layers import MlpBlock, dense, gelu, layer_norm
from restore.models.mixers.attention import FFN_EXPANSION, SelfAttention, attend
from restore.models.mixers.base import Level
from restore.models.mixers.primitives import DepthwiseConv
from restore.models.partition import Size2


class MixingBlock(nn.Module):
    """``mixer=mixing``: (B, H, W, C) -> same, residual inside. ``channels`` must be even."""

    def __init__(self, channels: int, window_size: Size2, dropout_rate: float = 0.0, use_bias: bool = True):
        super().__init__()
        if channels % 2:
            raise ValueError(f"the mixing block splits its channels in halves; got an odd count ({channels})")
        half = channels // 2
        self.window_size = window_size
        self.norm = layer_norm(channels)
        # attention branch, C/2 channels
        self.attention_in = dense(channels, half, use_bias)
        self.attention_in_norm = layer_norm(half)
        self.attention = SelfAttention(half, window_size, use_bias)
        self.attention_norm = layer_norm(half)
        # convolution branch, C channels, projected to C/2 after the interactions are taken
        self.conv_in = dense(channels, channels, use_bias)
        self.conv_in_norm = layer_norm(channels)
        self.depthwise = DepthwiseConv(channels, use_bias)
        self.depthwise_norm = layer_norm(channels)
        self.conv_out = dense(channels, half, use_bias)
        self.conv_norm = layer_norm(half)
        # interactions (max(1, .) keeps tiny widths valid)
        self.channel_interaction = nn.Sequential(
            dense(channels, max(1, channels // 8), use_bias),
            nn.GELU("tanh"),
            dense(max(1, channels // 8), half, use_bias),
        )
        self.spatial_interaction = nn.Sequential(
            dense(half, max(1, channels // 16), use_bias), nn.GELU("tanh"), dense(max(1, channels // 16), 1, use_bias)
        )
        self.out_project = dense(channels, channels, use_bias)
        self.ffn_norm = layer_norm(channels)
        self.ffn = MlpBlock(channels, FFN_EXPANSION * channels, dropout_rate, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        attention_in = self.attention_in_norm(self.attention_in(y))  # (B, H, W, C/2)
        conv = gelu(self.depthwise_norm(self.depthwise(self.conv_in_norm(self.conv_in(y)))))  # (B, H, W, C)

        channel_gate = torch.sigmoid(self.channel_interaction(conv.mean(dim=(1, 2), keepdim=True)))  # (B, 1, 1, C/2)
        attended = attend(self.attention, attention_in, self.window_size, False, value_gate=channel_gate)
        spatial_gate = torch.sigmoid(self.spatial_interaction(attended))  # (B, H, W, 1)
        conv = self.conv_norm(self.conv_out(conv) * spatial_gate)  # (B, H, W, C/2)

        mixed = torch.cat([self.attention_norm(attended), conv], dim=-1)  # (B, H, W, C)
        x = x + self.dropout(self.out_project(mixed))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


def build(channels: int, level: Level) -> MixingBlock:
    return MixingBlock(channels, level.block_size, level.dropout_rate, level.use_bias)


def check(cfg) -> None:
    if cfg.features % 2:
        raise ValueError(f"MAXIM: mixer=mixing splits channels in halves; features must be even, got {cfg.features}")
