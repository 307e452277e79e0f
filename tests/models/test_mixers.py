"""The multi-axis mixer family: MaxViT attention, MixFormer mixing and the MaxViT block
as drop-ins for MAXIM's MAB (restore/models/mixers)."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from restore.inference import forward_padded
from restore.models import MAXIM, CheckpointError
from restore.models.convert import official_state_dict
from restore.models.layers import RCAB, RDCAB, layer_norm
from restore.models.loading import load_preset
from restore.models.mixers import MIXERS, MixerFamily, channel_attention, gmlp
from restore.models.mixers.attention import (
    MultiAxisAttention,
    MultiAxisAttentionGate,
    PartitionAttentionLayer,
    SelfAttention,
)
from restore.models.mixers.gmlp import MultiAxisGmlpBlock, SpatialGatingWeights
from restore.models.mixers.maxvit import MaxViTBlock
from restore.models.mixers.mixing import MixingBlock
from restore.models.partition import (
    block_partition,
    block_unpartition,
    grid_partition,
    grid_unpartition,
    per_set,
    tokens_first,
)
from tests.helpers import ROOT, TINY_MAXIM

# Every non-official choice; mixer=gmlp is covered by test_maxim.py and test_parity.py.
VARIANTS = {
    "attention": {"mixer": "attention"},
    "mixing": {"mixer": "mixing"},
    "maxvit": {"mixer": "attention", "block": "maxvit"},
}
PRESETS = {
    "maxim_2s_attention": ("attention", "maxim"),
    "maxim_2s_mixing": ("mixing", "maxim"),
    "maxvit_unet_2s": ("attention", "maxvit"),
}


def tiny(variant: str, **overrides) -> MAXIM:
    torch.manual_seed(0)
    return MAXIM(**{**TINY_MAXIM, **VARIANTS[variant], **overrides})


# --- any size, gradients everywhere, linear cost ------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_shape_equals_input_shape_at_any_size(variant):
    # One stage keeps it cheap and still has every module kind but the stage-input fusion.
    model = tiny(variant, num_stages=1).eval()
    with torch.no_grad():
        for h, w in [(64, 64), (100, 150)]:
            x = torch.rand(1, 3, h, w)
            y = forward_padded(model, x)
            assert y.shape == x.shape
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_backward_reaches_every_parameter(variant):
    # channels_reduction=1: the RCABs' squeeze-excitation has ReLU units, and with 8 features and
    # reduction 4 there are only two of them, which can both be dead at init (a zero gradient by
    # design, see test_maxim.py). The mixers themselves use GELU/SiLU/sigmoid only, which have no
    # dead zone, and every bottleneck width is at least one unit.
    model = tiny(variant, channels_reduction=1)
    outputs = model(torch.rand(1, 3, 16, 32))
    sum(o.square().mean() for stage in outputs for o in stage).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().max() > 0, f"{name} has an all-zero gradient"


def count_flops(model: torch.nn.Module, *shape: int) -> int:
    """FLOPs of one forward; on the meta device, so only shapes are computed (same count as CPU)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(*shape, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_flops_grow_linearly_with_pixels(variant):
    with torch.device("meta"):
        model = MAXIM(**{**TINY_MAXIM, **VARIANTS[variant], "num_stages": 1})
    small, large = count_flops(model, 1, 3, 256, 256), count_flops(model, 1, 3, 512, 512)
    assert small > 0
    assert large / small == pytest.approx(4.0, rel=0.05)


def test_meta_flop_count_equals_the_cpu_count_attention_included():
    with torch.device("meta"):
        meta = MAXIM(**{**TINY_MAXIM, "mixer": "attention"})
    model = tiny("attention")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 16, 32))
    assert counter.get_total_flops() == count_flops(meta, 1, 3, 16, 32) > 0


