"""Synthetic degradations: any clean image becomes an (input, target) pair.

Each degradation works on a batch ``(B, C, H, W)`` of float images in [0, 1] on
any device (kornia and torch ops only) and is reproducible: its random
parameters come from a ``torch.Generator`` or a seed (a generator lives on one
device, so the same seed gives different draws on CPU and GPU). A call is two
steps, ``sample`` (the random parameters of this batch: a kernel, a
transmission map, the noise) and ``apply`` (deterministic), so what was
applied can be inspected. Noise levels are on the 0-255 scale, as the
literature states them. Ranges ``[low, high]`` are drawn uniformly per image.

Specs are dicts, as in the configs: ``{"name": "gaussian_noise", "sigma": 25}``;
:func:`build_degradation` turns one into a degradation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import kornia
import torch
from torch import Tensor

Params = dict[str, Tensor]
Range = float | Sequence[float]


def _as_range(value: Range, name: str, low: float, high: float) -> tuple[float, float]:
    """A number or ``[low, high]`` -> ``(low, high)``, checked against the allowed interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Sequence)) or isinstance(value, str):
        raise ValueError(f"{name} must be a number or [low, high], got {value!r}")
    bounds = (float(value), float(value)) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be a number or [low, high] with low <= high, got {value!r}")
    if bounds[0] < low or bounds[1] > high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
    return bounds


def _uniform(bounds: tuple[float, float], batch: int, generator: torch.Generator | None, device) -> Tensor:
    """(B,) values drawn uniformly from ``bounds``."""
    low, high = bounds
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def _odd_sizes(bounds: tuple[float, float], name: str) -> list[int]:
    sizes = [size for size in range(math.ceil(bounds[0]), math.floor(bounds[1]) + 1) if size % 2 == 1]
    if not sizes:
        raise ValueError(f"{name} {bounds} contains no odd size")
    return sizes


def _draw_odd_size(bounds: tuple[float, float], generator: torch.Generator | None, device) -> int:
    """One odd kernel size from ``bounds`` for the whole batch (kornia builds one size per call)."""
    sizes = _odd_sizes(bounds, "kernel size")
    return sizes[int(torch.randint(len(sizes), (1,), generator=generator, device=device))]


class Degradation:
    """Base class: ``degradation(images, generator)`` = ``apply(images, sample(images, generator))``."""

    name: ClassVar[str]
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}  # the allowed interval of each range field

    def __post_init__(self):
        for field_name in self.bounds:
            self.range(field_name)

    def range(self, field_name: str) -> tuple[float, float]:
        """A field as ``(low, high)``, checked against its bounds."""
        return _as_range(getattr(self, field_name), f"{self.name}.{field_name}", *self.bounds[field_name])

    def draw(self, field_name: str, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """(B,) values of a field, one per image, uniform in its range."""
        return _uniform(self.range(field_name), images.shape[0], generator, images.device)

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        raise NotImplementedError

    def apply(self, images: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor, generator: torch.Generator | None = None, *, seed: int | None = None) -> Tensor:
        """Degrade ``(B, C, H, W)`` or ``(C, H, W)`` images; draws from ``generator``, a fresh one seeded
        by ``seed``, or torch's global generator when neither is given."""
        return self.degrade(images, generator, seed=seed)[0]

    def degrade(
        self, images: Tensor, generator: torch.Generator | None = None, *, seed: int | None = None
    ) -> tuple[Tensor, Params]:
        """Like calling it, and also returns the parameters that were applied."""
        single = images.dim() == 3
        batch = images.unsqueeze(0) if single else images
        if batch.dim() != 4:
            raise ValueError(f"{self.name} expects (B, C, H, W) or (C, H, W) images, got shape {tuple(images.shape)}")
        if seed is not None:
            generator = torch.Generator(device=batch.device).manual_seed(seed)
        params = self.sample(batch, generator)
        out = self.apply(batch, params)
        return (out[0] if single else out), params


@dataclass(frozen=True)
class GaussianNoise(Degradation):
    """Additive white Gaussian noise of standard deviation ``sigma`` / 255.

    Not clipped by default: the synthetic denoising literature adds the noise in
    float and restores the unclipped image. ``photo`` is the fraction of images
    that are instead clipped to [0, 1] and rounded to 8 bits, as a noisy photo
    saved to a PNG or JPEG is: a model that serves photos must have seen them.
    """

    name: ClassVar[str] = "gaussian_noise"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"sigma": (0, 255)}
    sigma: Range = 25.0
    clip: bool = False
    photo: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.photo, bool) or not isinstance(self.photo, (int, float)) or not 0 <= self.photo <= 1:
            raise ValueError(f"gaussian_noise.photo must be a fraction in [0, 1], got {self.photo!r}")

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        sigma = self.draw("sigma", images, generator)  # (B,), 0-255 scale
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        params = {"sigma": sigma, "noise": noise * (sigma / 255).view(-1, 1, 1, 1).to(images.dtype)}
        if self.photo > 0:  # drawn after the noise, so photo=0 keeps every earlier seed's draws
            params["photo"] = torch.rand(images.shape[0], generator=generator, device=images.device) < self.photo
        return params

    def apply(self, images: Tensor, params: Params) -> Tensor:
        out = images + params["noise"]
        if self.clip:
            out = out.clamp(0, 1)
        if "photo" in params:
            saved = (out.clamp(0, 1) * 255).round() / 255
            out = torch.where(params["photo"].view(-1, 1, 1, 1), saved, out)
        return out


