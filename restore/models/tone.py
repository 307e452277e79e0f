"""Classical low-light baselines as models: histogram equalisation, CLAHE and a global tone curve.

``python evaluate.py suite=lowlight datasets=[LOL] model=clahe`` scores them through the same
path, on the same images, as a network. HE and CLAHE are scikit-image's; the tone curve is the
best single global curve for a training split (per channel, the mean target value of every
input level: the curve of least squared error), which shows how much of a dataset one global
brightness mapping explains. Fit it with

    python -m restore.models.tone LOL --data-root DATA --out conf/model/lol_tone_curve.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from skimage import color, exposure
from torch import nn

from restore.data import build_dataset, get_benchmark
from restore.errors import exit_on_user_error

LEVELS = 256


class PerImageEnhancement(nn.Module):
    """A classical method applied to each (H, W, 3) float64 image of a batch on the CPU."""

    size_multiple = (1, 1)  # any size: restore.inference pads nothing

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} enhances (B, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        images = [self.enhance(image.detach().permute(1, 2, 0).double().cpu().clamp(0, 1).numpy()) for image in x]
        out = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        return out.to(dtype=x.dtype, device=x.device)


class HistogramEqualization(PerImageEnhancement):
    """Global histogram equalisation of the HSV value channel (scikit-image), hue and saturation kept."""

    description = "histogram equalisation of the HSV value channel (skimage.exposure.equalize_hist)"

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        hsv = color.rgb2hsv(rgb)
        hsv[..., 2] = exposure.equalize_hist(hsv[..., 2], nbins=LEVELS)
        return color.hsv2rgb(hsv)


class CLAHE(PerImageEnhancement):
    """Contrast-limited adaptive histogram equalisation of the HSV value channel (scikit-image)."""

    def __init__(self, clip_limit: float = 0.01):
        super().__init__()
        if not 0 < clip_limit <= 1:
            raise ValueError(f"clip_limit={clip_limit}: must be in (0, 1]")
        self.clip_limit = clip_limit

    @property
    def description(self) -> str:
        return f"CLAHE of the HSV value channel (skimage.exposure.equalize_adapthist, clip_limit {self.clip_limit})"

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        # scikit-image equalises the V channel of a color image and converts back itself
        return exposure.equalize_adapthist(rgb, clip_limit=self.clip_limit, nbins=LEVELS)


class ToneCurve(nn.Module):
    """One global lookup table per channel: every pixel of 8-bit level v becomes ``curve[c][v]``."""

    size_multiple = (1, 1)

    def __init__(self, curve: Sequence[Sequence[float]], fitted_on: str = ""):
        super().__init__()
        table = torch.as_tensor(np.asarray(curve, dtype=np.float32))
        if table.shape != (3, LEVELS):
            raise ValueError(f"curve: needs 3 channels x {LEVELS} levels, got shape {tuple(table.shape)}")
        self.register_buffer("curve", table, persistent=False)
        self.fitted_on = fitted_on

    @property
    def description(self) -> str:
        return f"a global tone curve per channel, fitted on {self.fitted_on or 'a training split'}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ToneCurve maps (B, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        levels = (x.detach().float().clamp(0, 1) * (LEVELS - 1)).round().long()
        curve = self.curve.to(x.device)
        mapped = torch.stack([curve[c][levels[:, c]] for c in range(3)], dim=1)
        return mapped.to(x.dtype)


def fit_tone_curve(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The least-squares global curve (3, 256) for (input, target) float images in [0, 1]:
    per channel and input level, the mean target value. Levels no pixel has are interpolated."""
    sums = np.zeros((3, LEVELS))
    counts = np.zeros((3, LEVELS))
    for degraded, target in pairs:
        levels = np.clip(np.rint(degraded * (LEVELS - 1)), 0, LEVELS - 1).astype(np.int64)
        for c in range(3):
            sums[c] += np.bincount(levels[..., c].ravel(), weights=target[..., c].ravel(), minlength=LEVELS)
            counts[c] += np.bincount(levels[..., c].ravel(), minlength=LEVELS)
    if not counts.any():
        raise ValueError("no pixels to fit a tone curve on")
    curve = np.zeros((3, LEVELS))
    grid = np.arange(LEVELS)
    for c in range(3):
        seen = counts[c] > 0
        curve[c] = np.interp(grid, grid[seen], sums[c][seen] / counts[c][seen])
    return curve


def fit_on_dataset(name: str, data_root: Path, split: str = "train") -> tuple[np.ndarray, str]:
    """The curve of ``split`` of a paired benchmark (``train``: its training split, without the
    hold-out where it has one), and a description of the images it was fitted on."""
    benchmark = get_benchmark(name)
    if benchmark.kind != "paired":
        raise ValueError(f"{benchmark.name} is not a paired dataset; a tone curve is fitted on (input, target) pairs")
    dataset = build_dataset(benchmark.name, data_root / benchmark.name, split)
    pairs = (dataset[i] for i in range(len(dataset)))
    curve = fit_tone_curve(
        (item["input"].permute(1, 2, 0).numpy(), item["target"].permute(1, 2, 0).numpy()) for item in pairs
    )
    held_out = " without its hold-out" if split == "train" and benchmark.holdout is not None else ""
    return curve, f"{benchmark.name} {split}{held_out} ({len(dataset)} pairs)"


def write_preset(curve: np.ndarray, fitted_on: str, out: Path) -> None:
    """A ``conf/model`` preset holding the curve, a channel per line (never overwrites a file)."""
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another path (existing files are never overwritten)")
    channels = "\n".join(f"  - [{', '.join(f'{value:.5f}' for value in channel)}]" for channel in curve)
    out.write_text(
        f"# The least-squares global tone curve of {fitted_on}: one lookup table per RGB channel\n"
        "# (8-bit input level -> output), written by `python -m restore.models.tone`.\n"
        "_target_: restore.models.tone.ToneCurve\n"
        f"fitted_on: {fitted_on}\n"
        f"curve:\n{channels}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fit the global tone curve of a paired dataset's training split.")
    parser.add_argument("dataset", help="a paired benchmark, e.g. LOL")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--split", default="train", help="train: the training split without its hold-out")
    parser.add_argument("--out", type=Path, required=True, help="the model preset to write (.yaml)")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        curve, fitted_on = fit_on_dataset(args.dataset, args.data_root, args.split)
        write_preset(curve, fitted_on, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
