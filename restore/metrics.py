"""PSNR and SSIM with explicit scoring protocols.

Published restoration numbers differ as much by how they were scored as by
the model: RGB or Y, MATLAB's 3-D SSIM or per-channel 2-D SSIM, float or
uint8 outputs, ECC alignment. A :class:`Protocol` names every one of those
choices; ``restore.data.benchmarks`` assigns one to each benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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

    color: Literal["rgb", "y", "gray"] = "rgb"
    ssim: Literal["matlab3d", "gaussian2d"] = "gaussian2d"
    quantize: Literal["uint8", "float"] = "uint8"
    crop_border: int = 0
    align: Literal["none", "ecc"] = "none"

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
