"""Seeds and samplers: every random choice comes from the seed and a position, nothing else.

The training stream is an endless sequence of samples. Epoch ``e`` of the stream
is a permutation of the images seeded by ``(seed, e)``; each drawn image yields
``patches_per_image`` consecutive samples (one decode, several crops). Ranks
take turns drawing images, so their shards are disjoint. The random choices of
a sample (crop, flips, degradation) are seeded by its global position in the
stream, which makes the stream the same for any number of workers and lets a
resumed run start exactly where it stopped.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed from a tuple of integers and strings (stable across runs and machines)."""
    words = [key if isinstance(key, int) else zlib.crc32(key.encode()) for key in keys]
    if any(word < 0 for word in words):
        raise ValueError(f"seeds and positions must be non-negative, got {keys}")
    high, low = np.random.SeedSequence(words).generate_state(2)
    return (int(high) << 32 | int(low)) >> 1


class StreamKey(NamedTuple):
    """A training sample: which image, and its global position in the stream (the seed of its crop)."""

    image: int
    position: int


class TrainStreamSampler(Sampler[StreamKey]):
    """The training stream of one rank, epoch by epoch, starting after ``start`` consumed samples.

    Each iteration yields the rest of the current epoch; an epoch has
    ``len(self)`` samples per rank, a multiple of ``batch_size``: the images of
    one permutation divided among the ranks, rounded down to whole batches
    (at least one batch). The stream itself never skips an image: a permutation
    left unfinished at an epoch's end continues in the next.
    """

    def __init__(
        self,
        num_images: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        patches_per_image: int = 1,
    ):
        if num_images < 1:
            raise ValueError("the training set is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        if start < 0:
            raise ValueError(f"train_start must be >= 0, got {start}")
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.rank, self.world_size, self.patches_per_image = rank, world_size, patches_per_image
        batches = num_images * patches_per_image // (world_size * batch_size)
        self.samples_per_epoch = max(1, batches) * batch_size
        self.next_sample = start
        self._permutation: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.samples_per_epoch

    def key(self, sample: int) -> StreamKey:
        """The ``sample``-th sample of this rank's stream."""
        draw, patch = divmod(sample, self.patches_per_image)
        global_draw = draw * self.world_size + self.rank  # ranks take turns drawing images
        epoch, slot = divmod(global_draw, self.num_images)
        return StreamKey(int(self.permutation(epoch)[slot]), global_draw * self.patches_per_image + patch)

    def permutation(self, epoch: int) -> np.ndarray:
        if self._permutation is None or self._permutation[0] != epoch:
            rng = np.random.default_rng(derive_seed(self.seed, "epoch", epoch))
            self._permutation = (epoch, rng.permutation(self.num_images))
        return self._permutation[1]

    def __iter__(self) -> Iterator[StreamKey]:
        # The position advances when iteration starts (in the main process, never in a
        # worker), so the next epoch's iterator continues where this one ends.
        start = self.next_sample
        end = (start // self.samples_per_epoch + 1) * self.samples_per_epoch
        self.next_sample = end
        return (self.key(sample) for sample in range(start, end))


class RankStridedSampler(Sampler[int]):
    """Images ``rank, rank + world, ...``: every image on exactly one rank, no padding duplicates."""

    def __init__(self, num_images: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, num_images, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