@dataclass(frozen=True)
class PoissonGaussianNoise(Degradation):
    """Signal-dependent sensor noise: ``Poisson(x * peak) / peak + N(0, (sigma / 255)^2)``.

    ``peak`` is the photon count of a white pixel (smaller = noisier), ``sigma``
    the read noise on the 0-255 scale. Variance at intensity x: ``x / peak + (sigma / 255)^2``.
    """

    name: ClassVar[str] = "poisson_gaussian_noise"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"peak": (1e-3, 1e9), "sigma": (0, 255)}
    peak: Range = (10.0, 100.0)
    sigma: Range = (0.0, 10.0)
    clip: bool = False

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        peak = self.draw("peak", images, generator).view(-1, 1, 1, 1)
        sigma = self.draw("sigma", images, generator).view(-1, 1, 1, 1)
        photons = torch.poisson(images.clamp(min=0).float() * peak, generator=generator)
        read = torch.randn(images.shape, generator=generator, device=images.device) * sigma / 255
        noise = photons / peak - images.float() + read
        return {"peak": peak.flatten(), "sigma": sigma.flatten(), "noise": noise.to(images.dtype)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        out = images + params["noise"]
        return out.clamp(0, 1) if self.clip else out


def _convolve(images: Tensor, kernels: Tensor) -> Tensor:
    """True convolution (kernel flipped) of each image with its own ``(B, k, k)`` kernel, reflect borders,
    so that a delta image turns into the kernel itself."""
    return kornia.filters.filter2d(images, kernels.to(images.dtype), border_type="reflect", behaviour="conv")


@dataclass(frozen=True)
class MotionBlur(Degradation):
    """Linear motion blur: a line kernel of ``kernel_size`` pixels (one odd size per batch) at a random
    ``angle`` (degrees), its weight shifted along the line by ``direction`` in [-1, 1] (kornia's kernel)."""

    name: ClassVar[str] = "motion_blur"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "kernel_size": (3, 255),
        "angle": (-360, 360),
        "direction": (-1, 1),
    }
    kernel_size: Range = (7.0, 21.0)
    angle: Range = (0.0, 180.0)
    direction: Range = (-1.0, 1.0)

    def __post_init__(self):
        super().__post_init__()
        _odd_sizes(self.range("kernel_size"), f"{self.name}.kernel_size")

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        size = _draw_odd_size(self.range("kernel_size"), generator, images.device)
        angle = self.draw("angle", images, generator)
        direction = self.draw("direction", images, generator)
        kernel = kornia.filters.get_motion_kernel2d(size, angle, direction, mode="bilinear")  # (B, k, k)
        return {"angle": angle, "direction": direction, "kernel": kernel / kernel.sum(dim=(1, 2), keepdim=True)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        return _convolve(images, params["kernel"])


def disk_kernels(radius: Tensor, size: int) -> Tensor:
    """``(B, size, size)`` anti-aliased uniform disks of the given radii (pixels), each summing to 1.

    Written here because kornia has no defocus (pillbox) kernel: a pixel's weight is
    the fraction of it inside the disk, approximated by ``clamp(r + 0.5 - distance, 0, 1)``.
    """
    coords = torch.arange(size, device=radius.device, dtype=torch.float32) - (size - 1) / 2
    distance = torch.sqrt(coords.view(1, -1, 1) ** 2 + coords.view(1, 1, -1) ** 2)  # (1, k, k)
    weights = (radius.view(-1, 1, 1) + 0.5 - distance).clamp(0, 1)
    return weights / weights.sum(dim=(1, 2), keepdim=True)


@dataclass(frozen=True)
class DefocusBlur(Degradation):
    """Out-of-focus blur: a uniform disk of ``radius`` pixels."""

    name: ClassVar[str] = "defocus_blur"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"radius": (0, 64)}
    radius: Range = (1.0, 4.0)

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        radius = self.draw("radius", images, generator)
        size = 2 * math.ceil(self.range("radius")[1] + 0.5) + 1
        return {"radius": radius, "kernel": disk_kernels(radius, size)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        return _convolve(images, params["kernel"])


@dataclass(frozen=True)
class RainStreaks(Degradation):
    """Rain: sparse drops smeared into streaks by a motion kernel, screen-blended onto the image.

    ``density``: fraction of pixels that start a streak; ``length`` (pixels, one odd
    length per batch) and ``angle`` (degrees from vertical) shape the streaks;
    ``brightness`` is their peak value and ``width`` the Gaussian sigma that thickens
    them. The reported ``rain`` layer R (B, 1, H, W) in [0, 1] gives ``output = x + R * (1 - x)``.
    """

    name: ClassVar[str] = "rain"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "density": (0, 1),
        "length": (3, 255),
        "angle": (-90, 90),
        "brightness": (0, 1),
        "width": (0.1, 8),
    }
    density: Range = (0.002, 0.01)
    length: Range = (15.0, 35.0)
    angle: Range = (-20.0, 20.0)
    brightness: Range = (0.5, 0.9)
    width: float = 0.6

    def __post_init__(self):
        super().__post_init__()
        _odd_sizes(self.range("length"), f"{self.name}.length")

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        batch, _, height, width = images.shape
        density = self.draw("density", images, generator).view(-1, 1, 1, 1)
        brightness = self.draw("brightness", images, generator).view(-1, 1, 1, 1)
        angle = self.draw("angle", images, generator)
        length = _draw_odd_size(self.range("length"), generator, images.device)
        drops = torch.rand(batch, 1, height, width, generator=generator, device=images.device) < density
        # kornia's angle 0 is a horizontal line; rain falls near vertical.
        kernel = kornia.filters.get_motion_kernel2d(length, 90 + angle, torch.zeros_like(angle), mode="bilinear")
        streaks = _convolve(drops.float(), kernel) * length  # (B, 1, H, W): about 1 along each streak
        sigma = float(self.width)
        size = 2 * math.ceil(3 * sigma) + 1
        streaks = kornia.filters.gaussian_blur2d(streaks, (size, size), (sigma, sigma), border_type="reflect")
        peak = streaks.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        return {"rain": (streaks / peak).clamp(0, 1) * brightness, "angle": angle}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        rain = params["rain"].to(images.dtype)
        return images + rain * (1 - images)