def test_flop_counter_counts_the_attention_products():
    # SDPA's two batched products (Q K^T and A V) must be in the count, not only the projections.
    b, n, t, c = 2, 3, 16, 8
    attention = SelfAttention(c, (4, 4), heads=2)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        attention(torch.rand(b, n, t, c))
    qkv = 2 * (b * n * t) * c * (3 * c)
    products = 2 * (2 * (b * n) * t * t * c)  # per head t x t x c/heads, summed over heads
    assert counter.get_total_flops() == qkv + products


# --- grid attention is global, block attention local --------------------------------------------


def influence(layer: torch.nn.Module, x: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
    """(H, W): how much each output pixel changes when one input pixel changes."""
    bumped = x.clone()
    # Not a constant bump: LayerNorm would remove it before attention sees it.
    bumped[0, pixel[0], pixel[1]] += torch.linspace(-1.0, 1.0, x.shape[-1])
    with torch.no_grad():
        return (layer(bumped) - layer(x)).abs().amax(-1)[0]


def assert_reaches_exactly(change: torch.Tensor, region: torch.Tensor) -> None:
    assert (change[region] > 1e-3).all(), "a pixel of the region did not change"
    assert (change[~region] == 0).all(), "a pixel outside the region changed"


ROWS, COLS = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")


@pytest.fixture
def axes():
    """One block attention layer (4 x 4 windows) and one grid attention layer (a 2 x 2 grid:
    a grid group is the pixels H/G = 8 rows and W/G = 8 columns apart) on 16 x 16 maps."""
    torch.manual_seed(0)
    block = PartitionAttentionLayer(8, (4, 4), across_windows=False)
    grid = PartitionAttentionLayer(8, (2, 2), across_windows=True)
    for p in itertools.chain(block.parameters(), grid.parameters()):
        torch.nn.init.normal_(p, std=0.5)  # larger than at init: every dependence shows far above rounding
    return block, grid, torch.randn(1, 16, 16, 8)


def test_grid_attention_reaches_the_pixels_h_over_g_apart_and_block_attention_does_not(axes):
    block, grid, x = axes
    change = influence(grid, x, (5, 6))
    assert change[5 + 8, 6] > 1e-3 and change[5 + 8, 6 + 8] > 1e-3  # H/G rows (and W/G columns) away
    assert_reaches_exactly(change, (ROWS % 8 == 5) & (COLS % 8 == 6))
    assert influence(block, x, (5, 6))[5 + 8, 6] == 0


def test_block_attention_reaches_its_window_and_grid_attention_does_not(axes):
    block, grid, x = axes
    change = influence(block, x, (5, 6))
    assert change[6, 6] > 1e-3 and change[4, 7] > 1e-3  # neighbours in the same 4 x 4 window
    assert_reaches_exactly(change, (ROWS // 4 == 1) & (COLS // 4 == 1))
    assert influence(grid, x, (5, 6))[6, 6] == 0  # another grid group


def test_partitions_round_trip_and_group_the_documented_pixels():
    x = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 8, 12, 1)
    blocks = per_set(block_partition(x, (2, 3)), batch=2)  # 4 x 4 windows of 2 x 3
    grid = per_set(grid_partition(x, (2, 3)), batch=2)  # a 2 x 3 grid of 4 x 4 windows
    assert blocks.shape == (2, 16, 6, 1) and grid.shape == (2, 16, 6, 1)
    assert blocks[0, 1, :, 0].tolist() == [3, 4, 5, 15, 16, 17]  # window (0, 1), row-major
    assert grid[0, 1, :, 0].tolist() == [1, 5, 9, 49, 53, 57]  # offset (0, 1), stride (4, 4)
    assert blocks[1, 0, :, 0].tolist() == [96, 97, 98, 108, 109, 110]  # the second image's first window
    assert torch.equal(block_unpartition(tokens_first(blocks), x.shape, (2, 3)).reshape(x.shape), x)
    assert torch.equal(grid_unpartition(tokens_first(grid), x.shape, (2, 3)).reshape(x.shape), x)


# --- MaxViT's relative position bias ------------------------------------------------------------


def test_relative_bias_table_has_maxvits_size_per_head():
    mixer = MultiAxisAttention(64, block_size=(8, 8), grid_size=(4, 4))
    assert mixer.block.attention.heads == 2  # head size 32
    assert mixer.block.attention.relative_bias.table.shape == (2, 15, 15)  # (2P-1)^2 per head
    assert mixer.grid.attention.relative_bias.table.shape == (2, 7, 7)  # (2G-1)^2 per head
    assert SelfAttention(8, (3, 2), heads=2).relative_bias.table.shape == (2, 5, 3)  # non-square window


def test_relative_bias_reads_the_table_at_key_minus_query():
    attention = SelfAttention(4, (2, 3), heads=2)
    table = attention.relative_bias.table.detach()
    bias = attention.relative_bias()
    coords = [(y, x) for y in range(2) for x in range(3)]  # row-major tokens
    for h in range(2):
        for q, (yq, xq) in enumerate(coords):
            for k, (yk, xk) in enumerate(coords):
                assert bias[h, q, k] == table[h, yk - yq + 1, xk - xq + 2]


def test_attention_equals_a_direct_softmax_with_the_bias():
    torch.manual_seed(0)
    attention = SelfAttention(4, (2, 3), heads=2)
    tokens = torch.randn(2, 3, 6, 4)
    q, k, v = attention.qkv(tokens).chunk(3, dim=-1)
    bias = attention.relative_bias()
    heads = []
    for h in range(2):
        s = slice(2 * h, 2 * h + 2)
        logits = q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(2) + bias[h]
        heads.append(logits.softmax(-1) @ v[..., s])
    torch.testing.assert_close(attention(tokens), torch.cat(heads, dim=-1), rtol=1e-5, atol=1e-6)


# --- the model: configuration, presets, converter -----------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mixer": "transformer"}, "mixer must be one of gmlp, attention, mixing; got 'transformer'"),
        ({"block": "swin"}, "block must be one of maxim, maxvit; got 'swin'"),
        ({"block": "maxvit"}, "block=maxvit is built from multi-axis attention; set mixer=attention"),
        ({"mixer": "attention", "block": "maxvit", "use_global_mlp": False}, "needs use_global_mlp=true"),
        ({"mixer": "mixing", "features": 9}, "features must be even, got 9"),
    ],
)
def test_bad_mixer_choices_are_named_with_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        MAXIM(**{**TINY_MAXIM, **overrides})


