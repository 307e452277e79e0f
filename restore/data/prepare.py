"""Check a downloaded dataset and run its one-time preparation step.

``python data/prepare.py <dataset> --root data/<Name>`` reads every split the
way training and evaluation will (same pairing rules), decodes every file,
compares pair sizes and file counts with the official release, and prints a
one-screen report. Two datasets need a one-time step, done here and only
adding files next to the originals (never modifying or moving them):

- SIDD: SIDD-Medium's 320 full-size pairs -> 512x512 crops with stride 384 in
  ``train_crops/{input,target}/`` (the crops NAFNet/Restormer train on).
- FiveK: MIT's 16-bit ProPhoto RGB expert C TIFFs in ``tiff16_c/`` -> 8-bit sRGB
  PNGs in ``expertC/``.

Interrupted runs resume: finished files are kept, nothing is overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from restore.data.benchmarks import SIDD_CROPS, Benchmark, get_benchmark
from restore.data.checks import sample_problem
from restore.data.io import ImageReadError, decode_image, to_float, write_image
from restore.data.layout import DatasetError, list_images
from restore.errors import exit_on_user_error

SIDD_CROP_SIZE, SIDD_CROP_STRIDE = 512, 384


@dataclass
class SplitReport:
    split: str
    pairs: int = 0
    expected: int | None = None
    problems: list[str] = field(default_factory=list)


def check_split(benchmark: Benchmark, root: Path, split: str, *, decode: bool = True, **options) -> SplitReport:
    """Pair one split and check every pair: decoded (or, without ``decode``, sizes from the file headers).
    Problems are collected, not raised."""
    report = SplitReport(split, expected=benchmark.counts.get(split))
    try:
        samples = benchmark.samples(root, split, **options)
    except (DatasetError, ImageReadError) as error:
        report.problems.append(str(error))
        return report
    report.pairs = len(samples)
    if report.expected is not None and report.pairs != report.expected:
        report.problems.append(f"{report.pairs} samples, the official release has {report.expected}")
    verb = "reading" if decode else "checking sizes"
    for sample in track(samples, description=f"{benchmark.name} {split}: {verb}", transient=True):
        problem = sample_problem(sample, decode=decode)
        if problem:
            report.problems.append(problem)
    return report


def crop_positions(size: int, crop: int, stride: int) -> list[int]:
    """Starts of ``crop``-long windows every ``stride`` pixels, plus one flush with the far edge."""
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    return starts if starts[-1] == size - crop else [*starts, size - crop]


def cut_sidd_crops(root: Path, crop: int = SIDD_CROP_SIZE, stride: int = SIDD_CROP_STRIDE) -> int:
    """SIDD-Medium pairs -> ``train_crops/{input,target}/<scene folder>_<010|011>_<k>.png``; returns crops written."""
    samples = get_benchmark("SIDD").samples(root, "medium")
    out = root / SIDD_CROPS
    written = 0
    for sample in track(samples, description="SIDD: cutting training crops"):
        scene, stem = sample.name.split("/")
        prefix = f"{scene}_{stem.rsplit('_', 1)[-1]}"
        noisy, clean = sample.input.read(), sample.target.read()  # (H, W, 3) uint8
        tops, lefts = crop_positions(noisy.shape[0], crop, stride), crop_positions(noisy.shape[1], crop, stride)
        for k, (top, left) in enumerate((top, left) for top in tops for left in lefts):
            name = f"{prefix}_{k:03d}.png"
            for folder, image in (("input", noisy), ("target", clean)):
                window = image[top : top + crop, left : left + crop]
                written += _write_new(out / folder / name, to_float(window))
    return written // 2


def prophoto_to_srgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) ProPhoto RGB (ROMM) in [0, 1] -> sRGB in [0, 1], clipped.

    Written here because kornia and OpenCV have no ProPhoto space: ROMM decoding
    (gamma 1.8, linear below 1/512), ROMM -> XYZ (D50), Bradford D50 -> D65; then
    kornia's XYZ -> linear sRGB and sRGB encoding.
    """
    import kornia

    v = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    linear = torch.where(v < 1 / 32, v / 16, v.clamp(min=0) ** 1.8)
    to_xyz_d65 = torch.tensor(_BRADFORD_D50_TO_D65) @ torch.tensor(_ROMM_TO_XYZ_D50)
    xyz = torch.einsum("ij,bjhw->bihw", to_xyz_d65.float(), linear)
    srgb = kornia.color.linear_rgb_to_rgb(kornia.color.xyz_to_rgb(xyz).clamp(0, 1))
    return srgb[0].permute(1, 2, 0).numpy()


