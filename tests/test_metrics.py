"""Scoring protocols: every number is checked against a reference computed independently.

References: numpy for PSNR, scikit-image for Wang's Gaussian SSIM, scipy's
dense 3-D convolution of MATLAB's own kernel formula for MATLAB's SSIM, and
hand-computed luma values for MATLAB's rgb2ycbcr. Images: real CBSD68 photos
from ../shared (skipped when absent) and photos scikit-image ships.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from restore.metrics import Protocol, ecc_align, psnr, score, ssim_gaussian2d, to_y
from tests.helpers import shared_path

CBSD68_FILES = ["101085.png", "108005.png"]  # one landscape-stored, one portrait-stored photo


def photos(source: str) -> list[np.ndarray]:
    """Two clean uint8 (H, W, 3) photos of equal size."""
    if source == "cbsd68":
        folder = shared_path("benchmarks", "CBSD68")
        images = [np.asarray(Image.open(folder / name).convert("RGB")) for name in CBSD68_FILES]
        return [im if im.shape[0] == 321 else im.transpose(1, 0, 2) for im in images]  # both 321 x 481
    return [skimage.data.astronaut()[100:421, :481], skimage.data.coffee()[:321, :481]]


def noisy(image: np.ndarray, seed: int, sigma: float = 25.0) -> np.ndarray:
    """A float prediction in [0, 1] scale, unquantised and partly outside [0, 1]."""
    rng = np.random.default_rng(seed)
    return (image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)) / 255.0


def batch(*images: np.ndarray) -> torch.Tensor:
    """(H, W, C) arrays on the [0, 1] scale -> (B, C, H, W) float32."""
    return torch.from_numpy(np.stack(images).astype(np.float32)).permute(0, 3, 1, 2)


def as_uint8_scale(prediction: np.ndarray, quantize: str) -> np.ndarray:
    """What the protocol scores, by numpy: clip, scale to 0-255, round for uint8."""
    x = np.clip(prediction.astype(np.float32).astype(np.float64), 0.0, 1.0) * 255.0
    return np.round(x) if quantize == "uint8" else x


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10.0 * np.log10(255.0**2 / mse)


SOURCES = ["cbsd68", "skimage"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("quantize", ["uint8", "float"])
def test_psnr_equals_an_independent_numpy_computation(source, quantize):
    clean = photos(source)
    predictions = [noisy(im, seed) for seed, im in enumerate(clean)]
    got = score(batch(*predictions), batch(*clean) / 255.0, Protocol(quantize=quantize))["psnr"]
    expected = [numpy_psnr(as_uint8_scale(p, quantize), c) for p, c in zip(predictions, clean)]
    assert got.dtype == torch.float64 and got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_psnr_border_crop_removes_that_many_pixels_from_every_side():
    clean = photos("skimage")[0]
    prediction = noisy(clean, seed=3)
    got = score(batch(prediction), batch(clean) / 255.0, Protocol(crop_border=7))["psnr"]
    expected = numpy_psnr(as_uint8_scale(prediction, "uint8")[7:-7, 7:-7], clean[7:-7, 7:-7])
    assert abs(got.item() - expected) < 1e-6


@pytest.mark.parametrize("source", SOURCES)
def test_gaussian2d_ssim_equals_skimage_per_channel(source):
    clean = photos(source)[0]
    prediction = as_uint8_scale(noisy(clean, seed=1), "uint8")
    pred_t = torch.from_numpy(prediction).permute(2, 0, 1)[None]
    clean_t = torch.from_numpy(clean.astype(np.float64)).permute(2, 0, 1)[None]
    per_channel = []
    for c in range(3):
        expected = structural_similarity(
            prediction[..., c],
            clean[..., c].astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        got = ssim_gaussian2d(pred_t[:, c : c + 1], clean_t[:, c : c + 1]).item()
        assert abs(got - expected) < 1e-4
        per_channel.append(expected)
    # the protocol's SSIM of the RGB image is the mean over channels
    rgb = score(batch(noisy(clean, seed=1)), batch(clean) / 255.0, Protocol(ssim="gaussian2d"))["ssim"].item()
    assert abs(rgb - np.mean(per_channel)) < 1e-4


def test_y_channel_follows_matlab_rgb2ycbcr_on_hand_computed_pixels():
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, by hand:
    pixels = {
        (0, 0, 0): 16.0,  # black: the 16 offset
        (255, 255, 255): 235.0,  # white: 16 + 65.481 + 128.553 + 24.966
        (255, 0, 0): 81.481,
        (0, 255, 0): 144.553,
        (0, 0, 255): 40.966,
        (10, 200, 30): 122.330941176,  # 16 + (654.81 + 25710.6 + 748.98) / 255
    }
    rgb = torch.tensor(list(pixels), dtype=torch.float64).T.reshape(1, 3, 1, -1)
    exact = torch.tensor(list(pixels.values()), dtype=torch.float64)
    np.testing.assert_allclose(to_y(rgb, rounded=False).flatten(), exact, atol=1e-8)
    # MATLAB returns uint8 Y for uint8 images (the deraining scripts' case): 81.481 -> 81, 144.553 -> 145
    assert to_y(rgb, rounded=True).flatten().tolist() == [16, 235, 81, 145, 41, 122]


def test_y_protocol_scores_the_rounded_luma_like_matlab_on_uint8_pngs():
    clean = photos("skimage")[1]
    prediction = noisy(clean, seed=2)

    def luma(x):  # an independent numpy rgb2ycbcr on uint8-valued arrays, rounded half up
        y = 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0
        return np.floor(y + 0.5)

    expected = numpy_psnr(luma(as_uint8_scale(prediction, "uint8")), luma(clean.astype(np.float64)))
    got = score(batch(prediction), batch(clean) / 255.0, Protocol(color="y"))["psnr"].item()
    assert abs(got - expected) < 1e-6


def matlab_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ssim(A, ref) written from ssim.m's definition with scipy, independently of
    restore.metrics: the 3-D (or 2-D) kernel from getGaussianWeightingFilter (radius
    ceil(3 * 1.5) = 5, exp(-(x^2+y^2+z^2) / (2 * 1.5^2)), entries below eps * max zeroed,
    normalised), a dense imfilter(..., 'conv', 'replicate') (scipy 'nearest' mode), C from
    the uint8 range, eq. 13, and the mean of the whole 'same'-size map."""
    grid = np.arange(-5, 6)
    axes = np.meshgrid(*([grid] * a.ndim), indexing="ij")
    kernel = np.exp(-sum(g.astype(np.float64) ** 2 for g in axes) / (2 * 1.5**2))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    kernel /= kernel.sum()

    def blur(x):
        return scipy.ndimage.convolve(x, kernel, mode="nearest")

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("source", SOURCES)
def test_matlab3d_ssim_equals_matlabs_3d_gaussian_with_replicate_padding(source):
    clean = photos(source)[0][:64, :96]  # the dense 11^3 reference convolution is slow; a crop suffices
    prediction = as_uint8_scale(noisy(clean, seed=4), "uint8")
    expected = matlab_ssim_reference(prediction, clean)
    got = score(batch(prediction / 255.0), batch(clean / 255.0), Protocol(ssim="matlab3d"))["ssim"].item()
    assert abs(got - expected) < 1e-8
    # the colour axis really is filtered: per-channel 2-D SSIM gives another number
    flat = score(batch(prediction / 255.0), batch(clean / 255.0), Protocol(ssim="gaussian2d"))["ssim"].item()
    assert abs(got - flat) > 1e-3


