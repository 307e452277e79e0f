"""Inference: the official padding, tiled inference, the x8 self-ensemble and autocast."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from restore.inference import (
    _tile_starts,
    crop,
    forward_count,
    forward_padded,
    native_bf16,
    pad_to_multiple,
    precision_name,
    reflect_pad,
    resolve_autocast,
    restore_image,
)
from tests.helpers import SHARED


def official_pad(image: np.ndarray, multiple: int) -> np.ndarray:
    """maxim/run_eval.py's steps, written independently with numpy: odd sizes get one
    reflected row/column at the bottom/right, then a centred reflect pad to the multiple."""
    h, w = image.shape[:2]
    image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="reflect")
    he, we = image.shape[:2]
    ph, pw = -he % multiple, -we % multiple
    return np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")


@pytest.mark.parametrize("size", [(321, 481), (100, 150), (64, 64), (7, 5), (1, 3)])
def test_pad_matches_official_numpy_padding(size):
    image = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    padded, box = pad_to_multiple(torch.from_numpy(image).permute(2, 0, 1)[None], 64)
    reference = official_pad(image, 64)
    np.testing.assert_array_equal(padded[0].permute(1, 2, 0).numpy(), reference)
    top, left, h, w = box
    # the official crop: top = H_pad//2 - H_even//2, then the ORIGINAL height
    he, we = size[0] + size[0] % 2, size[1] + size[1] % 2
    assert (top, left, h, w) == (reference.shape[0] // 2 - he // 2, reference.shape[1] // 2 - we // 2, *size)
    np.testing.assert_array_equal(crop(padded, box)[0].permute(1, 2, 0).numpy(), image)


def test_reflect_pad_larger_than_the_image_follows_numpy():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    got = reflect_pad(torch.from_numpy(x), 9, 4, 10, 7).numpy()
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (0, 0), (9, 4), (10, 7)), mode="reflect"))


def test_non_square_multiples_pad_each_axis_separately():
    padded, box = pad_to_multiple(torch.rand(2, 3, 20, 40), (16, 32))
    assert padded.shape == (2, 3, 32, 64)
    assert box == (6, 12, 20, 40)


def test_forward_padded_returns_the_input_size(tiny_maxim):
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = forward_padded(tiny_maxim.eval(), x)
        padded, box = pad_to_multiple(x, tiny_maxim.size_multiple)
        direct = crop(tiny_maxim(padded)[-1][-1], box)
    assert y.shape == x.shape
    assert torch.equal(y, direct)


# --- restore_image: tiling, self-ensemble, autocast -------------------------------------------

# One stage, two levels, 4x4 blocks and grids: the cheapest MAXIM that still has every kind
# of mixer (block and grid gMLP, cross-gating, channel attention), to run on whole photos.
# Its size multiple is 8x8.
MINI_MAXIM = dict(
    features=8,
    depth=2,
    num_stages=1,
    num_supervision_scales=1,
    block_size_hr=(4, 4),
    grid_size_hr=(4, 4),
    block_size_lr=(2, 2),
    grid_size_lr=(2, 2),
)


def photo_321x481() -> torch.Tensor:
    """A real 321 x 481 photo (CBSD68), or skimage's astronaut cropped to that size."""
    path = SHARED / "benchmarks" / "CBSD68" / "101085.png"
    image = np.asarray(Image.open(path).convert("RGB")).transpose(1, 0, 2) if path.exists() else None
    if image is None:
        image = skimage.data.astronaut()[:321, :481]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def distance_to_tile_edges(size: int, starts: list[int], tile: int, offset: int) -> torch.Tensor:
    """Per pixel of the unpadded axis: distance to the nearest inner edge of a tile laid on the
    padded axis (``offset`` = where the image starts inside the padding)."""
    padded = starts[-1] + tile
    edges = [s for s in starts if s > 0] + [s + tile - 1 for s in starts if s + tile < padded]
    index = torch.arange(size) + offset
    return torch.stack([(index - e).abs() for e in edges]).amin(0)


@pytest.fixture(scope="module")
def mini_maxim_on_a_photo():
    from restore.models import MAXIM

    torch.manual_seed(0)
    model = MAXIM(**MINI_MAXIM).eval()
    x = photo_321x481()
    return x, restore_image(model, x), restore_image(model, x, tile=128, tile_overlap=32)


