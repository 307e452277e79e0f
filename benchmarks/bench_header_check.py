"""How long training's start-up check of every file's header takes on a GoPro-sized training list.

    python benchmarks/bench_header_check.py [--pairs 2103] [--decode-sample 40] [--out FILE.json]

Writes a GoPro-layout folder of 1280x720 PNG pairs (GoPro's train split has 2,103) into a
temporary directory, then times ``check_headers`` (what ``datamodule.setup("fit")`` runs) over
all of them, next to full decodes of a sample (what reading every file would cost, per pair).
The page cache is warm for both: the files were just written.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from restore.data.benchmarks import get_benchmark
from restore.data.checks import check_headers, sample_problem


def write_gopro_like(root: Path, pairs: int, scenes: int = 22) -> None:
    """``train/<scene>/{blur,sharp}/NNNNNN.png`` at 1280x720, a few distinct frames written again."""
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), np.uint8), (0, 0), 3) for _ in range(4)]
    encoded = [cv2.imencode(".png", frame)[1].tobytes() for frame in frames]
    for i in range(pairs):
        scene = root / "train" / f"GOPR{i % scenes:04d}_11_00"
        for kind in ("blur", "sharp"):
            folder = scene / kind
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}.png").write_bytes(encoded[i % len(encoded)])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2103, help="training pairs (GoPro's train split: 2103)")
    parser.add_argument("--decode-sample", type=int, default=40, help="pairs fully decoded for comparison")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_gopro_like(root, args.pairs)
        samples = get_benchmark("GoPro").samples(root, "train")
        start = time.perf_counter()
        check_headers(samples, "GoPro (train)", patch_size=256)
        headers = time.perf_counter() - start
        start = time.perf_counter()
        for sample in samples[: args.decode_sample]:
            assert sample_problem(sample, decode=True, patch_size=256) is None
        decode_per_pair = (time.perf_counter() - start) / args.decode_sample
    result = {
        "cpu": cpu_name(),
        "pairs": len(samples),
        "header_check_seconds": round(headers, 3),
        "header_check_ms_per_pair": round(1000 * headers / len(samples), 3),
        "full_decode_ms_per_pair": round(1000 * decode_per_pair, 1),
        "full_decode_seconds_estimated": round(decode_per_pair * len(samples), 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
