"""How fast the training data pipeline feeds patch pairs, against what MAXIM-3S consumes on a GPU.

Generates a folder of 1280x720 PNG pairs (GoPro's frame size; photographic
content with sensor-like noise so that the files compress like real frames),
then measures training pairs per second through the real path:
``RestorationDataModule`` -> PNG decode of input and target -> paired random
crop -> flips / quarter turns -> tensors -> batches.

- per worker: ``num_workers=0``, everything in this process;
- with N workers: the DataLoader with N worker processes, as training runs it;

each for three ways of reading: decoding both PNGs for every pair, cutting
``patches_per_image=4`` crops from each decode, and the decoded cache
(``cache_dir``, measured warm, i.e. from the second epoch on).

The GPU side is not measured here (that is benchmarks/bench_model.py's job);
the script states the assumption it compares with: MAXIM-3S costs 152 GMACs
per 256x256 forward pass (fvcore, ../shared/ANCHORS.md section 1b), a training
step about three forward passes, so 912 GFLOP per patch; a GPU reaching 35% of
its dense bf16 peak (the forward+backward target of docs/performance.md) then trains
0.35 * peak / 912 GFLOP patches per second.

    python benchmarks/bench_data.py [--pairs 16] [--workers 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

from restore.data import build_dataset
from restore.data.datamodule import RestorationDataModule

TRAIN_FLOP_PER_PATCH = 3 * 152e9 * 2  # fwd + bwd ~ 3 forwards; 152 GMACs at 256x256; 2 FLOP per MAC
UTILIZATION = 0.35
GPUS = {"A100 (312 TFLOP/s bf16)": 312e12, "H100 SXM (989 TFLOP/s bf16)": 989e12}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def make_pairs(folder: Path, count: int) -> float:
    """``count`` 1280x720 pairs in ``folder/{input,target}``; returns the mean PNG size in MB."""
    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        (folder / sub).mkdir(parents=True)
    sizes = []
    for i in range(count):
        photo = cv2.resize(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()[:, :, :3], (1280, 720))
        target = np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255).astype(np.uint8)  # sensor-like grain
        blurred = cv2.blur(target, (9, 1))  # an input that differs from its target, like a blurred frame
        for sub, image in (("target", target), ("input", blurred)):
            path = folder / sub / f"{i:06d}.png"
            cv2.imwrite(str(path), image[:, :, ::-1])
            sizes.append(path.stat().st_size)
    return float(np.mean(sizes)) / 1e6


def pairs_per_second(root: Path, *, workers: int, seconds: float, **options) -> float:
    datamodule = RestorationDataModule(
        "folder", str(root), batch_size=8, num_workers=workers, pin_memory=False, **options
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batches = (batch for _ in range(1000) for batch in loader)  # epoch after epoch
    for _ in range(max(2, workers * 2)):  # start the workers, fill their prefetch queues
        next(batches)
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pairs += len(next(batches)["name"])
    rate = pairs / (time.perf_counter() - start)
    del batches, loader  # stop the worker processes
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=16, help="generated 1280x720 pairs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs"
        megabytes = make_pairs(pairs, args.pairs)
        print(f"data: {args.pairs} generated 1280x720 PNG pairs, {megabytes:.2f} MB per file; patch {args.patch_size}")
        cache = Path(tmp) / "cache"
        readings = {
            "PNG decode per pair": {},
            "patches_per_image=4": {"patches_per_image": 4},
            "decoded cache (warm)": {"cache_dir": str(cache)},
        }
        training_set = build_dataset("folder", pairs, "train", patch_size=args.patch_size, cache_dir=cache)
        for index in range(len(training_set)):  # the first epoch: decode once, fill the cache
            training_set[index]
        for reading, options in readings.items():
            for workers in (0, args.workers):
                rate = pairs_per_second(
                    pairs, workers=workers, seconds=args.seconds, patch_size=args.patch_size, **options
                )
                where = "per worker (in process)" if workers == 0 else f"with {workers} workers"
                print(f"{reading:22s}: {rate:7.1f} pairs/s {where}")
    print("assumed MAXIM-3S training speed at 256x256 (912 GFLOP per patch, 35% of the bf16 peak):")
    for gpu, peak in GPUS.items():
        print(f"  {gpu}: {UTILIZATION * peak / TRAIN_FLOP_PER_PATCH:.0f} pairs/s")


if __name__ == "__main__":
    main()
