"""Finding and pairing files under a dataset root, with errors that name the path.

The pairing rules themselves (which input goes with which target) live in
``benchmarks.py``; this module holds what they share: the :class:`Sample`
record, the image sources a sample reads from, folder listing, and the one
pairing check that reports every unmatched file at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore.data.io import decode_image, is_image_file, read_mat_variable
from restore.errors import UserError


class DatasetError(UserError):
    """A dataset root that does not hold what its layout promises."""


# ---------------------------------------------------------------------------------------------
# Image sources: where one image of a sample comes from. Each reads to (H, W, 3) uint8 or uint16
# (float32 in [0, 1] for DND, whose .mat files hold floats).


@dataclass(frozen=True)
class FileSource:
    path: Path

    def read(self) -> np.ndarray:
        return decode_image(self.path)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class MatBlockSource:
    """One block of an array stored in a ``.mat`` file (SIDD: ``(40, 32, 256, 256, 3)`` uint8)."""

    path: Path
    key: str
    index: tuple[int, ...]

    def read(self) -> np.ndarray:
        return np.ascontiguousarray(read_mat_variable(self.path, self.key)[self.index])

    def __str__(self) -> str:
        return f"{self.path}[{self.key!r}][{', '.join(map(str, self.index))}]"


@dataclass(frozen=True)
class MatCropSource:
    """A box of a float image in a ``.mat`` file (DND: ``InoisySRGB``, rows and columns end-exclusive)."""

    path: Path
    key: str
    box: tuple[int, int, int, int]  # top, bottom, left, right

    def read(self) -> np.ndarray:
        top, bottom, left, right = self.box
        crop = read_mat_variable(self.path, self.key)[top:bottom, left:right]  # (h, w, 3) float in [0, 1]
        return np.ascontiguousarray(crop, dtype=np.float32)

    def __str__(self) -> str:
        return f"{self.path}[{self.key!r}] rows {self.box[0]}:{self.box[1]} cols {self.box[2]}:{self.box[3]}"


@dataclass(frozen=True)
class SkimageSource:
    """A photo that scikit-image ships (``skimage.data.<name>()``), no download."""

    name: str

    def read(self) -> np.ndarray:
        return _skimage_photo(self.name)

    def __str__(self) -> str:
        return f"skimage.data.{self.name}()"


@functools.cache  # a few MB in all; the demo reads each photo many times
def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    image.flags.writeable = False  # shared by every read
    return image


Source = FileSource | MatBlockSource | MatCropSource | SkimageSource


@dataclass(frozen=True)
class Sample:
    """One item of a dataset before it is read.

    ``input`` is None for clean sets (a degradation makes it); ``target`` is None for
    input-only sets. ``group`` keeps related images together when validation is held
    out (GoPro: the scene). ``crop_target`` allows a target larger than its input,
    cropped to the input's size around the centre (the SOTS-indoor GT border).
    """

    name: str
    input: Source | None
    target: Source | None
    group: str
    crop_target: bool = False


# ---------------------------------------------------------------------------------------------
# Listing and pairing.


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} does not exist; expected {what}")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file; expected a directory holding {what}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} does not exist; expected {what}")
    if path.is_dir():
        raise DatasetError(f"{path} is a directory; expected a file: {what}")
    return path


def list_images(folder: Path, what: str, *, recursive: bool = False, allow_empty: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted). A directory with an image's name is an error, not skipped."""
    require_dir(folder, what)
    entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    images = []
    for entry in entries:
        if not is_image_file(entry):
            continue
        if entry.is_dir():
            raise DatasetError(f"{entry} is a directory; expected an image file there ({what})")
        images.append(entry)
    if not images and not allow_empty:
        raise DatasetError(f"{folder} holds no image files; expected {what}")
    return images


def index_by_stem(paths: Iterable[Path], folder: Path, *, flat: bool = False) -> dict[str, Path]:
    """``{relative path without extension: path}`` (``flat``: the bare file stem, whatever the
    sub-folder); the same key twice (a.png and a.jpg, or part1/a.jpg and part2/a.jpg) is an error."""
    index: dict[str, Path] = {}
    for path in paths:
        key = path.stem if flat else path.relative_to(folder).with_suffix("").as_posix()
        if key in index:
            raise DatasetError(f"{index[key]} and {path} have the same name; keep one of them")
        index[key] = path
    return index


def pair_files(
    where: str,
    inputs: dict[str, Path],
    targets: dict[str, Path],
    target_key: Callable[[str], str] = lambda key: key,
    *,
    every_target_used: bool = True,
    expected: str = "",
) -> list[tuple[str, Path, Path]]:
    """Pair every input with ``targets[target_key(input key)]``; ``[(input key, input, target)]``.

    Raises one :class:`DatasetError` listing inputs without a target and, when
    ``every_target_used``, targets that no input points to.
    """
    pairs, orphans = [], []
    for key, path in sorted(inputs.items()):
        target = targets.get(target_key(key))
        if target is None:
            orphans.append(path)
        else:
            pairs.append((key, path, target))
    used = {target for _, _, target in pairs}
    unused = [path for path in targets.values() if path not in used] if every_target_used else []
    if orphans or unused:
        lines = [f"{where}: inputs and targets do not pair up{f' ({expected})' if expected else ''}"]
        if orphans:
            lines.append(f"  {len(orphans)} input(s) without a target, e.g. {_examples(orphans)}")
        if unused:
            lines.append(f"  {len(unused)} target(s) without an input, e.g. {_examples(unused)}")
        lines.append("  Add the missing files or remove the extra ones (files are paired by name, never by order).")
        raise DatasetError("\n".join(lines))
    return pairs


def _examples(paths: list[Path], limit: int = 3) -> str:
    shown = ", ".join(str(path) for path in paths[:limit])
    return shown + (", ..." if len(paths) > limit else "")
