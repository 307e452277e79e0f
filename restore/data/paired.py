"""The dataset every training and evaluation run reads through: :func:`build_dataset`.

Items are dicts ``{"input": (3, H, W) float32, "target": (3, H, W) float32, "name": str}``
(no ``"target"`` for input-only sets such as DND), full-size unless a
``patch_size`` is given. Everything random about an item (crop position,
flips, degradation noise) is seeded by ``(seed, index)``, or, for training
streams, ``(seed, position in the stream)``: the same item comes out whatever
the worker count or order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from restore.data.benchmarks import Benchmark, get_benchmark
from restore.data.degrade import Degradation, build_degradation
from restore.data.io import decode_image_cached, to_float
from restore.data.layout import DatasetError, FileSource, Sample, Source
from restore.data.sampling import StreamKey, derive_seed


class RestorationDataset(Dataset):
    """(input, target) pairs of one benchmark split; see :func:`build_dataset`."""

    def __init__(
        self,
        benchmark: Benchmark,
        samples: list[Sample],
        *,
        degradation: Degradation | None = None,
        seed: int = 0,
        patch_size: int | None = None,
        augment: bool = False,
        channel_shuffle: bool = False,
        cache_dir: str | Path | None = None,
    ):
        self.benchmark, self.samples = benchmark, samples
        self.degradation, self.seed, self.patch_size, self.cache_dir = degradation, seed, patch_size, cache_dir
        steps = []
        if patch_size:
            steps.append(A.RandomCrop(patch_size, patch_size))
        if augment:
            steps.append(A.SquareSymmetry())  # the 8 flips and quarter turns, uniformly
        if channel_shuffle:
            # One of the 6 orders of R, G, B per sample: colors a training set lacks (saturated blues,
            # greens) appear, while the noise statistics, the same in every channel, do not change.
            steps.append(A.ChannelShuffle(p=1.0))
        # additional_targets: the target gets exactly the crop and flips of the input.
        self.transform = A.Compose(steps, additional_targets={"target": "image"}) if steps else None
        self._last_read: tuple[int, np.ndarray | None, np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        return [sample.name for sample in self.samples]

    def __getitem__(self, key: int | StreamKey) -> dict[str, Any]:
        # An int is item i (validation, evaluation); a StreamKey is a training sample.
        index, randomness = (
            (key.image, ("stream", key.position)) if isinstance(key, StreamKey) else (key, ("item", key))
        )
        index = int(index)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} is outside {self.benchmark.name}'s {len(self.samples)} items")
        sample = self.samples[index]
        image, target = self._read(index, sample)  # (H, W, 3) uint8/uint16/float32, or None
        if self.transform is not None:
            image, target = self._transform(sample, image, target, derive_seed(self.seed, *randomness, "augment"))
        target_tensor = None if target is None else _to_tensor(target)
        if sample.input is None:  # a clean set: the degradation makes the input
            clean = target_tensor[:1] if self.benchmark.gray else target_tensor
            degraded = self.degradation(clean, seed=derive_seed(self.seed, *randomness, "degrade"))
            image_tensor = degraded.expand(3, -1, -1).contiguous() if self.benchmark.gray else degraded
        else:
            image_tensor = _to_tensor(image)
        item = {"input": image_tensor, "name": sample.name}
        if target_tensor is not None:
            item["target"] = target_tensor
        return item

    def _read(self, index: int, sample: Sample) -> tuple[np.ndarray | None, np.ndarray | None]:
        # The last pair is kept: a training stream cuts several patches from one decode.
        if self._last_read is not None and self._last_read[0] == index:
            return self._last_read[1], self._last_read[2]
        image = self._read_source(sample.input) if sample.input is not None else None
        target = self._read_source(sample.target) if sample.target is not None else None
        if image is not None and target is not None and image.shape[:2] != target.shape[:2]:
            target = _crop_target(sample, image, target)
        self._last_read = (index, image, target)
        return image, target

    def _read_source(self, source: Source) -> np.ndarray:
        if self.cache_dir is not None and isinstance(source, FileSource):
            return decode_image_cached(source.path, self.cache_dir)
        return source.read()

    def _transform(self, sample: Sample, image, target, seed: int):
        reference = image if image is not None else target
        height, width = reference.shape[:2]
        if self.patch_size and (height < self.patch_size or width < self.patch_size):
            raise DatasetError(
                f"{sample.input or sample.target} is {width}x{height}, smaller than patch_size={self.patch_size}; "
                "lower patch_size or leave this image out"
            )
        self.transform.set_random_seed(seed)
        if image is None:
            return None, self.transform(image=target)["image"]
        if target is None:
            return self.transform(image=image)["image"], None
        out = self.transform(image=image, target=target)
        return out["image"], out["target"]


def _crop_target(sample: Sample, image: np.ndarray, target: np.ndarray) -> np.ndarray:
    (h, w), (th, tw) = image.shape[:2], target.shape[:2]
    if not sample.crop_target or th < h or tw < w:
        raise DatasetError(
            f"{sample.input} is {w}x{h} but its target {sample.target} is {tw}x{th}; "
            "an input and its target must have the same size"
        )
    top, left = (th - h) // 2, (tw - w) // 2  # documented for SOTS indoor: the GT's border is cut off
    return target[top : top + h, left : left + w]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) integers or floats -> (C, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(image).transpose(2, 0, 1)))


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    *,
    degradation: Mapping[str, Any] | str | Degradation | None = None,
    seed: int = 0,
    patch_size: int | None = None,
    augment: bool = False,
    channel_shuffle: bool = False,
    max_images: int | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> RestorationDataset:
    """The dataset ``name`` (a key of ``BENCHMARKS``) read from ``root``, the dataset's own folder
    (``<data_root>/<Name>``; None for ``demo``).

    degradation: required for clean sets (CBSD68, demo, ...), which it turns into pairs;
        refused for sets that have real inputs.
    seed: seeds every random choice together with the item's index.
    patch_size: random square crops of this size (full images when None).
    augment: random flips and quarter turns, the same for input and target.
    channel_shuffle: also a random order of the color channels, the same for input and target.
    max_images: keep this many evenly spaced items (quick validation on large sets).
    cache_dir: keep decoded images there, uncompressed (see ``io.decode_image_cached``); about
        3 bytes per pixel of the dataset, written while the first epoch reads.
    options: dataset options from the table, e.g. GoPro ``blur_kind="blur_gamma"``.
    """
    benchmark = get_benchmark(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1):
        raise ValueError(f"patch_size must be a positive integer or None, got {patch_size!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    if benchmark.kind == "clean":
        if degradation is None:
            raise ValueError(
                f"{benchmark.name} holds clean images only: name a degradation to make its inputs, "
                "e.g. degradation={'name': 'gaussian_noise', 'sigma': 25}"
            )
        degradation = build_degradation(degradation)
    elif degradation is not None:
        raise ValueError(f"{benchmark.name} has real degraded inputs; a degradation applies only to clean-image sets")
    samples = benchmark.samples(root, split, **options)
    if max_images is not None and max_images < len(samples):
        samples = [samples[(2 * i + 1) * len(samples) // (2 * max_images)] for i in range(max_images)]
    return RestorationDataset(
        benchmark,
        samples,
        degradation=degradation,
        seed=seed,
        patch_size=patch_size,
        augment=augment,
        channel_shuffle=channel_shuffle,
        cache_dir=cache_dir,
    )
