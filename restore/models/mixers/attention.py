"""MaxViT multi-axis self-attention (Tu et al., ECCV 2022) as a MAXIM spatial mixer.

MaxViT keeps MAXIM's two axes and replaces the gated MLP with self-attention:
*block* attention among the pixels of each P x P window (local) followed by
*grid* attention among the pixels of a fixed G x G grid that share one
offset (dilated, global). Each is a pre-norm transformer layer with a learned
relative position bias and an FFN (MaxViT's ``TransformerBlock``); both work
on fixed-size token sets, so the cost stays linear in pixels.

Facts taken from the official MaxViT (google-research/maxvit,
``maxvit/models/maxvit.py``): head size 32, FFN expansion 4 with GELU,
N(0, 0.02) initialisation of every Dense and of the bias table, a bias table of
shape (heads, 2P-1, 2P-1) read at ``key - query + P - 1`` along each axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.models.layers import DENSE_INIT_STD, MlpBlock, dense, gelu, layer_norm
from restore.models.mixers.primitives import Size2, partition, unpartition

HEAD_DIM = 32  # MaxViT's head_size
FFN_EXPANSION = 4  # MaxViT's FFN expansion_rate


def attention_heads(channels: int, head_dim: int = HEAD_DIM) -> int:
    """MaxViT's head count, ``channels // head_dim``, at least one and a divisor of ``channels``."""
    heads = max(1, channels // head_dim)
    while channels % heads:
        heads -= 1
    return heads


class RelativePositionBias(nn.Module):
    """MaxViT's learned 2-D relative position bias for an ``size`` (h, w) token window.

    One table of (2h-1) x (2w-1) entries per head; the bias of query token q
    at (yq, xq) for key token k at (yk, xk) is
    ``table[head, yk - yq + h - 1, xk - xq + w - 1]`` (tokens row-major).
    """

    def __init__(self, heads: int, size: Size2):
        super().__init__()
        h, w = size
        self.table = nn.Parameter(torch.empty(heads, 2 * h - 1, 2 * w - 1))
        nn.init.trunc_normal_(self.table, std=DENSE_INIT_STD)
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        dy = rows[None, :] - rows[:, None] + h - 1  # (T query, T key)
        dx = cols[None, :] - cols[:, None] + w - 1
        # Derived from ``size``: rebuilt on construction, so kept out of the state_dict.
        self.register_buffer("index", dy * (2 * w - 1) + dx, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table.flatten(1)[:, self.index]  # (heads, T, T)


class SelfAttention(nn.Module):
    """Multi-head self-attention within each token set, with a relative position bias.

    Takes and returns ``(B, n, T, C)``: n sets of T tokens, T = size[0] * size[1].
    No output projection: the caller projects (a transformer layer, or the
    MixFormer block after its concatenation). ``value_gate`` (broadcastable to
    the values, e.g. (B, 1, 1, C)) rescales the values' channels before mixing:
    MixFormer's channel interaction.
    """

    def __init__(self, channels: int, size: Size2, use_bias: bool = True, heads: int | None = None):
        super().__init__()
        self.heads = heads or attention_heads(channels)
        if channels % self.heads:
            raise ValueError(f"{channels} channels do not split into {self.heads} attention heads")
        self.qkv = dense(channels, 3 * channels, use_bias)
        self.relative_bias = RelativePositionBias(self.heads, size)

    def forward(self, tokens: torch.Tensor, value_gate: torch.Tensor | None = None) -> torch.Tensor:
        b, n, t, c = tokens.shape
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # 3 x (B, n, T, C)
        if value_gate is not None:
            v = v * value_gate

        def split_heads(z: torch.Tensor) -> torch.Tensor:
            # (B, n, T, C) -> (B*n, heads, T, C/heads): SDPA's fused CPU/GPU kernels want 4-D inputs.
            return z.reshape(b * n, t, self.heads, c // self.heads).transpose(1, 2)

        # The bias enters as an additive float mask, (heads, T, T), broadcast over windows.
        out = F.scaled_dot_product_attention(
            split_heads(q), split_heads(k), split_heads(v), attn_mask=self.relative_bias()
        )
        return out.transpose(1, 2).reshape(b, n, t, c)


def attend(attention: SelfAttention, x: torch.Tensor, size: Size2, across_windows: bool, **kwargs) -> torch.Tensor:
    """Run ``attention`` over the block (``across_windows=False``) or grid partition of ``x`` (B, H, W, C)."""
    h, w = x.shape[1:3]
    tokens = partition(x, size, across_windows)  # (B, n, T, C)
    return unpartition(attention(tokens, **kwargs), h, w, size, across_windows)


class PartitionAttentionLayer(nn.Module):
    """One MaxViT axis: ``x + Attn(LN(x))`` over the block or grid partition,
    then ``x + FFN(LN(x))``. ``size`` is the window (block) or the grid."""

    def __init__(
        self, channels: int, size: Size2, across_windows: bool, dropout_rate: float = 0.0, use_bias: bool = True
    ):
        super().__init__()
        self.size, self.across_windows = size, across_windows
        self.norm = layer_norm(channels)
        self.attention = SelfAttention(channels, size, use_bias)
        self.out_project = dense(channels, channels, use_bias)
        self.ffn_norm = layer_norm(channels)
        self.ffn = MlpBlock(channels, FFN_EXPANSION * channels, dropout_rate, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = attend(self.attention, self.norm(x), self.size, self.across_windows)
        x = x + self.dropout(self.out_project(y))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class MultiAxisAttention(nn.Module):
    """``mixer=attention``: MaxViT's Max-SA, block attention then grid attention,
    each a pre-norm layer with its FFN; residual inside, (B, H, W, C) -> same."""

    def __init__(
        self, channels: int, block_size: Size2, grid_size: Size2, dropout_rate: float = 0.0, use_bias: bool = True
    ):
        super().__init__()
        self.block = PartitionAttentionLayer(channels, block_size, False, dropout_rate, use_bias)
        self.grid = PartitionAttentionLayer(channels, grid_size, True, dropout_rate, use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid(self.block(x))


class MultiAxisAttentionGate(nn.Module):
    """The cross-gating weights of the attention mixers: the official
    ``GetSpatialGatingWeights`` with its token-mixing Dense layers replaced by
    self-attention, the substitution MaxViT makes for the MAB itself.

    LN, project to 2C, GELU; grid attention on one half and block attention on
    the other; concatenate and project back to C. No residual: the output
    multiplies the other feature inside the cross-gating block.
    """

    def __init__(
        self, channels: int, block_size: Size2, grid_size: Size2, dropout_rate: float = 0.0, use_bias: bool = True
    ):
        super().__init__()
        self.block_size, self.grid_size = block_size, grid_size
        self.norm = layer_norm(channels)
        self.in_project = dense(channels, 2 * channels, use_bias)
        self.grid = SelfAttention(channels, grid_size, use_bias)
        self.block = SelfAttention(channels, block_size, use_bias)
        self.out_project = dense(2 * channels, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = gelu(self.in_project(self.norm(x))).chunk(2, dim=-1)
        u = attend(self.grid, u, self.grid_size, True)
        v = attend(self.block, v, self.block_size, False)
        return self.dropout(self.out_project(torch.cat([u, v], dim=-1)))
