"""The MaxViT block (Tu et al., ECCV 2022) as a whole MAXIM UNet block: ``block=maxvit``.

MBConv (inverted bottleneck with squeeze-excitation) -> block attention + FFN
-> grid attention + FFN. In a MaxViT-UNet each (MAB, RCAB) group of the
encoder, decoder and bottleneck becomes one MaxViT block: the MBConv's
convolutions and squeeze-excitation take the RCAB's place (see ``maxim.py``).

Facts from the official MaxViT (google-research/maxvit): pre-norm MBConv with
expansion 4, GELU, a bias-free 1x1 expansion and 3x3 depth-wise convolution,
squeeze-excitation on the expanded features with ``hidden_size * 0.25``
units and swish (SiLU), a 1x1 shrink with bias, residual. As in the mixing
block, BatchNorm becomes LayerNorm (small restoration batches; see mixing.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.models.layers import dense, gelu, layer_norm
from restore.models.mixers.attention import MultiAxisAttention
from restore.models.mixers.base import Level
from restore.models.mixers.primitives import DepthwiseConv
from restore.models.partition import Size2

MBCONV_EXPANSION = 4  # MaxViT's expansion_rate


class SqueezeExcitation(nn.Module):
    """MaxViT's SE: global mean, Dense -> SiLU -> Dense -> sigmoid, rescale channels.

    ``layers.CALayer`` is the RCAN/MAXIM variant with ReLU and a width tied to
    its own input; MaxViT's squeezes the expanded features to a width set by
    the block's channels and uses swish.
    """

    def __init__(self, channels: int, hidden: int, use_bias: bool = True):
        super().__init__()
        self.squeeze = dense(channels, hidden, use_bias)
        self.excite = dense(hidden, channels, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        return x * torch.sigmoid(self.excite(F.silu(self.squeeze(y))))


class MBConv(nn.Module):
    """``x + Shrink(SE(GELU(LN(DW(GELU(LN(Expand(LN(x)))))))))``, channels-last.

    ``channels_reduction`` sets the SE width, ``channels // channels_reduction``:
    MaxViT's se_ratio of 0.25 is MAXIM's default reduction of 4.
    """

    def __init__(self, channels: int, channels_reduction: int = 4, dropout_rate: float = 0.0, use_bias: bool = True):
        super().__init__()
        inner = MBCONV_EXPANSION * channels
        self.norm = layer_norm(channels)
        self.expand = dense(channels, inner, use_bias=False)
        self.expand_norm = layer_norm(inner)
        self.depthwise = DepthwiseConv(inner, use_bias=False)
        self.depthwise_norm = layer_norm(inner)
        self.squeeze_excitation = SqueezeExcitation(inner, max(1, channels // channels_reduction), use_bias)
        self.shrink = dense(inner, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = gelu(self.expand_norm(self.expand(self.norm(x))))  # (B, H, W, 4C)
        y = gelu(self.depthwise_norm(self.depthwise(y)))
        return x + self.dropout(self.shrink(self.squeeze_excitation(y)))


class MaxViTBlock(nn.Module):
    """``block=maxvit``: MBConv, then block attention + FFN, then grid attention + FFN."""

    def __init__(
        self,
        channels: int,
        block_size: Size2,
        grid_size: Size2,
        channels_reduction: int = 4,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
    ):
        super().__init__()
        self.mbconv = MBConv(channels, channels_reduction, dropout_rate, use_bias)
        self.attention = MultiAxisAttention(channels, block_size, grid_size, dropout_rate, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.mbconv(x))


def build(channels: int, level: Level) -> MaxViTBlock:
    return MaxViTBlock(
        channels, level.block_size, level.grid_size, level.channels_reduction, level.dropout_rate, level.use_bias
    )


def check(cfg) -> None:
    if cfg.mixer != "attention":
        raise ValueError(
            f"MAXIM: block=maxvit is built from multi-axis attention; set mixer=attention (got {cfg.mixer!r})"
        )
    if not cfg.use_global_mlp:
        raise ValueError("MAXIM: block=maxvit needs use_global_mlp=true (false would drop every MaxViT block)")