def test_gmlp_only_fields_warn_when_another_mixer_ignores_them():
    with pytest.warns(UserWarning, match="block_gmlp_factor=4 only affect mixer=gmlp; mixer=attention ignores"):
        MAXIM(**{**TINY_MAXIM, "mixer": "attention", "block_gmlp_factor": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MAXIM(**{**TINY_MAXIM, "mixer": "attention"})


@pytest.mark.parametrize(
    "variant, mixer_class, gate_class, channel_blocks",
    [
        ("attention", MultiAxisAttention, MultiAxisAttentionGate, (RCAB, RDCAB)),
        ("mixing", MixingBlock, SpatialGatingWeights, (RCAB, RDCAB)),
        ("maxvit", MaxViTBlock, MultiAxisAttentionGate, ()),
    ],
)
def test_every_mab_and_gate_is_replaced_by_the_chosen_kind(variant, mixer_class, gate_class, channel_blocks):
    def count(model: MAXIM, *classes) -> int:
        return sum(isinstance(m, classes) for m in model.modules()) if classes else 0

    official, model = MAXIM(**TINY_MAXIM), tiny(variant)
    assert count(official, MultiAxisGmlpBlock) == 14  # 2 stages x (3 encoders + 3 decoders + 1 bottleneck)
    assert count(official, SpatialGatingWeights) == 24  # 12 cross-gating blocks x 2 gates
    assert count(model, mixer_class) == 14 and count(model, MultiAxisGmlpBlock) == 0
    assert count(model, gate_class) == 24
    assert count(model, *channel_blocks) == count(official, RCAB, RDCAB) * bool(channel_blocks)
    assert MAXIM(**model.config.as_dict()).config == model.config  # the new fields round-trip through config


class DepthwiseMixer(nn.Module):
    """The mixer of docs/mixers.md, "Adding a mixer"."""

    def __init__(self, channels: int, use_bias: bool = True):
        super().__init__()
        self.norm = layer_norm(channels)
        self.conv = nn.Conv2d(channels, channels, 5, padding=2, groups=channels, bias=use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def test_a_new_mixer_is_one_registry_entry(monkeypatch):
    family = MixerFamily(
        "mixer=dwconv", lambda c, level: DepthwiseMixer(c, level.use_bias), gmlp.build_gate, channel_attention
    )
    monkeypatch.setitem(MIXERS, "dwconv", family)
    model = MAXIM(**{**TINY_MAXIM, "mixer": "dwconv"})
    assert sum(isinstance(m, DepthwiseMixer) for m in model.modules()) == 14  # every MAB's place
    assert sum(isinstance(m, SpatialGatingWeights) for m in model.modules()) == 24
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 64))[-1][-1].shape == (1, 3, 32, 64)


def test_official_checkpoints_refuse_other_mixers_with_a_clear_error():
    with pytest.raises(CheckpointError, match="mixer=mixing, block=maxim cannot load them"):
        official_state_dict(tiny("mixing"), {})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_maxim_2s_with_another_mixer(name):
    preset, official = load_preset(name), load_preset("maxim_2s")
    mixer, block = PRESETS[name]
    assert (preset.mixer, preset.block) == (mixer, block)
    assert {k: v for k, v in preset.items() if k not in ("mixer", "block")} == {
        k: v for k, v in official.items() if k not in ("mixer", "block")
    }
    model = instantiate(OmegaConf.merge(preset, {"features": 8, "num_groups": 1, "num_bottleneck_blocks": 1}))
    assert (model.config.mixer, model.config.block) == (mixer, block)


# --- the ablation recipe -------------------------------------------------------------------------


@pytest.fixture
def train_config_dir(tmp_path):
    """Our model presets and the ablation experiment under a stand-in for train.yaml's groups."""
    for group in ("model", "experiment"):
        (tmp_path / group).mkdir()
        for preset in (ROOT / "conf" / group).glob("*.yaml"):
            (tmp_path / group / preset.name).write_text(preset.read_text())
    for group, name in (("data", "demo"), ("trainer", "cpu"), ("logger", "csv")):
        (tmp_path / group).mkdir()
        (tmp_path / group / f"{name}.yaml").write_text("{}\n")
    defaults = ["model: maxim_2s", "data: demo", "trainer: cpu", "logger: csv", "experiment: null", "_self_"]
    (tmp_path / "train.yaml").write_text("defaults:\n" + "".join(f"  - {d}\n" for d in defaults))
    return tmp_path


def test_ablation_gives_each_mixer_its_matched_width_and_budget(train_config_dir):
    counts, recipes = {}, set()
    for model in ["maxim_2s", *sorted(PRESETS)]:
        with initialize_config_dir(config_dir=str(train_config_dir), version_base=None):
            cfg = compose("train", overrides=["experiment=ablation_mixer", f"model={model}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        assert cfg.model.features == cfg.ablation.features[model]
        recipes.add((cfg.data.patch_size, cfg.data.batch_size, cfg.trainer.max_steps))
        with torch.device("meta"):
            counts[model] = sum(p.numel() for p in instantiate(cfg.model).parameters())
    assert len(recipes) == 1  # one recipe for every run
    assert counts["maxim_2s"] == 5_043_770
    for model, count in counts.items():
        assert count == pytest.approx(counts["maxim_2s"], rel=0.05), model


def test_full_size_presets_have_the_documented_parameter_counts():
    documented = {"maxim_2s_attention": 15_207_378, "maxim_2s_mixing": 12_591_554, "maxvit_unet_2s": 14_880_210}
    for name, count in documented.items():
        preset = load_preset(name)
        with torch.device("meta"):
            assert sum(p.numel() for p in instantiate(preset).parameters()) == count, name
