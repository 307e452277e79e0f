"""Helpers shared by the tests: paths to ../shared and small model configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTORE_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip saying so when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (set RESTORE_SHARED to the shared/ folder to run this test)")
    return path


# A small MAXIM with every kind of module (2 stages, 3 scales, cross-gating),
# non-square blocks and a 16 x 32 size multiple, cheap enough for CPU tests.
TINY_MAXIM = dict(
    features=8,
    depth=3,
    num_stages=2,
    num_groups=1,
    num_bottleneck_blocks=1,
    num_supervision_scales=3,
    block_size_hr=(4, 8),
    grid_size_hr=(8, 4),
    block_size_lr=(2, 4),
    grid_size_lr=(2, 4),
)
