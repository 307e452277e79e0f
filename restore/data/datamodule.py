"""One LightningDataModule for training, validation, test and prediction on any dataset.

Instantiated by Hydra from ``conf/data/<name>.yaml``. Batches are dicts
``{"input": (B, 3, H, W), "target": (B, 3, H, W), "name": list[str]}``.

- Training: random ``patch_size`` crops with the same flips and quarter turns on
  input and target, from an endless seeded stream (``restore.data.sampling``):
  sample k's image, crop, flips and noise depend on (seed, k) only, so the batches
  are the same for any ``num_workers``, and ``train_start`` (samples this rank has
  already consumed) resumes the stream exactly. ``len(train_dataloader())`` is the
  number of batches per epoch.
- Validation and test: full-size images, batch size 1, one loader per dataset
  (``val_names`` / ``val_protocols`` and ``test_names`` / ``test_protocols`` in the
  same order).
- Distributed (the Trainer runs with ``use_distributed_sampler=False``): when
  ``torch.distributed`` is initialised, each rank trains on its own shard of the
  stream and validates the images ``rank, rank + world, ...``: every image is
  scored exactly once, and ranks may hold different numbers of images (reduce
  metrics at the end of the epoch, not per step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from restore.data.benchmarks import get_benchmark
from restore.data.checks import check_headers
from restore.data.paired import RestorationDataset, build_dataset
from restore.data.sampling import RankStridedSampler, TrainStreamSampler
from restore.metrics import Protocol


@dataclass(frozen=True)
class DatasetSpec:
    """One set to score: a split of a benchmark, its degradation for clean-image sets, and its row name.

    Validation and test sets of training (``data.val_sets``/``test_sets``) and the rows
    of ``evaluate.py`` (one per noise level for clean-image sets) are both this.
    """

    name: str  # the benchmark, a key of restore.data.BENCHMARKS
    split: str
    root: str | Path | None
    degradation: Any = None
    max_images: int | None = None
    label: str = ""  # the row's name: "GoPro", "SOTS indoor", "CBSD68 σ25"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def protocol(self) -> Protocol:
        return get_benchmark(self.name).protocol

    @property
    def sigma(self) -> float | None:
        """The Gaussian noise level of a synthetic-noise set, None for any other."""
        degradation = self.degradation
        if isinstance(degradation, Mapping) and degradation.get("name") == "gaussian_noise":
            return degradation.get("sigma")
        return None

    @property
    def folder(self) -> str:
        """The label as a folder name: ``CBSD68_sigma25``, ``SOTS_indoor``."""
        return self.label.replace(" σ", "_sigma").replace(" ", "_").replace("/", "_")

    def build(self, seed: int) -> RestorationDataset:
        return build_dataset(
            self.name,
            self.root,
            self.split,
            degradation=self.degradation,
            seed=seed,
            max_images=self.max_images,
            **self.options,
        )


class RestorationDataModule(L.LightningDataModule):
    """Data for ``name`` (a key of ``restore.data.BENCHMARKS``) at ``root`` (the dataset's own folder).

    name, root: the training dataset; val/test sets default to the same dataset.
    degradation: makes the inputs of clean-image sets (demo, CBSD68, ...); a spec dict.
    train_split: the split trained on (None: a test-only dataset, no training).
    val_sets, test_sets: lists of ``{name, split, root, degradation, max_images, label}``.
        A set without ``root`` reads this datamodule's root when its ``name`` is this
        dataset's, and needs one otherwise. Default: this dataset's val split, and its
        test splits. ``degradation`` defaults to this datamodule's for clean sets.
    val_max_images: caps each validation set (evenly spaced images), None for all.
    patches_per_image: crops cut from each decoded training image (decoding is the
        cost of large images; crops of one image land in the same batch).
    channel_shuffle: training samples also get a random order of R, G, B.
    cache_dir: where training images are kept decoded, uncompressed (3 bytes per pixel,
        written during the first epoch); None decodes every time.
    options: dataset options, e.g. GoPro's ``blur_kind``.
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        *,
        degradation: Mapping[str, Any] | None = None,
        train_split: str | None = "train",
        val_sets: Sequence[Mapping[str, Any]] | None = None,
        test_sets: Sequence[Mapping[str, Any]] | None = None,
        val_max_images: int | None = None,
        patch_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 4,
        patches_per_image: int = 1,
        channel_shuffle: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
        **options: Any,
    ):
        super().__init__()
        self.benchmark = get_benchmark(name)
        self.name, self.root, self.degradation = self.benchmark.name, root, degradation
        self.options = dict(options)
        self.benchmark.resolve_options(self.options)  # an unknown option fails here, not at fit time
        for key, value, minimum in (
            ("patch_size", patch_size, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("patches_per_image", patches_per_image, 1),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"data.{key} must be an integer >= {minimum}, got {value!r}")
        if val_max_images is not None and (not isinstance(val_max_images, int) or val_max_images < 1):
            raise ValueError(f"data.val_max_images must be a positive integer or null, got {val_max_images!r}")
        if train_split is not None and train_split not in self.benchmark.splits:
            raise ValueError(
                f"data.train_split={train_split!r}: {self.name} has splits {', '.join(self.benchmark.splits)}"
            )
        self.train_split = train_split
        self.patch_size, self.batch_size, self.num_workers = patch_size, batch_size, num_workers
        self.patches_per_image, self.cache_dir, self.seed = patches_per_image, cache_dir, seed
        if not isinstance(channel_shuffle, bool):
            raise ValueError(f"data.channel_shuffle must be true or false, got {channel_shuffle!r}")
        self.channel_shuffle = channel_shuffle
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        default_val = [{"split": self.benchmark.val_split}] if self.benchmark.val_split else []
        default_test = [{"split": split} for split in self.benchmark.test_splits]
        self.val_specs = [
            self._spec(entry, f"data.val_sets[{i}]", val_max_images)
            for i, entry in enumerate(default_val if val_sets is None else val_sets)
        ]
        self.test_specs = [
            self._spec(entry, f"data.test_sets[{i}]", None)
            for i, entry in enumerate(default_test if test_sets is None else test_sets)
        ]
        self.train_start = 0  # training samples this rank has consumed; train_dataloader() resumes after them
        self.train_dataset: RestorationDataset | None = None
        self.val_datasets: list[RestorationDataset] = []
        self.test_datasets: list[RestorationDataset] = []

    def _spec(self, entry: Mapping[str, Any], key: str, max_images: int | None) -> DatasetSpec:
        entry = dict(entry)
        name = get_benchmark(entry.pop("name", self.name)).name
        if "split" not in entry:
            raise ValueError(f"{key} needs a split (one of {', '.join(get_benchmark(name).splits)})")
        split = entry.pop("split")
        if split not in get_benchmark(name).splits:
            raise ValueError(
                f"{key}: {name} has no split {split!r}; its splits: {', '.join(get_benchmark(name).splits)}"
            )
        if "root" in entry:
            root = entry.pop("root")
        elif name == self.name:
            root = self.root
        elif get_benchmark(name).needs_root:
            raise ValueError(f"{key} ({name}) needs a root, e.g. root: ${{data_root}}/{name}")
        else:
            root = None
        options = entry.pop("options", {}) or ({**self.options} if name == self.name else {})
        clean = get_benchmark(name).kind == "clean"
        degradation = entry.pop("degradation", self.degradation if clean else None)
        max_images = entry.pop("max_images", max_images)
        label = entry.pop("label", None) or f"{name}/{split}"
        if entry:
            raise ValueError(
                f"{key} has unknown key(s) {', '.join(entry)}; "
                "allowed: name, split, root, degradation, max_images, label, options"
            )
        return DatasetSpec(name, split, root, degradation, max_images, label, dict(options))

    # names and protocols, in loader order, for logging and scoring
    @property
    def val_names(self) -> list[str]:
        return [spec.label for spec in self.val_specs]

    @property
    def val_protocols(self) -> list[Protocol]:
        return [spec.protocol for spec in self.val_specs]

    @property
    def test_names(self) -> list[str]:
        return [spec.label for spec in self.test_specs]

    @property
    def test_protocols(self) -> list[Protocol]:
        return [spec.protocol for spec in self.test_specs]

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_dataset is None:
            if self.train_split is None:
                raise ValueError(
                    f"{self.name} is a test-only dataset (splits: {', '.join(self.benchmark.splits)}); "
                    "train on a dataset with a train split, e.g. data=demo"
                )
            self.train_dataset = build_dataset(
                self.name,
                self.root,
                self.train_split,
                degradation=self.degradation if self.benchmark.kind == "clean" else None,
                seed=self.seed,
                patch_size=self.patch_size,
                augment=True,
                channel_shuffle=self.channel_shuffle,
                cache_dir=self.cache_dir,
                **self.options,
            )
            check_headers(self.train_dataset.samples, f"data={self.name} ({self.train_split})", self.patch_size)
        if stage in ("fit", "validate", None) and not self.val_datasets:
            self.val_datasets = [spec.build(self.seed) for spec in self.val_specs]
            for spec, dataset in zip(self.val_specs, self.val_datasets):
                check_headers(dataset.samples, f"validation set {spec.label}")
        if stage in ("test", "predict", None) and not self.test_datasets:
            self.test_datasets = [spec.build(self.seed) for spec in self.test_specs]

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        rank, world_size = _rank_and_world()
        sampler = TrainStreamSampler(
            len(self.train_dataset),
            self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            start=self.train_start,
            patches_per_image=self.patches_per_image,
        )
        return self._loader(self.train_dataset, sampler, self.batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        if not self.val_datasets and self.val_specs:
            self.setup("validate")
        return [self._full_size_loader(dataset) for dataset in self.val_datasets]

    def test_dataloader(self) -> list[DataLoader]:
        if not self.test_datasets and self.test_specs:
            self.setup("test")
        return [self._full_size_loader(dataset) for dataset in self.test_datasets]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()

    def state_dict(self) -> dict[str, int]:
        """Saved in every checkpoint: how far this rank has read the training stream."""
        trainer = self.trainer
        consumed = self.train_start
        if trainer is not None:
            consumed = trainer.global_step * trainer.accumulate_grad_batches * self.batch_size
        return {"train_start": consumed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """On resume (before ``train_dataloader()``): continue the stream where the run stopped."""
        self.train_start = int(state_dict.get("train_start", 0))

    def _full_size_loader(self, dataset: RestorationDataset) -> DataLoader:
        rank, world_size = _rank_and_world()
        if rank >= len(dataset):
            # Fewer images than ranks: Lightning needs a batch from every rank's loader, so this
            # rank scores the first image again with weight 0, which the means leave out.
            return self._loader(Unweighted(dataset), [0], batch_size=1)
        return self._loader(dataset, RankStridedSampler(len(dataset), rank, world_size), batch_size=1)

    def _loader(self, dataset, sampler, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )


class Unweighted(torch.utils.data.Dataset):
    """A dataset's items with ``"weight": 0``: scored for the loop's sake, counted by no mean."""

    def __init__(self, dataset: RestorationDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "weight": 0.0}


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