@dataclass(frozen=True)
class Haze(Degradation):
    """Haze by the atmospheric scattering model: ``I = J * t + A * (1 - t)``, ``t = exp(-beta * d)``.

    No depth is known for a clean photo, so the depth proxy d in [0, 1] mixes a
    vertical ramp (the top of a photo is usually farther away) with a smooth
    random field (weight ``field_weight``: a ``field_cells`` x ``field_cells`` grid of
    uniform values upsampled bilinearly). The airlight A is gray. The reported
    ``transmission`` t is (B, 1, H, W), ``airlight`` (B, 1, 1, 1).
    """

    name: ClassVar[str] = "haze"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"beta": (0, 20), "airlight": (0, 1), "field_weight": (0, 1)}
    beta: Range = (0.6, 1.8)
    airlight: Range = (0.7, 1.0)
    field_weight: float = 0.5
    field_cells: int = 4

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.field_cells, bool) or not isinstance(self.field_cells, int) or self.field_cells < 2:
            raise ValueError(f"haze.field_cells must be an integer >= 2, got {self.field_cells!r}")

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        batch, _, height, width = images.shape
        device = images.device
        beta = self.draw("beta", images, generator)
        airlight = self.draw("airlight", images, generator).view(-1, 1, 1, 1)
        cells = torch.rand(batch, 1, self.field_cells, self.field_cells, generator=generator, device=device)
        field = kornia.geometry.transform.resize(cells, (height, width), interpolation="bilinear", align_corners=True)
        ramp = torch.linspace(1, 0, height, device=device).view(1, 1, height, 1).expand(batch, 1, height, width)
        weight = float(self.field_weight)
        depth = (1 - weight) * ramp + weight * field  # (B, 1, H, W) in [0, 1]
        transmission = torch.exp(-beta.view(-1, 1, 1, 1) * depth)
        return {"beta": beta, "airlight": airlight, "depth": depth, "transmission": transmission}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        t = params["transmission"].to(images.dtype)
        return images * t + params["airlight"].to(images.dtype) * (1 - t)


