"""MAXIM's structure: official parameter counts, any input size, linear cost, gradients."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from restore.inference import forward_padded
from restore.models import MAXIM
from restore.models.config import VARIANTS, MaximConfig
from restore.models.loading import build_preset, load_preset
from tests.helpers import ROOT, TINY_MAXIM

OFFICIAL_PARAMETERS = {"maxim_1s": 6_139_561, "maxim_2s": 14_176_178, "maxim_3s": 22_212_795}
# The official Model(variant=...) with its own default num_supervision_scales=1 (docs/model.md, "Counts").
OFFICIAL_VARIANT_PARAMETERS = {
    "S-1": 6_108_515,
    "S-2": 13_353_830,
    "S-3": 20_599_145,
    "M-1": 19_361_219,
    "M-2": 40_839_110,
    "M-3": 62_317_001,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMETERS))
def test_presets_have_the_official_parameter_count(name):
    model = build_preset(name)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS[name]


def test_named_variants_have_the_official_parameter_counts():
    assert sorted(VARIANTS) == sorted(OFFICIAL_VARIANT_PARAMETERS)
    for name, count in OFFICIAL_VARIANT_PARAMETERS.items():
        with torch.device("meta"):
            model = MAXIM(VARIANTS[name])
        assert model.config is VARIANTS[name]
        assert sum(p.numel() for p in model.parameters()) == count, name


def test_presets_compose_maxim_2s_and_state_only_what_differs():
    base = load_preset("maxim_2s")
    for name, line in {"maxim_1s": "num_stages: 1", "maxim_3s": "num_stages: 3"}.items():
        text = (ROOT / "conf" / "model" / f"{name}.yaml").read_text()
        fields = [row for row in text.splitlines() if row and not row.startswith(("#", " ", "defaults:"))]
        assert "  - maxim_2s" in text and fields == [line]
        assert load_preset(name) == OmegaConf.merge(base, OmegaConf.create(line))


def test_the_config_is_frozen_and_round_trips_through_its_fields(tiny_maxim):
    cfg = tiny_maxim.config
    assert MaximConfig(**cfg.as_dict()) == cfg and MAXIM(cfg).config is cfg
    with pytest.raises(AttributeError):
        cfg.features = 16
    assert cfg.level(0).block_size == (4, 8) and cfg.level(2).grid_size == cfg.block_size_lr


def test_forward_returns_every_stage_and_scale_coarsest_first(tiny_maxim):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        outputs = tiny_maxim(x)
    shapes = [[tuple(o.shape) for o in stage] for stage in outputs]
    expected = [(2, 3, 16, 16), (2, 3, 32, 32), (2, 3, 64, 64)]
    assert shapes == [expected, expected]
    assert MAXIM.final_output(outputs) is outputs[-1][-1]


def test_size_multiple_follows_block_and_grid_sizes(tiny_maxim):
    assert build_preset("maxim_3s").size_multiple == (64, 64)
    # heights: 2^3*2 (bottleneck), 4 and 8*2 (hr levels) -> 16; widths: 2^3*4 -> 32
    assert tiny_maxim.size_multiple == (16, 32)


def test_invalid_size_raises_a_clear_error(tiny_maxim):
    with pytest.raises(ValueError, match=r"100x150 is not a multiple of 16x32.*pad_to_multiple"):
        tiny_maxim(torch.rand(1, 3, 100, 150))
    with pytest.raises(ValueError, match=r"expects a \(B, 3, H, W\)"):
        tiny_maxim(torch.rand(1, 1, 64, 64))


def test_one_set_of_weights_restores_any_size():
    torch.manual_seed(0)
    model = build_preset("maxim_2s", features=8, num_groups=1, num_bottleneck_blocks=1).eval()
    with torch.no_grad():
        for h, w in [(64, 64), (100, 150), (321, 481)]:
            x = torch.rand(1, 3, h, w)
            y = forward_padded(model, x)
            assert y.shape == x.shape
            assert torch.isfinite(y).all()


def test_flops_grow_linearly_with_pixels():
    model = build_preset("maxim_1s", features=8, num_groups=1, num_bottleneck_blocks=1).eval()

    def flops(size: int) -> int:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.rand(1, 3, size, size))
        return counter.get_total_flops()

    small, large = flops(256), flops(512)
    assert small > 0
    assert large / small == pytest.approx(4.0, rel=0.05)


def test_one_backward_reaches_every_parameter():
    # With 8 features and reduction 4 a squeeze-excitation layer has only two
    # ReLU units, and at random init both can be dead (zero gradient by
    # design, not a broken graph); reduction 1 gives it eight.
    torch.manual_seed(0)
    model = MAXIM(**{**TINY_MAXIM, "channels_reduction": 1})
    outputs = model(torch.rand(2, 3, 32, 64))
    loss = sum(o.square().mean() for stage in outputs for o in stage)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().max() > 0, f"{name} has an all-zero gradient"


def test_variants_without_cross_gating_or_global_mlp_run():
    for overrides in ({"use_cross_gating": False}, {"use_global_mlp": False}, {"num_supervision_scales": 1}):
        model = MAXIM(**{**TINY_MAXIM, **overrides})
        outputs = model(torch.rand(1, 3, 32, 64))
        assert outputs[-1][-1].shape == (1, 3, 32, 64)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"features": 0}, "features must be a positive integer"),
        ({"block_size_hr": (4, 0)}, "block_size_hr must be a positive int or a pair"),
        ({"num_supervision_scales": 4}, "cannot exceed depth"),
        ({"dropout_rate": 1.5}, "dropout_rate must be in"),
    ],
)
def test_bad_config_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        MAXIM(**{**TINY_MAXIM, **overrides})
