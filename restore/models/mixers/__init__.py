"""Spatial mixers that replace MAXIM's multi-axis gated MLP (MAB) in the same UNet.

``MAXIM(mixer=..., block=...)`` picks them; each is a drop-in for the MAB:
channels-last (B, H, W, C) -> same shape, residual inside, working on the
level's fixed-size blocks and grid so cost stays linear in pixels.

=========  ==========================================================  ==========================
mixer      spatial mixing in encoder / decoder / bottleneck             cross-gating weights
=========  ==========================================================  ==========================
gmlp       official MAXIM multi-axis gated MLP (parity-exact)           official gMLP (Dense)
attention  MaxViT multi-axis attention: block then grid, each + FFN    multi-axis attention
mixing     MixFormer mixing block: window attention || 3x3 DW conv     official gMLP (Dense)
=========  ==========================================================  ==========================

``block=maxvit`` (with ``mixer=attention``) turns each (MAB, RCAB) group into
a MaxViT block (MBConv + block attention + grid attention, each with FFN):
a MaxViT-UNet inside MAXIM's multi-stage, cross-gated frame.

Cross-gating blocks (CGB) gate one feature with multi-axis spatial weights
computed from another. For the attention family MaxViT's substitution
applies directly (the same block/grid split with attention in place of the
token-mixing Dense), so their CGBs use :class:`MultiAxisAttentionGate` and the
model contains no gMLP at all. MixFormer defines no gating and no global
axis: a windowed mixing gate would drop the CGB's grid (global) branch and
change two things at once, so ``mixing`` keeps the official gMLP weights and
the ablation isolates the MAB.

MAXIM fields that only the gMLP reads (``block_gmlp_factor``,
``grid_gmlp_factor``, ``input_proj_factor``) and the RCAB's ``lrelu_slope``
under ``block=maxvit`` warn when set to non-default values they cannot reach.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from torch import nn

from restore.models.mixers.attention import MultiAxisAttention, MultiAxisAttentionGate
from restore.models.mixers.maxvit import MaxViTBlock
from restore.models.mixers.mixing import MixingBlock

if TYPE_CHECKING:
    from restore.models.maxim import BlockConfig

MIXERS = ("gmlp", "attention", "mixing")
BLOCKS = ("maxim", "maxvit")
ATTENTION_GATED = ("attention",)

__all__ = [
    "ATTENTION_GATED",
    "BLOCKS",
    "MIXERS",
    "MaxViTBlock",
    "MixingBlock",
    "MultiAxisAttention",
    "MultiAxisAttentionGate",
    "build_mixer",
    "check_mixer_config",
]


def check_mixer_config(
    mixer: str,
    block: str,
    *,
    features: int,
    use_global_mlp: bool,
    gmlp_fields: dict[str, int],
    lrelu_slope: float,
) -> None:
    """Reject a ``mixer``/``block`` choice MAXIM cannot build, with the fix; warn about unused fields."""
    if mixer not in MIXERS:
        raise ValueError(f"MAXIM: mixer must be one of {', '.join(MIXERS)}; got {mixer!r}")
    if block not in BLOCKS:
        raise ValueError(f"MAXIM: block must be one of {', '.join(BLOCKS)}; got {block!r}")
    if block == "maxvit" and mixer != "attention":
        raise ValueError(f"MAXIM: block=maxvit is built from multi-axis attention; set mixer=attention (got {mixer!r})")
    if block == "maxvit" and not use_global_mlp:
        raise ValueError("MAXIM: block=maxvit needs use_global_mlp=true (false would drop every MaxViT block)")
    if mixer == "mixing" and features % 2:
        raise ValueError(f"MAXIM: mixer=mixing splits channels in halves; features must be even, got {features}")
    if mixer != "gmlp":
        unused = [f"{name}={value}" for name, value in gmlp_fields.items() if value != 2]
        if unused:
            warnings.warn(
                f"MAXIM: {', '.join(unused)} only affect mixer=gmlp; mixer={mixer} ignores them", stacklevel=3
            )
    if block == "maxvit" and lrelu_slope != 0.2:
        warnings.warn(f"MAXIM: lrelu_slope={lrelu_slope} only reaches RCABs, which block=maxvit replaces", stacklevel=3)


def build_mixer(cfg: BlockConfig, channels: int) -> nn.Module:
    """The non-gMLP spatial mixer (or MaxViT block) ``cfg`` asks for, at ``channels`` channels."""
    if cfg.block == "maxvit":
        return MaxViTBlock(
            channels, cfg.block_size, cfg.grid_size, cfg.channels_reduction, cfg.dropout_rate, cfg.use_bias
        )
    if cfg.mixer == "attention":
        return MultiAxisAttention(channels, cfg.block_size, cfg.grid_size, cfg.dropout_rate, cfg.use_bias)
    if cfg.mixer == "mixing":
        return MixingBlock(channels, cfg.block_size, cfg.dropout_rate, cfg.use_bias)
    raise ValueError(f"no spatial mixer named {cfg.mixer!r} (one of {', '.join(MIXERS)})")
