"""PSNR and SSIM with explicit scoring protocols.

Published restoration numbers differ as much by how they were scored as by
the model: RGB or Y, MATLAB's 3-D SSIM or per-channel 2-D SSIM, float or
uint8 outputs, ECC alignment. A :class:`Protocol` names every one of those
choices; ``restore.data.benchmarks`` assigns one to each benchmark.

Public API: :func:`score` takes a prediction and its target as NCHW float
tensors in [0, 1] (a batch of one or more images of one size) and returns the
PSNR and SSIM of every image under a protocol. The steps, in order:

1. ``gray`` sets reduce to one channel (:func:`to_gray`);
2. :func:`quantize` to the 0-255 scale (``uint8``: rounded like a saved PNG);
3. ``align="ecc"``: RealBlur's alignment (:func:`ecc_align`) and its mask;
4. ``color="y"``: MATLAB's luma (:func:`to_y`);
5. ``crop_border`` pixels off every side;
6. :func:`psnr` and :func:`ssim_gaussian2d` or :func:`ssim_matlab3d`.

The building blocks take float64 NCHW tensors on the 0-255 scale and use a
data range of 255 throughout (PSNR peak 255, SSIM C1 = (0.01 * 255)^2,
C2 = (0.03 * 255)^2). Scoring [0, 1] data with a range of 1, as MATLAB does
for floating-point images, gives the same numbers: both metrics are
invariant to scaling the data and the range together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import cv2
import kornia
import numpy as np
import torch

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11-tap windows: skimage's int(3.5 * sigma + 0.5) and MATLAB's ceil(3 * sigma) both give 5
SSIM_C1 = (0.01 * DATA_RANGE) ** 2
SSIM_C2 = (0.03 * DATA_RANGE) ** 2

Color = Literal["rgb", "y", "gray"]
SsimFlavour = Literal["matlab3d", "gaussian2d"]
Quantize = Literal["uint8", "float"]
Align = Literal["none", "ecc"]


@dataclass(frozen=True)
class Protocol:
    """How one benchmark is scored.

    color: ``rgb`` (all channels), ``y`` (MATLAB ``rgb2ycbcr`` luma, BT.601
        with the 16-235 offset) or ``gray`` (single-channel sets).
    ssim: ``matlab3d`` (MATLAB ``ssim`` on an RGB array: an 11x11x11 Gaussian
        across channels) or ``gaussian2d`` (Wang et al. per channel, averaged).
    quantize: ``uint8`` (round to 8 bits as a saved PNG) or ``float``.
    crop_border: pixels removed from every side before scoring.
    align: ``ecc`` aligns the prediction to the target first (RealBlur).
    """

    color: Color = "rgb"
    ssim: SsimFlavour = "gaussian2d"
    quantize: Quantize = "uint8"
    crop_border: int = 0
    align: Align = "none"

    def __post_init__(self):
        for field, allowed in (
            ("color", Color),
            ("ssim", SsimFlavour),
            ("quantize", Quantize),
            ("align", Align),
        ):
            value = getattr(self, field)
            if value not in get_args(allowed):
                raise ValueError(f"Protocol: {field}={value!r} is not one of {', '.join(get_args(allowed))}")
        if isinstance(self.crop_border, bool) or not isinstance(self.crop_border, int) or self.crop_border < 0:
            raise ValueError(f"Protocol: crop_border must be a non-negative integer, got {self.crop_border!r}")

    def describe(self) -> str:
        """A short label printed next to every number, e.g. ``RGB, SSIM-3D, uint8``."""
        parts = [self.color.upper() if self.color != "gray" else "gray"]
        parts.append("SSIM-3D" if self.ssim == "matlab3d" else "SSIM-2D")
        parts.append(self.quantize)
        if self.crop_border:
            parts.append(f"crop {self.crop_border}")
        if self.align == "ecc":
            parts.append("ECC-aligned")
        return ", ".join(parts)


def score(pred: torch.Tensor, target: torch.Tensor, protocol: Protocol = Protocol()) -> dict[str, torch.Tensor]:
    """PSNR (dB) and SSIM of each image of ``pred`` against ``target`` under ``protocol``.

    ``pred`` and ``target``: (B, C, H, W) float tensors in [0, 1], same shape
    (values outside [0, 1] are clipped, as saving an image would). Returns
    ``{"psnr": (B,), "ssim": (B,)}`` float64 tensors; identical images give
    a PSNR of ``inf``.
    """
    _check_pair(pred, target)
    pred, target = pred.detach().to(torch.float64), target.detach().to(torch.float64)
    if protocol.color == "gray":
        pred, target = to_gray(pred), to_gray(target, name="target")
    pred, target = quantize(pred, protocol.quantize), quantize(target, protocol.quantize)
    mask = None
    if protocol.align == "ecc":
        pred, target, mask = ecc_align(pred, target)
    if protocol.color == "y":
        rounded = protocol.quantize == "uint8"
        pred, target = to_y(pred, rounded=rounded), to_y(target, rounded=rounded)
    if protocol.crop_border:
        pred, target = _crop(pred, protocol.crop_border), _crop(target, protocol.crop_border)
        mask = None if mask is None else _crop(mask, protocol.crop_border)
    ssim = ssim_matlab3d if protocol.ssim == "matlab3d" else ssim_gaussian2d
    return {"psnr": psnr(pred, target, mask), "ssim": ssim(pred, target, mask)}


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            got = f"{type(x).__name__} {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"score: {name} must be a (B, C, H, W) float tensor in [0, 1], got {got}")
    if pred.shape != target.shape:
        raise ValueError(
            f"score: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; "
            "a pair must have the same size and channels"
        )


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"crop_border={border} leaves nothing of a {h}x{w} image")
    return x[..., border : h - border, border : w - border]


def to_gray(x: torch.Tensor, name: str = "prediction") -> torch.Tensor:
    """The single channel of an image of a gray set: (B, 1 or 3, H, W) -> (B, 1, H, W).

    Gray sets (BSD68, Set12) are scored on their one channel. A 3-channel
    target must be a gray image stored as RGB (equal channels) and gives that
    channel; a colour target is refused, since its score would depend on an
    arbitrary conversion (score it with ``rgb`` or ``y`` instead). A 3-channel
    prediction (an RGB model run on a gray input) is reduced to the mean of its
    channels: the gray image closest to it in the squared error PSNR measures,
    and its own channel when the channels are equal.
    """
    channels = x.shape[1]
    if channels == 1:
        return x
    if channels != 3:
        raise ValueError(f"gray protocol: the {name} has {channels} channels; expected 1 (or 3 equal ones)")
    if name == "target":
        if not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])):
            raise ValueError(
                "gray protocol: the target is a colour image (its channels differ); "
                "gray sets hold gray images - score colour sets with color='rgb' or 'y'"
            )
        return x[:, :1]
    return x.mean(dim=1, keepdim=True)


def quantize(x: torch.Tensor, mode: Quantize) -> torch.Tensor:
    """[0, 1] -> the 0-255 scale as float64, clipped to the range.

    ``uint8``: round(clip(x, 0, 1) * 255), the values a saved 8-bit PNG holds
    (GoPro, HIDE, Rain13k and RealBlur are scored from saved PNGs). ``float``:
    no rounding (SIDD: Restormer/MPRNet score clamped float outputs saved as
    .mat). Both clip, as every saved output is clipped; clipping never raises
    the error against a target inside [0, 1]. MAXIM's own run_eval scores the
    unclipped float output; pass ``float`` data that is already in range to
    reproduce that.
    """
    x = x.to(torch.float64).clamp(0.0, 1.0) * DATA_RANGE
    # torch.round rounds halves to even; an exact .5 after scaling needs x = (2k+1)/510
    # exactly, which network outputs never hit, and 8-bit sources are integers already.
    return x.round() if mode == "uint8" else x


def to_y(rgb: torch.Tensor, rounded: bool) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma of 0-255 RGB: (B, 3, H, W) -> (B, 1, H, W), on 0-255.

    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 (BT.601, studio swing
    16-235). ``rounded``: MATLAB returns uint8 Y for uint8 input, rounding half
    away from zero; the deraining scripts (Restormer/MPRNet
    ``evaluate_PSNR_SSIM.m``) call ``rgb2ycbcr`` on images read by ``imread``,
    i.e. uint8, so under the ``uint8`` protocol Y is rounded. Float images give
    float Y. Hand-written: kornia's ``rgb_to_ycbcr`` is the full-range JPEG
    transform (no 16 offset, other weights), not MATLAB's.
    """
    if rgb.shape[1] != 3:
        raise ValueError(f"Y channel: expected a 3-channel RGB image, got {rgb.shape[1]} channel(s)")
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    return torch.floor(y + 0.5) if rounded else y  # Y >= 16 > 0: half away from zero is half up


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of 0-255 float64 images, per image: (B, C, H, W) -> (B,).

    10 log10(255^2 / MSE), the MSE over all channels and pixels, or over the
    pixels where ``mask`` (B, 1, H, W) is 1 (RealBlur: sum of squared errors
    over the aligned region / its pixel count). Hand-written rather than
    torchmetrics' PSNR because that one takes no mask.
    """
    squared_error = (pred - target) ** 2
    if mask is None:
        mse = squared_error.mean(dim=(1, 2, 3))
    else:
        mse = (squared_error * mask).sum(dim=(1, 2, 3)) / mask.expand_as(squared_error).sum(dim=(1, 2, 3))
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def ssim_gaussian2d(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Wang et al. SSIM per image, (B, C, H, W) 0-255 float64 -> (B,).

    An 11x11 Gaussian window (sigma 1.5) per channel, population (co)variances,
    K1 0.01, K2 0.03, the mean over the valid windows (those inside the image:
    (H-10) x (W-10) per channel), then over channels; this is
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255)`` per channel. With a ``mask``
    (B, 1, H, W) each channel's mean is taken over the masked valid windows
    (RealBlur's evaluation).

    Hand-written on kornia's separable Gaussian rather than torchmetrics'
    SSIM: torchmetrics 1.9 reflect-pads and averages every window, including
    the border ones that see mirrored pixels (0.5406 against skimage's 0.5350
    on a noisy CBSD68 photo), takes no mask, and filters with a dense 11x11
    float64 convolution (4.7 s against 0.95 s here for one 481x321 RGB pair on
    two busy CPU cores).
    """
    r = SSIM_RADIUS
    h, w = pred.shape[-2:]
    if min(h, w) <= 2 * r:
        raise ValueError(f"SSIM needs images larger than {2 * r + 1}x{2 * r + 1} pixels, got {h}x{w}")

    def blur_valid(x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H-2r, W-2r)
        blurred = kornia.filters.gaussian_blur2d(x, 2 * r + 1, (SSIM_SIGMA, SSIM_SIGMA), border_type="reflect")
        return blurred[..., r:-r, r:-r]  # only windows inside the image: the padding never reaches these

    ssim_map = _ssim_map(pred, target, blur_valid)
    return _masked_mean(ssim_map, None if mask is None else mask[..., r:-r, r:-r])