def test_matlab3d_ssim_of_a_gray_image_is_matlabs_2d_ssim():
    clean = photos("skimage")[0][:64, :96, 1]
    prediction = as_uint8_scale(noisy(clean, seed=5), "uint8")
    expected = matlab_ssim_reference(prediction, clean)  # 2-D kernel, as MATLAB uses for a 2-D array
    gray = Protocol(color="gray", ssim="matlab3d")
    got = score(batch(prediction[..., None] / 255.0), batch(clean[..., None] / 255.0), gray)["ssim"].item()
    assert abs(got - expected) < 1e-8


def realblur_reference(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """RealBlur's masked PSNR and SSIM (evaluate_RealBlur.py's compute_psnr / compute_ssim) on
    0-255 (H, W, 3) arrays that are zero outside the (H, W) mask, with skimage's full SSIM map."""
    mask3 = np.repeat(mask[..., None], 3, axis=2)
    psnr = 10 * np.log10(255.0**2 / (np.sum((target - pred) ** 2) / np.sum(mask3)))
    _, ssim_map = structural_similarity(
        target, pred, channel_axis=2, gaussian_weights=True, use_sample_covariance=False, data_range=255, full=True
    )
    ssim_map, crop_mask = (ssim_map * mask3)[5:-5, 5:-5], mask3[5:-5, 5:-5]
    return float(psnr), float(np.mean(ssim_map.sum(axis=(0, 1)) / crop_mask.sum(axis=(0, 1))))


def test_masked_psnr_and_ssim_follow_realblurs_evaluation():
    clean = photos("skimage")[0].astype(np.float64)
    mask = np.zeros(clean.shape[:2])
    mask[9:-14, 21:-6] = 1.0  # what a warp leaves valid
    pred = as_uint8_scale(noisy(clean.astype(np.uint8), seed=6), "uint8") * mask[..., None]
    target = clean * mask[..., None]
    expected_psnr, expected_ssim = realblur_reference(pred, target, mask)
    pred_t, target_t = (torch.from_numpy(x).permute(2, 0, 1)[None] for x in (pred, target))
    mask_t = torch.from_numpy(mask)[None, None]
    assert abs(psnr(pred_t, target_t, mask_t).item() - expected_psnr) < 1e-6
    assert abs(ssim_gaussian2d(pred_t, target_t, mask_t).item() - expected_ssim) < 1e-6


def test_ecc_alignment_scores_a_shifted_prediction_as_well_as_an_aligned_one():
    photo = photos("skimage")[0]
    h, w = 240, 320
    target = photo[20 : 20 + h, 30 : 30 + w]
    in_place = noisy(photo[20 : 20 + h, 30 : 30 + w], seed=7, sigma=5.0)
    shifted = noisy(photo[23 : 23 + h, 28 : 28 + w], seed=7, sigma=5.0)  # 3 px down, 2 px left
    target_t = batch(target) / 255.0
    plain, ecc = Protocol(), Protocol(align="ecc")
    reference = score(batch(in_place), target_t, plain)["psnr"].item()
    unaligned = score(batch(shifted), target_t, plain)["psnr"].item()
    aligned = score(batch(shifted), target_t, ecc)["psnr"].item()
    # the shift costs about 17 dB; alignment wins back about 90 % of it (measured 17.2 -> 32.6 dB
    # against 34.3 dB in place): the official 100 ECC iterations on pre-filtered gray images stop
    # a few hundredths of a pixel short of the integer shift, so a little is lost to interpolation
    assert unaligned < reference - 8.0
    assert aligned - unaligned > 0.85 * (reference - unaligned)
    _, _, mask = ecc_align(batch(shifted).double() * 255, target_t.double() * 255)
    # the 3-row / 2-column shift leaves that much of the border uncovered
    assert mask.shape == (1, 1, h, w) and 0.95 * h * w < mask.sum() < (h - 2) * (w - 1)


def test_gray_sets_score_one_channel():
    clean = photos("skimage")[0][..., 1]
    gray_as_rgb = np.repeat(clean[..., None], 3, axis=2)
    prediction = noisy(gray_as_rgb, seed=8)  # an RGB model's output on a gray input: channels differ
    got = score(batch(prediction), batch(gray_as_rgb) / 255.0, Protocol(color="gray"))["psnr"].item()
    expected = numpy_psnr(as_uint8_scale(prediction.astype(np.float32).mean(axis=2), "uint8"), clean)
    assert abs(got - expected) < 1e-6
    with pytest.raises(ValueError, match="target is a colour image"):
        score(batch(prediction), batch(prediction), Protocol(color="gray"))


def test_identical_images_score_infinite_psnr_and_ssim_one():
    image = batch(photos("skimage")[1][:64, :64] / 255.0)
    for flavour in ("gaussian2d", "matlab3d"):
        result = score(image, image, Protocol(ssim=flavour))
        assert result["psnr"].item() == float("inf")
        assert abs(result["ssim"].item() - 1.0) < 1e-12


def test_bad_input_gets_one_clear_error():
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"prediction \(1, 3, 32, 32\) and target \(1, 3, 32, 30\) differ"):
        score(image, image[..., :30])
    with pytest.raises(ValueError, match="pred must be a \\(B, C, H, W\\) float tensor"):
        score(image[0], image[0])
    with pytest.raises(ValueError, match="crop_border=16 leaves nothing of a 32x32 image"):
        score(image, image, Protocol(crop_border=16))
    with pytest.raises(ValueError, match="SSIM needs images larger than 11x11"):
        score(image[..., :10, :10], image[..., :10, :10])
    with pytest.raises(ValueError, match="Protocol: ssim='matlab' is not one of matlab3d, gaussian2d"):
        Protocol(ssim="matlab")
    with pytest.raises(ValueError, match="Protocol: crop_border must be a non-negative integer"):
        Protocol(crop_border=-1)
