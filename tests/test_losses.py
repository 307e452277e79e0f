"""The multi-stage multi-scale loss against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.losses import MultiStageLoss, charbonnier, fft_l1


def numpy_loss(outputs, targets_per_scale, fft_weight=0.1, eps=1e-3):
    """The paper's definition written directly in float64 numpy."""
    total = 0.0
    for stage in outputs:
        for pred in stage:
            target = targets_per_scale[pred.shape[-1]]
            d = pred.astype(np.float64) - target
            total += np.mean(np.sqrt(d**2 + eps**2))
            spectrum = np.fft.fft2(pred.astype(np.float64)) - np.fft.fft2(target)  # over the last two axes
            total += fft_weight * (np.abs(spectrum.real).sum() + np.abs(spectrum.imag).sum()) / (2 * pred.size)
    return total


def random_outputs(rng, stages=3, batch=2, size=32):
    sizes = [size // 4, size // 2, size]  # coarsest first, as MAXIM returns them
    return [[rng.random((batch, 3, s, s), dtype=np.float32) for s in sizes] for _ in range(stages)]


def test_loss_matches_numpy_with_nearest_targets():
    rng = np.random.default_rng(0)
    outputs = random_outputs(rng)
    target = rng.random((2, 3, 32, 32), dtype=np.float32)
    # nearest-exact at /2 and /4 samples rows 1,3,5.. and 2,6,10.. (jax 'nearest')
    targets = {
        32: target.astype(np.float64),
        16: target[..., 1::2, 1::2].astype(np.float64),
        8: target[..., 2::4, 2::4].astype(np.float64),
    }
    loss, parts = MultiStageLoss(target_resize="nearest-exact")(
        [[torch.from_numpy(o) for o in stage] for stage in outputs], torch.from_numpy(target)
    )
    assert loss.item() == pytest.approx(numpy_loss(outputs, targets), abs=1e-5)
    assert sorted(parts) == ["stage0", "stage1", "stage2"]
    assert sum(parts.values()).item() == pytest.approx(loss.item(), rel=1e-6)


def antialiased_half(n: int) -> np.ndarray:
    """JAX/torch antialiased bilinear /2 as an (n/2, n) matrix, from its definition:
    a triangle of half-width 2 input pixels centred at 2i + 0.5, renormalised at borders."""
    centres = 2 * np.arange(n // 2) + 0.5
    weights = np.maximum(0.0, 1 - np.abs(np.arange(n)[None, :] - centres[:, None]) / 2)
    return weights / weights.sum(axis=1, keepdims=True)


def test_bilinear_targets_use_the_antialiased_triangle_filter():
    rng = np.random.default_rng(1)
    target = rng.random((1, 3, 16, 16), dtype=np.float32)
    m = antialiased_half(16)
    half = np.einsum("ih,nchw,jw->ncij", m, target.astype(np.float64), m)
    outputs = [[rng.random((1, 3, 8, 8), dtype=np.float32), rng.random((1, 3, 16, 16), dtype=np.float32)]]
    loss, _ = MultiStageLoss()([[torch.from_numpy(o) for o in outputs[0]]], torch.from_numpy(target))
    assert loss.item() == pytest.approx(numpy_loss(outputs, {16: target.astype(np.float64), 8: half}), abs=1e-5)


def test_charbonnier_of_identical_images_is_eps():
    x = torch.rand(1, 3, 8, 8)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    assert fft_l1(x, x).item() == 0.0


def test_gradient_is_finite_under_bf16_autocast(tiny_maxim):
    x, target = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = tiny_maxim(x)
        loss, _ = MultiStageLoss()(outputs, target)
    assert loss.dtype == torch.float32
    loss.backward()
    grads = [p.grad for p in tiny_maxim.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_loss_settings_are_named():
    with pytest.raises(ValueError, match="target_resize must be 'bilinear' or 'nearest-exact'"):
        MultiStageLoss(target_resize="bicubic")