def ssim_matlab3d(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MATLAB's ``ssim(A, ref)`` per image, (B, C, H, W) 0-255 float64 -> (B,).

    MATLAB (``ssim.m``, R2014a on) treats an H x W x 3 array as a volume: it
    filters with an 11x11x11 Gaussian (sigma 1.5; radius ceil(3 sigma) = 5;
    ``imfilter(..., 'conv', 'replicate')``), so the colour axis is padded by
    edge replication (RRRRRRGBBBBBB) and blurred like a spatial one; the
    'same'-size map is averaged in full, border windows included. The
    constants come from the class range (uint8: 255; single/double: 1 on
    [0, 1] data, the same score). A single-channel image gets MATLAB's 2-D
    filter, which the replicated colour axis reduces to. MATLAB computes
    single-precision inputs in single; this is float64 throughout.

    Hand-written: torchmetrics' 3-D SSIM reflect-pads and keeps only windows
    whose 11 colour samples are all inside a 3-channel image (none); MATLAB
    replicates instead. The 3-D Gaussian is separable, so it is kornia's 2-D
    replicate blur followed by the 1-D blur along channels.
    """
    r = SSIM_RADIUS
    weights = kornia.filters.get_gaussian_kernel1d(2 * r + 1, SSIM_SIGMA, dtype=pred.dtype, device=pred.device)[0]

    def blur_same(x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        x = kornia.filters.gaussian_blur2d(x, 2 * r + 1, (SSIM_SIGMA, SSIM_SIGMA), border_type="replicate")
        channels = x.shape[1]
        replicated = torch.arange(-r, channels + r, device=x.device).clamp(0, channels - 1)
        padded = x[:, replicated]  # (N, C + 2r, H, W): the colour axis edge-replicated
        return sum(wk * padded[:, k : k + channels] for k, wk in enumerate(weights))

    return _masked_mean(_ssim_map(pred, target, blur_same), mask)


def _ssim_map(pred: torch.Tensor, target: torch.Tensor, blur) -> torch.Tensor:
    """The SSIM index of every window (Wang et al. eq. 13), local statistics from ``blur``."""
    n = pred.shape[0]
    stats = blur(torch.cat([pred, target, pred * pred, target * target, pred * target]))  # (5B, C, h, w)
    mu_p, mu_t, e_pp, e_tt, e_pt = stats.split(n)
    var_p, var_t, cov = e_pp - mu_p**2, e_tt - mu_t**2, e_pt - mu_p * mu_t  # population (co)variances
    return ((2 * mu_p * mu_t + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_p**2 + mu_t**2 + SSIM_C1) * (var_p + var_t + SSIM_C2)
    )


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over (C, H, W) per image; with a (B, 1, H, W) mask, over masked pixels of every channel."""
    if mask is None:
        return values.mean(dim=(1, 2, 3))
    return (values * mask).sum(dim=(1, 2, 3)) / mask.expand_as(values).sum(dim=(1, 2, 3))


def ecc_align(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RealBlur's alignment of each prediction to its target before scoring.

    (B, C, H, W) 0-255 float64 -> (aligned prediction, target, mask), the
    first two zero outside the mask (B, 1, H, W). Per image, as RealBlur's
    official evaluation (``evaluate_RealBlur.py``, reused by MPRNet/Restormer)
    does on float32 [0, 1] images: scale the prediction by the least-squares
    gain sum(t p) / sum(p p); estimate a homography with OpenCV's ECC on the
    gray images (``findTransformECC``, 100 iterations, eps 0, Gaussian
    pre-filter 5); warp the scaled prediction onto the target (bicubic,
    reflected border); the mask is the warped all-ones image (nearest,
    zero border).
    """
    aligned, targets, masks = [], [], []
    for p, t in zip(pred, target):
        p_np = np.ascontiguousarray(p.permute(1, 2, 0).cpu().numpy(), dtype=np.float32) / 255.0  # (H, W, C)
        t_np = np.ascontiguousarray(t.permute(1, 2, 0).cpu().numpy(), dtype=np.float32) / 255.0
        p_aligned, mask = _ecc_align_image(p_np, t_np)
        aligned.append(torch.from_numpy(p_aligned * mask[..., None]).permute(2, 0, 1))
        targets.append(torch.from_numpy(t_np * mask[..., None]).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask)[None])
    as_scored = dict(dtype=torch.float64, device=pred.device)
    return (
        torch.stack(aligned).to(**as_scored) * 255.0,
        torch.stack(targets).to(**as_scored) * 255.0,
        torch.stack(masks).to(**as_scored),
    )


def _ecc_align_image(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) float32 [0, 1] -> (warped, gain-matched prediction (H, W, C), mask (H, W))."""
    h, w = target.shape[:2]
    scaled = pred * (np.sum(target * pred) / np.sum(pred * pred))

    def gray(x: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.shape[2] == 3 else x[..., 0]

    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)
    try:
        _, warp = cv2.findTransformECC(gray(target), gray(scaled), warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error as err:
        raise ValueError(
            "ECC alignment failed: the prediction and target do not overlap or are not correlated enough "
            f"(OpenCV: {str(err).strip().splitlines()[-1]})"
        ) from None
    inverse = cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(scaled, warp, (w, h), flags=cv2.INTER_CUBIC + inverse, borderMode=cv2.BORDER_REFLECT)
    ones = np.ones((h, w), dtype=np.float32)
    mask = cv2.warpPerspective(ones, warp, (w, h), flags=cv2.INTER_NEAREST + inverse, borderMode=cv2.BORDER_CONSTANT)
    return warped.reshape(h, w, -1), mask
