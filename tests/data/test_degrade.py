"""Each synthetic degradation does what it claims, measured; all are reproducible from a seed."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from restore.data.degrade import DEGRADATIONS, build_degradation


def _flat(value=0.5, shape=(2, 3, 128, 128)) -> torch.Tensor:
    return torch.full(shape, value)


def _photo_like(shape=(2, 3, 48, 64)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_gaussian_noise_has_the_requested_sigma_on_the_255_scale(sigma):
    clean = _flat()
    noisy = build_degradation({"name": "gaussian_noise", "sigma": sigma})(clean, seed=0)
    measured = (noisy - clean).std().item() * 255
    assert abs(measured - sigma) / sigma < 0.05
    assert abs((noisy - clean).mean().item()) * 255 < 0.05 * sigma
    if sigma == 50:  # added in float and not clipped, as the literature scores it
        assert noisy.max() > 1 and noisy.min() < 0


def test_gaussian_noise_sigma_range_is_drawn_per_image_and_reported():
    clean = _flat(shape=(6, 3, 96, 96))
    noisy, params = build_degradation({"name": "gaussian_noise", "sigma": [5, 50]}).degrade(clean, seed=1)
    assert ((params["sigma"] >= 5) & (params["sigma"] <= 50)).all() and params["sigma"].std() > 1
    measured = (noisy - clean).flatten(1).std(dim=1) * 255
    torch.testing.assert_close(measured, params["sigma"], rtol=0.05, atol=0)


def test_photo_noise_is_the_protocol_noise_clipped_and_rounded_to_8_bits():
    clean = _photo_like(shape=(64, 3, 16, 16))
    float_noisy = build_degradation({"name": "gaussian_noise", "sigma": 50})(clean, seed=3)
    photos = build_degradation({"name": "gaussian_noise", "sigma": 50, "photo": 1.0})(clean, seed=3)
    torch.testing.assert_close(photos, (float_noisy.clamp(0, 1) * 255).round() / 255, rtol=0, atol=1e-6)
    mixed, params = build_degradation({"name": "gaussian_noise", "sigma": 50, "photo": 0.5}).degrade(clean, seed=3)
    saved = params["photo"]
    assert 16 < int(saved.sum()) < 48  # about half of the 64 images
    assert mixed[saved].min() >= 0 and mixed[saved].max() <= 1
    assert torch.equal(mixed[saved] * 255, (mixed[saved] * 255).round())
    torch.testing.assert_close(mixed[~saved], clean[~saved] + params["noise"][~saved])
    assert mixed[~saved].max() > 1  # the others stay float, unclipped


def test_poisson_gaussian_noise_variance_follows_the_signal():
    peak, sigma = 50.0, 5.0
    degradation = build_degradation({"name": "poisson_gaussian_noise", "peak": peak, "sigma": sigma})
    for level in (0.2, 0.8):
        clean = _flat(level)
        residual = degradation(clean, seed=2) - clean
        expected = (level / peak + (sigma / 255) ** 2) ** 0.5
        assert abs(residual.std().item() - expected) / expected < 0.05
        assert abs(residual.mean().item()) < 0.05 * expected


def _delta(size=41, batch=2) -> torch.Tensor:
    image = torch.zeros(batch, 1, size, size)
    image[:, :, size // 2, size // 2] = 1
    return image


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "motion_blur", "kernel_size": [9, 15], "angle": [0, 180], "direction": [-1, 1]},
        {"name": "defocus_blur", "radius": [1.5, 4]},
    ],
)
def test_blur_turns_a_delta_image_into_its_kernel(spec):
    delta = _delta()
    blurred, params = build_degradation(spec).degrade(delta, seed=3)
    kernels = params["kernel"]  # (B, k, k)
    half, center = kernels.shape[-1] // 2, delta.shape[-1] // 2
    window = blurred[:, 0, center - half : center + half + 1, center - half : center + half + 1]
    torch.testing.assert_close(window, kernels, atol=1e-6, rtol=0)
    assert blurred.sum(dim=(1, 2, 3)).sub(1).abs().max() < 1e-5  # nothing outside the kernel
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(2))
    assert not torch.equal(kernels[0], kernels[1])  # a random kernel per image


def test_defocus_kernel_is_a_disk_of_the_drawn_radius():
    _, params = build_degradation({"name": "defocus_blur", "radius": 3}).degrade(_delta(batch=1), seed=0)
    kernel = params["kernel"][0]
    for same in (kernel.flip(0), kernel.flip(1), kernel.T):
        torch.testing.assert_close(kernel, same)
    k = kernel.shape[0] // 2
    assert kernel[k, k + 3] > 0 and kernel[k, k + 4] == 0 and kernel[k, k] == kernel.max()


def test_motion_kernel_is_a_line_at_the_drawn_angle():
    _, params = build_degradation({"name": "motion_blur", "kernel_size": 11, "angle": 90, "direction": 0}).degrade(
        _delta(batch=1), seed=0
    )
    kernel = params["kernel"][0]
    column = kernel.shape[1] // 2
    assert kernel[:, column].sum() > 0.9  # angle 90: a vertical line


def test_haze_follows_the_scattering_model_for_the_transmission_it_reports():
    clean = _photo_like()
    hazy, params = build_degradation({"name": "haze", "beta": [0.8, 1.6], "airlight": [0.7, 0.9]}).degrade(
        clean, seed=4
    )
    t, airlight = params["transmission"], params["airlight"]
    torch.testing.assert_close(hazy, clean * t + airlight * (1 - t), atol=1e-6, rtol=0)
    torch.testing.assert_close(t, torch.exp(-params["beta"].view(-1, 1, 1, 1) * params["depth"]))
    assert t.shape == (2, 1, 48, 64) and ((params["depth"] >= 0) & (params["depth"] <= 1)).all()
    assert ((airlight >= 0.7) & (airlight <= 0.9)).all()
    assert t[:, :, :8].mean() < t[:, :, -8:].mean()  # the top of the photo is farther: hazier


def test_rain_screen_blends_near_vertical_streaks():
    clean = _photo_like(shape=(2, 3, 96, 96))
    rainy, params = build_degradation({"name": "rain", "angle": 0, "length": 21, "density": 0.01}).degrade(
        clean, seed=5
    )
    rain = params["rain"]
    assert rain.shape == (2, 1, 96, 96) and rain.min() >= 0 and rain.max() <= 1 and rain.max() > 0.4
    torch.testing.assert_close(rainy, clean + rain * (1 - clean), atol=1e-6, rtol=0)
    along = (rain[..., 1:, :] - rain[..., :-1, :]).abs().mean()  # vertical differences
    across = (rain[..., :, 1:] - rain[..., :, :-1]).abs().mean()
    assert along < 0.5 * across  # streaks run vertically


def test_low_light_reduces_exposure_and_gamma_as_reported():
    clean = _photo_like()
    spec = {"name": "low_light", "exposure": [0.1, 0.3], "gamma": [1.5, 2.5], "sigma": 0, "quantize": False}
    dark, params = build_degradation(spec).degrade(clean, seed=6)
    expected = params["exposure"].view(-1, 1, 1, 1) * clean ** params["gamma"].view(-1, 1, 1, 1)
    torch.testing.assert_close(dark, expected)
    assert dark.mean() < 0.3 * clean.mean()
    quantized = build_degradation({"name": "low_light"})(clean, seed=6)
    torch.testing.assert_close(quantized * 255, torch.round(quantized * 255))


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_every_degradation_is_reproducible_from_a_seed_and_keeps_the_shape(name):
    degradation = build_degradation(name)
    clean = _photo_like(shape=(3, 3, 40, 48))
    first, again = degradation(clean, seed=7), degradation(clean, seed=7)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    from_generator = degradation(clean, torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, from_generator, rtol=0, atol=0)
    assert first.shape == clean.shape and not torch.equal(first, clean)
    assert not torch.equal(first, degradation(clean, seed=8))
    single = degradation(clean[0], seed=7)  # (C, H, W) works too
    assert single.shape == clean[0].shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_every_degradation_runs_on_the_gpu(name):
    clean = _photo_like().cuda()
    out = build_degradation(name)(clean, seed=0)
    assert out.device == clean.device and out.shape == clean.shape


def test_spec_from_a_yaml_config_builds_the_same_degradation():
    from_yaml = build_degradation(OmegaConf.create("{name: gaussian_noise, sigma: [10, 20]}"))
    from_python = build_degradation({"name": "gaussian_noise", "sigma": (10, 20)})
    assert from_yaml == from_python


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "snow"}, r"unknown degradation 'snow'; known degradations: gaussian_noise, poisson_gaussian_noise"),
        ({"sigma": 25}, r"unknown degradation None; known degradations: gaussian_noise"),
        (
            {"name": "gaussian_noise", "sigmaa": 25},
            r"gaussian_noise has no parameter sigmaa; its parameters: sigma, clip, photo",
        ),
        ({"name": "gaussian_noise", "photo": 2}, r"gaussian_noise\.photo must be a fraction in \[0, 1\], got 2"),
        ({"name": "gaussian_noise", "sigma": -5}, r"gaussian_noise\.sigma must lie in \[0, 255\]"),
        ({"name": "gaussian_noise", "sigma": [30, 10]}, r"gaussian_noise\.sigma must be a number or \[low, high\]"),
        ({"name": "motion_blur", "kernel_size": [4, 4]}, r"motion_blur\.kernel_size .* contains no odd size"),
        ("blizzard", r"unknown degradation 'blizzard'"),
        (25, r"a degradation spec is a dict with a 'name'"),
    ],
)
def test_bad_degradation_specs_get_one_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        build_degradation(spec)
