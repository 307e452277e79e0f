"""BM3D as a baseline model: ``python evaluate.py suite=denoise model=bm3d``.

Block-matching and 3-D filtering (Dabov et al., TIP 2007), and its color variant CBM3D
(ICIP 2007), are the classical reference of every Gaussian-denoising table. They run here
through the ``bm3d`` package (the authors' implementation, Mäkinen et al. 2020), so BM3D is
measured on exactly the noisy images the networks see instead of being quoted.

BM3D is told the true noise level: the evaluation sets ``sigma`` to the row's level before
restoring a set (``needs_noise_level``). It runs on the CPU, one image at a time, and is
slow (about 20 s per CBSD68 image), so the evaluation restores with it inside its
image-reading worker processes (``restores_in_workers``): ``num_workers`` images at once.
"""

from __future__ import annotations

import importlib.metadata

import bm3d
import numpy as np
import torch
from torch import nn


def bm3d_version() -> str:
    try:
        return importlib.metadata.version("bm3d")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


class BM3D(nn.Module):
    """CBM3D on RGB images, BM3D on gray ones (an image whose three channels are equal, as the
    gray sets' items are). Input and output are (B, C, H, W) in [0, 1]; ``sigma`` is on the
    0-255 scale. ``profile`` is the package's parameter profile ("np": the published one)."""

    size_multiple = (1, 1)  # any size: restore.inference pads nothing
    needs_noise_level = True
    restores_in_workers = True

    def __init__(self, sigma: float | None = None, profile: str = "np"):
        super().__init__()
        self.sigma = sigma
        self.profile = profile

    @property
    def description(self) -> str:
        return f"BM3D (CBM3D on RGB, bm3d {bm3d_version()}, profile {self.profile}), told the true sigma"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma is None:
            raise ValueError(
                "model=bm3d needs the noise level: it denoises the synthetic Gaussian sets, whose sigma= it is told"
            )
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"BM3D restores (B, 1 or 3, H, W) images, got shape {tuple(x.shape)}")
        return torch.stack([self._denoise(image) for image in x]).to(dtype=x.dtype, device=x.device)

    def _denoise(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().double().cpu().numpy()
        sigma = self.sigma / 255
        if image.shape[0] == 1 or (np.array_equal(array[0], array[1]) and np.array_equal(array[1], array[2])):
            gray = bm3d.bm3d(array[0], sigma_psd=sigma, profile=self.profile)
            return torch.from_numpy(np.asarray(gray)).expand(image.shape[0], -1, -1)
        color = bm3d.bm3d_rgb(array.transpose(1, 2, 0), sigma_psd=sigma, profile=self.profile)
        return torch.from_numpy(np.ascontiguousarray(np.asarray(color).transpose(2, 0, 1)))