@dataclass(frozen=True)
class LowLight(Degradation):
    """Under-exposure: ``clip(exposure * x ** gamma + N(0, (sigma / 255)^2))``, then quantised to
    8 bits (the banding of a dark 8-bit photo) unless ``quantize`` is false."""

    name: ClassVar[str] = "low_light"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"exposure": (0, 1), "gamma": (0.1, 10), "sigma": (0, 255)}
    exposure: Range = (0.1, 0.4)
    gamma: Range = (1.2, 2.0)
    sigma: Range = (0.0, 6.0)
    quantize: bool = True

    def sample(self, images: Tensor, generator: torch.Generator | None) -> Params:
        exposure = self.draw("exposure", images, generator)
        gamma = self.draw("gamma", images, generator)
        sigma = self.draw("sigma", images, generator)
        noise = torch.randn(images.shape, generator=generator, device=images.device) * (sigma / 255).view(-1, 1, 1, 1)
        return {"exposure": exposure, "gamma": gamma, "sigma": sigma, "noise": noise.to(images.dtype)}

    def apply(self, images: Tensor, params: Params) -> Tensor:
        exposure = params["exposure"].view(-1, 1, 1, 1).to(images.dtype)
        gamma = params["gamma"].view(-1, 1, 1, 1).to(images.dtype)
        out = (exposure * images.clamp(min=0) ** gamma + params["noise"]).clamp(0, 1)
        return torch.round(out * 255) / 255 if self.quantize else out


DEGRADATIONS: dict[str, type[Degradation]] = {
    cls.name: cls for cls in (GaussianNoise, PoissonGaussianNoise, MotionBlur, DefocusBlur, RainStreaks, Haze, LowLight)
}


def build_degradation(spec: Mapping[str, Any] | str | Degradation) -> Degradation:
    """A degradation from a spec such as ``{"name": "gaussian_noise", "sigma": 25}`` (or just its name)."""
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"a degradation spec is a dict with a 'name' ({', '.join(DEGRADATIONS)}), got {spec!r}")
    params = {str(key): _plain(value) for key, value in spec.items()}
    name = params.pop("name", None)
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known degradations: {', '.join(DEGRADATIONS)}")
    cls = DEGRADATIONS[name]
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"degradation {name} has no parameter {', '.join(unknown)}; its parameters: {', '.join(allowed)}"
        )
    return cls(**params)


def _plain(value: Any) -> Any:
    """Config lists (OmegaConf ListConfig) -> tuples, so specs from YAML and from Python agree."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(value)
    return value
