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

from restore.models.layers import DENSE_INIT_STD, MlpBlock, dense, layer_norm
from restore.models.mixers.base import Level
from restore.models.partition import PARTITIONS, Size2, per_set, tokens_first

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

        out = windowed_attention(split_heads(q), split_heads(k), split_heads(v), self.relative_bias())
        return out.transpose(1, 2).reshape(b, n, t, c)


# Scores are computed for this many bytes' worth of (window, head) T x T tiles at a time.
# Small enough that a chunk's scores, probabilities and their gradients (a few tiles
# each) are a rounding error next to the feature maps; large enough that each
# batched product still has hundreds of windows to spread over the threads.
CHUNK_BYTES = 16 * 2**20


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(d) + bias) V`` per window and head; q, k, v (N, heads, T, d), bias (heads, T, T).

    Without gradients this is SDPA, whose fused CPU/GPU kernels keep no T x T
    matrix. With them, SDPA has no fused kernel for a bias that needs a
    gradient: its math path keeps every window's scores and probabilities for
    backward, T/d times the size of the features themselves (8x at T=256,
    d=32), which took MAXIM-2S with attention past 24 GB at 256x256 x 8.
    :class:`ChunkedAttention` keeps only q, k, v, the output and one
    log-sum-exp per query and recomputes the rest in chunks in backward.
    Measured against checkpointing the SDPA call (which recomputes the whole
    layer's scores at once, so one layer's T x T matrices are still the
    backward peak) in ``benchmarks/bench_memory.py`` and docs/performance.md.
    """
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, bias))):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    device = q.device.type
    if torch.is_autocast_enabled(device):
        # What autocast does to SDPA's inputs; the bias stays fp32, scores are fp32 anyway.
        dtype = torch.get_autocast_dtype(device)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    with torch.autocast(device, enabled=False):
        return ChunkedAttention.apply(q, k, v, bias)


def _window_chunks(q: torch.Tensor) -> list[slice]:
    windows, heads, t = q.shape[:3]
    step = max(1, CHUNK_BYTES // (heads * t * t * 4))
    return [slice(i, i + step) for i in range(0, windows, step)]


def _probabilities(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor, lse: torch.Tensor | None = None):
    """fp32 scores of one chunk; with ``lse`` (their log-sum-exp), the softmax probabilities instead."""
    scores = (q @ k.transpose(-1, -2)).float().mul_(q.shape[-1] ** -0.5).add_(bias)
    if lse is None:
        return scores
    return scores.sub_(lse.unsqueeze(-1)).exp_()


class ChunkedAttention(torch.autograd.Function):
    """Attention with an additive bias that needs a gradient, in memory linear in tokens.

    The flash-attention bookkeeping (Dao et al., 2022) over windows instead of
    key blocks: T is small (at most a few hundred tokens), so each window's
    scores fit at once and only the windows are chunked. Forward keeps the
    output and the log-sum-exp ``L`` of each query's scores; backward
    recomputes ``P = exp(S - L)`` per chunk and uses
    ``dS = P * (dP - rowsum(dO * O))`` with ``dP = dO V^T``; the bias gradient
    is ``dS`` summed over windows. Scores, softmax and bias gradient are fp32
    whatever the inputs' dtype.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias):
        out = torch.empty(q.shape[:-1] + v.shape[-1:], dtype=v.dtype, device=v.device)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        for s in _window_chunks(q):
            scores = _probabilities(q[s], k[s], bias)
            lse[s] = torch.logsumexp(scores, dim=-1)
            out[s] = scores.sub_(lse[s].unsqueeze(-1)).exp_().to(v.dtype) @ v[s]
        ctx.save_for_backward(q, k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out, lse = ctx.saved_tensors
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        scale = q.shape[-1] ** -0.5
        for s in _window_chunks(q):
            probs = _probabilities(q[s], k[s], bias, lse[s])
            d_out = grad_out[s]
            grad_v[s] = probs.to(v.dtype).transpose(-1, -2) @ d_out
            delta = (d_out.float() * out[s].float()).sum(-1, keepdim=True)
            d_scores = probs.mul_((d_out @ v[s].transpose(-1, -2)).float().sub_(delta))
            grad_bias += d_scores.sum(0)
            d_scores = d_scores.mul_(scale).to(q.dtype)
            grad_q[s] = d_scores @ k[s]
            grad_k[s] = d_scores.transpose(-1, -2) @ q[s]
        return grad_q, grad_k, grad_v, grad_bias.to(bias.dtype)


def attend(attention: SelfAttention, x: torch.Tensor, size: Size2, across_windows: bool, **kwargs) -> torch.Tensor:
    """Run ``attention`` over the grid partition of ``x`` (B, H, W, C) with grid ``size``
    (``across_windows=True``) or its block partition with window ``size``."""
    partition, unpartition = PARTITIONS["grid" if across_windows else "block"]
    sets = per_set(partition(x, size), x.shape[0])  # (B, n, T, C)
    return unpartition(tokens_first(attention(sets, **kwargs)), x.shape, size).reshape(x.shape)


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
        self.in_project = dense(channels, 2 * channels, use_bias, then_gelu=True)
        self.grid = SelfAttention(channels, grid_size, use_bias)
        self.block = SelfAttention(channels, block_size, use_bias)
        self.out_project = dense(2 * channels, channels, use_bias)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.in_project(self.norm(x)).chunk(2, dim=-1)
        u = attend(self.grid, u, self.grid_size, True)
        v = attend(self.block, v, self.block_size, False)
        return self.dropout(self.out_project(torch.cat([u, v], dim=-1)))


def build(channels: int, level: Level) -> MultiAxisAttention:
    return MultiAxisAttention(channels, level.block_size, level.grid_size, level.dropout_rate, level.use_bias)


def build_gate(channels: int, level: Level) -> MultiAxisAttentionGate:
    return MultiAxisAttentionGate(channels, level.block_size, level.grid_size, level.dropout_rate, level.use_bias)
