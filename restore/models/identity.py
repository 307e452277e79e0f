"""The identity baseline: ``model=identity`` scores the degraded input as it is."""

from __future__ import annotations

import torch
from torch import nn


class IdentityBaseline(nn.Module):
    """Returns its input. Evaluated, it gives the row every results table should show:
    the score of the degraded input against the target, before any restoration.

    Evaluation only: it has no parameters, so there is nothing to train.
    """

    size_multiple = (1, 1)  # any size: restore.inference pads nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x