def test_tiles_lie_on_the_padded_image_at_multiples_of_the_size_multiple():
    # 321 x 481 pads to 328 x 488 for a multiple of 8; 128-pixel tiles at a stride of 128 - 32
    assert pad_to_multiple(torch.zeros(1, 1, 321, 481), 8)[0].shape[-2:] == (328, 488)
    assert _tile_starts(328, 128, 32, 8) == [0, 96, 192, 200]
    assert _tile_starts(488, 128, 32, 8) == [0, 96, 192, 288, 360]
    # a stride that is not a multiple is rounded down, so tiles overlap at least as asked
    assert _tile_starts(300, 100, 30, 16) == [0, 64, 128, 192, 200]


def test_tiled_maxim_matches_untiled_far_from_tile_borders(mini_maxim_on_a_photo):
    x, untiled, tiled = mini_maxim_on_a_photo
    assert tiled.shape == untiled.shape == x.shape
    # MAXIM's grid gMLP mixes a fixed number of windows spread over the whole input and its
    # channel attention pools the whole input, so a tile is a different input from the whole
    # image and no pixel matches exactly. The bound: tiled and untiled differ by under 5 % of
    # what the network changes (|untiled - input|) at pixels 32+ px from every tile edge
    # (measured 2.5 %; two random MAXIMs differ by over 100 %, and tiles laid out of phase
    # with the block partition by 83 %).
    rows = distance_to_tile_edges(321, [0, 96, 192, 200], 128, offset=(328 - 322) // 2)
    cols = distance_to_tile_edges(481, [0, 96, 192, 288, 360], 128, offset=(488 - 482) // 2)
    far = torch.minimum(rows[:, None], cols[None, :]) >= 32
    assert 5000 < far.sum() < 321 * 481 / 2
    change = (untiled - x).abs().mean()
    difference = (tiled - untiled).abs().mean(dim=1)[0]
    assert difference[far].mean() < 0.05 * change


def test_tiled_maxim_shows_no_seams(mini_maxim_on_a_photo):
    x, untiled, tiled = mini_maxim_on_a_photo
    error = (tiled - untiled)[0]
    # A seam is a jump in the tiling error from one row (column) to the next. Feathered, the
    # largest mean jump is at most 3x the median one (measured 2.0); butting tiles without
    # blending (tile_overlap=0) gives 17x at their edges.
    for axis in (1, 2):
        jumps = error.diff(dim=axis).abs().mean(dim=(0, 3 - axis))
        assert jumps.max() < 3 * jumps.median()
    # and no row or column boundary of the output is sharper than the untiled one by over 5 %
    # (measured 1.5 %; 76 % without blending)
    for axis in (2, 3):
        others = tuple(d for d in (0, 1, 2, 3) if d != axis)
        ratio = tiled.diff(dim=axis).abs().mean(dim=others) / untiled.diff(dim=axis).abs().mean(dim=others)
        assert ratio.max() < 1.05


def test_tiling_a_local_model_is_exact_beyond_its_receptive_field():
    torch.manual_seed(0)
    # two 3x3 convolutions: each output pixel sees 2 pixels around it
    local = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(2, 3, 150, 201)
    untiled, tiled = restore_image(local, x), restore_image(local, x, tile=64, tile_overlap=16)
    rows = distance_to_tile_edges(150, _tile_starts(150, 64, 16), 64, offset=0)
    cols = distance_to_tile_edges(201, _tile_starts(201, 64, 16), 64, offset=0)
    beyond = torch.minimum(rows[:, None], cols[None, :]) >= 2
    assert (tiled - untiled).abs().amax(dim=(0, 1))[beyond].max() < 1e-6
    assert (tiled - untiled).abs().max() > 1e-4  # tile edges were really cut


def test_self_ensemble_of_the_identity_returns_the_input_exactly():
    x = torch.rand(2, 3, 37, 51)
    assert torch.equal(restore_image(nn.Identity(), x, ensemble=True), x)
    # tiled, overlapping tiles are blended as sum(w * x) / sum(w): exact up to float32 rounding
    tiled = restore_image(nn.Identity(), x, ensemble=True, tile=16, tile_overlap=4)
    assert torch.allclose(tiled, x, rtol=0, atol=1e-6)


def test_self_ensemble_of_a_convolution_is_the_convolution_with_its_symmetrised_kernel():
    # Turning the image, convolving and turning back convolves with the turned kernel, so the
    # x8 ensemble convolves with the mean of the kernel's 8 rotations and mirror images.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 5, padding=2, bias=False)
    x = torch.rand(1, 3, 40, 56)
    kernel = conv.weight.detach()
    turned = [torch.rot90(k, t, dims=(-2, -1)) for k in (kernel, kernel.flip(-1)) for t in range(4)]
    expected = F.conv2d(x, torch.stack(turned).mean(0), padding=2)
    got = restore_image(conv, x, ensemble=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(restore_image(conv, x), expected, atol=1e-2)  # the kernel is not symmetric


def test_auto_tile_size_on_a_cpu_keeps_tiles_within_the_pixel_budget(monkeypatch, tiny_maxim):
    import restore.inference as inference

    monkeypatch.setattr(inference, "CPU_TILE_PIXELS", 70 * 70)
    # TINY_MAXIM's size multiple is 16 x 32: tiles are multiples of 32 up to sqrt(4900)
    assert inference.auto_tile_size(tiny_maxim, torch.zeros(1, 3, 100, 150)) == 64
    assert inference.auto_tile_size(tiny_maxim, torch.zeros(1, 3, 60, 80)) is None  # fits whole


def test_bad_arguments_get_one_clear_error(tiny_maxim):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="autocast='fp16' runs on CUDA only and the input is on cpu"):
        restore_image(tiny_maxim, x, autocast="fp16")
    with pytest.raises(ValueError, match="autocast='bfloat16': give auto, fp32, bf16, fp16 or None"):
        restore_image(tiny_maxim, x, autocast="bfloat16")
    with pytest.raises(ValueError, match=r"tile_overlap \(64\) must be smaller than tile \(64\)"):
        restore_image(tiny_maxim, x, tile=64)
    with pytest.raises(ValueError, match="tile must be a positive int, 'auto' or None"):
        restore_image(tiny_maxim, x, tile="512")
    with pytest.raises(ValueError, match=r"expected a \(B, C, H, W\) float tensor"):
        restore_image(tiny_maxim, x[0])


@pytest.mark.parametrize("tile, ensemble", [(None, False), (None, True), (32, False), (32, True)])
def test_forward_count_is_the_number_of_forwards_restore_image_runs(tile, ensemble):
    model = nn.Conv2d(3, 3, 3, padding=1)
    model.size_multiple = (8, 16)  # unequal multiples: a quarter turn pads the sides differently
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.rand(1, 3, 40, 90)  # not square: quarter turns tile it differently
    restore_image(model, x, tile=tile, tile_overlap=8, ensemble=ensemble)
    assert forward_count(model, x, tile=tile, tile_overlap=8, ensemble=ensemble) == len(calls)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reports them (an independent reading of CPUID)."""
    with open("/proc/cpuinfo") as cpuinfo:
        line = next(line for line in cpuinfo if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU flags from Linux's /proc/cpuinfo")
def test_auto_precision_is_bf16_exactly_on_cpus_with_native_bf16_matrix_units():
    native = bool(cpu_flags() & {"amx_tile", "avx512_bf16"})
    cpu = torch.device("cpu")
    assert native_bf16(cpu) == native
    assert resolve_autocast("auto", cpu) == ("bf16" if native else None)
    assert precision_name("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_autocast("fp32", cpu) is None and resolve_autocast(None, cpu) is None
    assert resolve_autocast("bf16", cpu) == "bf16"  # forced: runs anywhere, emulated where not native


def test_bf16_on_the_cpu_restores_a_real_photo_within_0_05_db_of_float32():
    from restore.data.degrade import build_degradation
    from restore.data.io import decode_image, to_float
    from restore.metrics import score
    from restore.models.loading import load_model
    from restore.models.ship import WEIGHTS_DIR
    from tests.helpers import shared_path

    model = load_model(ckpt=WEIGHTS_DIR / "maxim1s_w32_cbsd432_sigma25.ckpt")
    psnr = {}
    for name in ("101085", "102061", "103070"):
        photo = decode_image(shared_path("benchmarks", "CBSD68", f"{name}.png"))[:128, :192]
        clean = torch.from_numpy(to_float(photo).transpose(2, 0, 1).copy())[None]
        noisy = build_degradation({"name": "gaussian_noise", "sigma": 25})(clean, seed=0)
        for precision in ("fp32", "bf16"):
            restored = restore_image(model, noisy, autocast=precision)
            assert restored.dtype == torch.float32
            psnr.setdefault(precision, []).append(float(score(restored, clean)["psnr"][0]))
    fp32, bf16 = (sum(values) / len(values) for values in (psnr["fp32"], psnr["bf16"]))
    assert fp32 > 28  # a real restoration: the noisy inputs are at about 20.5 dB
    assert abs(bf16 - fp32) < 0.05, psnr
