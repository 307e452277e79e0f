"""The spatial mixers MAXIM can be built with, in one registry (docs/mixers.md).

Each entry of :data:`MIXERS` names the three modules a choice puts into the
network: the spatial mixer in the MAB's place, the gate of every cross-gating
block, and the channel block of each group. ``MaximConfig`` looks the entry up
once (``mixer``, or ``block`` when that replaces the whole group) and every
block of the network builds from it.

=========  ==========================================================  ==========================
name       spatial mixing in encoder / decoder / bottleneck             cross-gating weights
=========  ==========================================================  ==========================
gmlp       official MAXIM multi-axis gated MLP (parity-exact)           official gMLP (Dense)
attention  MaxViT multi-axis attention: block then grid, each + FFN    multi-axis attention
mixing     MixFormer mixing block: window attention || 3x3 DW conv     official gMLP (Dense)
maxvit     ``block=maxvit``: a whole MaxViT block per (MAB, RCAB) group  multi-axis attention
=========  ==========================================================  ==========================

For the attention family MaxViT's substitution applies to the gate directly
(the same block/grid split with attention in place of the token-mixing Dense),
so the model contains no gMLP at all. MixFormer defines no gating and no
global axis: a windowed mixing gate would drop the gate's grid (global) branch
and change two things at once, so ``mixing`` keeps the official gMLP gate and
the ablation isolates the MAB.
"""

from __future__ import annotations

from torch import nn

from restore.models.layers import RCAB, RDCAB
from restore.models.mixers import attention, gmlp, maxvit, mixing
from restore.models.mixers.base import Level, MixerFamily

# Names of the ``block`` field: "maxim" keeps MAXIM's (mixer, channel block) groups; any
# other is a registry entry that replaces the whole group.
BLOCKS = ("maxim", "maxvit")
GMLP_FIELDS = ("block_gmlp_factor", "grid_gmlp_factor", "input_proj_factor")


def channel_attention(channels: int, level: Level, bottleneck: bool) -> nn.Module:
    """MAXIM's channel block: RCAB in encoders and decoders, RDCAB in the bottleneck."""
    if bottleneck:
        return RDCAB(channels, level.channels_reduction, level.use_bias)
    return RCAB(channels, level.channels_reduction, level.lrelu_slope, level.use_bias)


def no_channel_block(channels: int, level: Level, bottleneck: bool) -> nn.Module:
    """For a spatial block that brings its own convolutions and squeeze-excitation (MBConv)."""
    return nn.Identity()


MIXERS = {
    "gmlp": MixerFamily("mixer=gmlp", gmlp.build, gmlp.build_gate, channel_attention),
    "attention": MixerFamily("mixer=attention", attention.build, attention.build_gate, channel_attention, GMLP_FIELDS),
    "mixing": MixerFamily("mixer=mixing", mixing.build, gmlp.build_gate, channel_attention, GMLP_FIELDS, mixing.check),
    "maxvit": MixerFamily(
        "block=maxvit",
        maxvit.build,
        attention.build_gate,
        no_channel_block,
        (*GMLP_FIELDS, "lrelu_slope"),
        maxvit.check,
    ),
}

__all__ = ["BLOCKS", "MIXERS", "Level", "MixerFamily"]
