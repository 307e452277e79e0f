"""MAXIM's training loss: Charbonnier + FFT-L1 over every stage and every scale.

Definition (paper: Tu et al., CVPR 2022; lambda = 0.1, epsilon = 1e-3)::

    L = sum over stages s, scales n of  Charb(R_sn, T_n) + lambda * Freq(R_sn, T_n)

    Charb(R, T) = mean over all elements of sqrt((R - T)^2 + eps^2)
    Freq(R, T)  = (sum |Re(F(R) - F(T))| + sum |Im(F(R) - F(T))|) / (2 * numel(R))

where F is the complex 2-D DFT over (H, W) with torch's default ("backward")
normalisation, i.e. unnormalised, as in the frequency loss of MIMO-UNet that
MAXIM adopts; "mean over real and imaginary parts" equals the L1 mean of the
stacked (real, imag) tensor. Every term is a mean, so stages and scales
weigh equally whatever their resolution. T_n is the target resized to scale n:
antialiased bilinear by default (the paper's multi-scale targets), or
'nearest-exact', the way the model itself downsamples its input.
The frequency term runs in float32 even under autocast: half-precision FFTs
need power-of-two sizes and lose the small high-frequency differences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2))."""
    return torch.sqrt((pred - target).square() + eps * eps).mean()


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the unnormalised 2-D FFTs, averaged over real and imaginary parts."""
    with torch.autocast(device_type=pred.device.type, enabled=False):
        diff = torch.fft.fft2(pred.float() - target.float())  # F is linear: F(R) - F(T) = F(R - T)
    return torch.view_as_real(diff).abs().mean()


def scale_target(target: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """The target at one supervision scale (NCHW)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    if mode == "bilinear":
        return F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(target, size=size, mode="nearest-exact")


class MultiStageLoss(nn.Module):
    """The sum over stages and scales; ``forward`` returns the total and its parts.

    ``outputs`` is MAXIM's ``outputs[stage][k]`` (any nesting of that shape;
    a single-output model's tensor is treated as one stage with one scale).
    """

    def __init__(self, fft_weight: float = 0.1, eps: float = 1e-3, target_resize: str = "bilinear"):
        super().__init__()
        if target_resize not in ("bilinear", "nearest-exact"):
            raise ValueError(f"loss.target_resize must be 'bilinear' or 'nearest-exact', got {target_resize!r}")
        if fft_weight < 0 or eps <= 0:
            raise ValueError(f"loss: fft_weight must be >= 0 and eps > 0, got fft_weight={fft_weight}, eps={eps}")
        self.fft_weight, self.eps, self.target_resize = fft_weight, eps, target_resize

    def forward(self, outputs, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stages = [[outputs]] if isinstance(outputs, torch.Tensor) else outputs
        parts: dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        for s, stage in enumerate(stages):
            stage_loss = target.new_zeros(())
            for pred in stage:
                t = scale_target(target, pred.shape[-2:], self.target_resize)
                stage_loss = stage_loss + charbonnier(pred, t, self.eps)
                if self.fft_weight:
                    stage_loss = stage_loss + self.fft_weight * fft_l1(pred, t)
            parts[f"stage{s}"] = stage_loss.detach()
            total = total + stage_loss
        return total, parts
