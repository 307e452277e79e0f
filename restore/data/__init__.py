"""Data: image I/O, the benchmark table, synthetic degradations and the dataset builder.

The LightningDataModule lives in ``restore.data.datamodule`` (imported on its own:
it pulls in Lightning).
"""

from restore.data.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from restore.data.degrade import DEGRADATIONS, Degradation, build_degradation
from restore.data.io import ImageReadError, read_image, write_image
from restore.data.layout import DatasetError
from restore.data.paired import RestorationDataset, build_dataset

__all__ = [
    "BENCHMARKS",
    "DEGRADATIONS",
    "Benchmark",
    "DatasetError",
    "Degradation",
    "ImageReadError",
    "RestorationDataset",
    "build_dataset",
    "build_degradation",
    "get_benchmark",
    "read_image",
    "write_image",
]