_ROMM_TO_XYZ_D50 = [[0.7976749, 0.1351917, 0.0313534], [0.2880402, 0.7118741, 0.0000857], [0.0, 0.0, 0.8252100]]
_BRADFORD_D50_TO_D65 = [
    [0.9555766, -0.0230393, 0.0631636],
    [-0.0282895, 1.0099416, 0.0210077],
    [0.0122982, -0.0204830, 1.3299098],
]


def convert_fivek_expert_c(root: Path) -> int:
    """``root/tiff16_c/*.tif`` (16-bit ProPhoto) -> ``root/expertC/<name>.png`` (8-bit sRGB); returns files written."""
    written = 0
    for tiff in track(list_images(root / "tiff16_c", "expert C TIFFs"), description="FiveK: expert C -> sRGB PNG"):
        image = to_float(decode_image(tiff))
        written += _write_new(root / "expertC" / f"{tiff.stem}.png", prophoto_to_srgb(image))
    return written


def _write_new(path: Path, image: np.ndarray) -> int:
    """Write ``path`` unless it exists; through a temporary file, so an interrupted run leaves no half file."""
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        write_image(temporary, image, overwrite=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return 1


def prepare(name: str, root: Path, *, decode: bool = True, console: Console | None = None, **options) -> bool:
    """Run the one-time step (if any), check every split, print the report; True when nothing is wrong."""
    console = console or Console()
    benchmark = get_benchmark(name)
    root = benchmark.resolve_root(root)
    if benchmark.name == "SIDD":
        medium = check_split(benchmark, root, "medium", decode=False)
        if not medium.problems:
            console.print(f"SIDD: {cut_sidd_crops(root)} new training crops in {root / SIDD_CROPS}")
    if benchmark.name == "FiveK" and (root / "tiff16_c").is_dir():
        console.print(f"FiveK: {convert_fivek_expert_c(root)} new expert C PNGs in {root / 'expertC'}")
    reports = [check_split(benchmark, root, split, decode=decode, **options) for split in benchmark.splits]
    table = Table(title=f"{benchmark.name} at {root}")
    for column in ("split", "samples", "official", "status"):
        table.add_column(column)
    for report in reports:
        status = "[green]ok[/green]" if not report.problems else f"[red]{len(report.problems)} problem(s)[/red]"
        table.add_row(report.split, str(report.pairs), str(report.expected or "-"), status)
    console.print(table)
    for report in reports:
        for problem in report.problems[:5]:
            console.print(f"[red]{report.split}[/red]: {problem}", highlight=False)
        if len(report.problems) > 5:
            console.print(f"{report.split}: ... and {len(report.problems) - 5} more")
    ok = not any(report.problems for report in reports)
    console.print(f"Scoring protocol: {benchmark.protocol.describe()}")
    console.print("[green]Ready.[/green]" if ok else "[red]Fix the problems above and run this again.[/red]")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset name, e.g. GoPro, SIDD, SOTS")
    parser.add_argument("--root", type=Path, required=True, help="the dataset folder, e.g. data/GoPro")
    parser.add_argument("--quick", action="store_true", help="pair, count and compare sizes without decoding")
    parser.add_argument("--blur-kind", choices=("blur", "blur_gamma"), help="GoPro: which blurred frames")
    args = parser.parse_args(argv)
    options = {"blur_kind": args.blur_kind} if args.blur_kind else {}
    with exit_on_user_error():
        return 0 if prepare(args.dataset, args.root, decode=not args.quick, **options) else 1


if __name__ == "__main__":
    sys.exit(main())
