"""Reading and writing images: the one reader every dataset path goes through.

Convention: images are HWC numpy arrays, RGB, float32 in [0, 1]
(:func:`read_image`). :func:`decode_image` returns the file's own 8- or 16-bit
integers so that training can crop before converting to float.
Everything that cannot be read raises :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from restore.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")

# ANYDEPTH keeps 16 bits; COLOR expands gray to 3 channels, drops alpha and, unlike
# IMREAD_UNCHANGED, applies the EXIF orientation (JPEG and PNG eXIf).
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR
_MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ImageReadError(UserError):
    """A file that should hold an image (or a ``.mat`` array) cannot be read."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` RGB ``uint8`` or ``uint16``, EXIF orientation applied."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory; expected an image file there")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path} does not exist") from None
    except OSError as error:
        raise ImageReadError(f"{path} cannot be read: {error.strerror or error}") from None
    if data.size == 0:
        raise ImageReadError(f"{path} is empty (0 bytes); download or extract it again")
    image = cv2.imdecode(data, _DECODE_FLAGS)
    if image is None:
        raise ImageReadError(
            f"{path} cannot be decoded: the file is truncated, corrupt or not an image "
            "(PNG, JPEG, TIFF, BMP, WebP are read); download or extract it again"
        )
    if image.dtype not in _MAX_VALUE:
        raise ImageReadError(f"{path} holds {image.dtype} samples; only 8- and 16-bit images are read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image_cached(path: str | os.PathLike, cache_dir: str | os.PathLike) -> np.ndarray:
    """:func:`decode_image` through a cache of uncompressed arrays: the first call decodes and stores
    ``<cache_dir>/<key>.npy``, later calls memory-map it (a crop then reads only its own rows).

    PNG decoding is the cost of training on large frames; a cached pair costs a memory copy. The key
    hashes the file's absolute path, size and modification time, so an edited file is decoded again.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return decode_image(path)  # raises the ImageReadError that names the problem
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cached = Path(cache_dir) / key[:2] / f"{key}.npy"
    if not cached.is_file():
        image = decode_image(path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{key}.{os.getpid()}.partial")  # workers may race: the last rename wins
        with open(partial, "wb") as file:
            np.save(file, image)
        os.replace(partial, cached)
    return _memory_map(str(cached))


@functools.lru_cache(maxsize=8192)  # opening a map costs more than cropping from it
def _memory_map(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def to_float(image: np.ndarray) -> np.ndarray:
    """8- or 16-bit integers -> float32 in [0, 1] (float input is returned as float32)."""
    if image.dtype in _MAX_VALUE:
        return image.astype(np.float32) / np.float32(_MAX_VALUE[image.dtype])
    return image.astype(np.float32, copy=False)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` float32 RGB in [0, 1]: 8/16-bit, gray, RGBA, EXIF-rotated."""
    return to_float(decode_image(path))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` as :func:`read_image` would return it, from the header, without decoding.

    A PNG or JPEG whose end is missing (an interrupted download or copy) is refused too: its header
    is intact, so only its last bytes tell.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory; expected an image file there")
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
            image_format = image.format
    except FileNotFoundError:
        raise ImageReadError(f"{path} does not exist") from None
    except Image.DecompressionBombError as error:  # PIL's refusal of > 178 megapixels, from the header
        raise ImageReadError(f"{path} is too large to restore here ({error}); crop or downscale it") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path} cannot be read as an image: {error}; download or extract it again") from None
    if image_format in _END_MARKERS and _END_MARKERS[image_format] not in _last_bytes(path, 64):
        raise ImageReadError(
            f"{path} is truncated (its {image_format} end marker is missing); download or extract it again"
        )
    # EXIF orientations 5-8 are quarter turns: the decoded image is transposed.
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _orientation(image) -> int:
    # A PNG's getexif() decodes the whole image to look for an eXIf chunk after the pixels; the
    # chunks before them (where writers put eXIf) are already parsed into info by Image.open.
    exif = image.getexif() if image.format != "PNG" else image.info.get("exif")
    if isinstance(exif, bytes):
        from PIL import Image

        parsed = Image.Exif()
        parsed.load(exif)
        exif = parsed
    return exif.get(0x0112, 1) if exif is not None else 1


# The chunk or marker a complete file ends with (a few writers pad after it, hence a search).
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}


def _last_bytes(path: Path, count: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - count))
        return file.read()


def write_image(path: str | os.PathLike, image, bits: int = 8, *, overwrite: bool = False) -> Path:
    """Write an image in [0, 1] as an 8- or 16-bit PNG (values clipped, then rounded).

    ``image``: HWC / HW numpy or CHW / HW torch tensor, 1 (gray), 3 (RGB) or 4 (RGBA)
    channels. An existing file is never replaced unless ``overwrite=True``.
    """
    path = Path(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: write_image writes PNG files; use a .png name")
    array = _as_hwc_array(image)
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: the image holds NaN or infinite values")
    scale = 255.0 if bits == 8 else 65535.0
    quantized = np.rint(np.clip(array, 0.0, 1.0) * scale).astype(np.uint8 if bits == 8 else np.uint16)
    if quantized.shape[2] in (3, 4):
        quantized = cv2.cvtColor(quantized, cv2.COLOR_RGB2BGR if quantized.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(".png", quantized)
    if not ok:
        raise ImageReadError(f"{path}: PNG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "x" creates the file only if it does not exist yet: no check-then-write race.
        with open(path, "wb" if overwrite else "xb") as file:
            file.write(encoded.tobytes())
    except FileExistsError:
        raise FileExistsError(
            f"{path} already exists; not overwriting it (pass overwrite=True to replace it)"
        ) from None
    return path


def _as_hwc_array(image) -> np.ndarray:
    """CHW/HW tensor or HWC/HW array -> (H, W, C) float array, C in {1, 3, 4}."""
    if isinstance(image, torch.Tensor):
        array = image.detach().to("cpu", torch.float32).numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    else:
        array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected an HWC array or a CHW tensor with 1, 3 or 4 channels, got shape {tuple(np.shape(image))}"
        )
    return array


def read_mat_variable(path: str | os.PathLike, key: str) -> np.ndarray:
    """One array from a MATLAB ``.mat`` file, axes in MATLAB order.

    Version 5 files are read with scipy; version 7.3 files (HDF5) with h5py, whose
    axes come reversed and are transposed back. The last two arrays read stay cached.
    """
    return _read_mat_variable_cached(str(Path(path).resolve()), key)


@functools.lru_cache(maxsize=2)  # a dataset reads its (noisy, clean) pair over and over
def _read_mat_variable_cached(path: str, key: str) -> np.ndarray:
    if _is_hdf5(path):
        array = _open_hdf5_variable(path, key, lambda dataset: np.asarray(dataset).T)
    else:
        contents = _scipy_mat(path, lambda scipy_io: scipy_io.loadmat(path, variable_names=[key]))
        if key not in contents:
            found = sorted(name for name, *_ in _scipy_mat(path, lambda scipy_io: scipy_io.whosmat(path)))
            raise ImageReadError(f"{path} has no variable {key!r}; it holds {found}")
        array = contents[key]
    array.flags.writeable = False  # shared by every caller through the cache
    return array


def mat_variable_shape(path: str | os.PathLike, key: str) -> tuple[int, ...]:
    """The shape of one ``.mat`` variable (MATLAB axis order) from the header, without loading it."""
    path = str(path)
    if _is_hdf5(path):
        return tuple(reversed(_open_hdf5_variable(path, key, lambda dataset: dataset.shape)))
    variables = {name: shape for name, shape, _ in _scipy_mat(path, lambda scipy_io: scipy_io.whosmat(path))}
    if key not in variables:
        raise ImageReadError(f"{path} has no variable {key!r}; it holds {sorted(variables)}")
    return tuple(variables[key])


def _is_hdf5(path: str) -> bool:
    """MATLAB v7.3 files are HDF5 (behind a 512-byte MATLAB header)."""
    import h5py

    if not Path(path).is_file():
        raise ImageReadError(f"{path} does not exist or is not a file")
    return h5py.is_hdf5(path)


def _scipy_mat(path: str, use):
    import scipy.io

    try:
        return use(scipy.io)
    except (ValueError, OSError, TypeError, NotImplementedError) as error:
        raise ImageReadError(f"{path} cannot be read as a .mat file: {error}") from None


def _open_hdf5_variable(path: str, key: str, use):
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if key not in file:
                raise ImageReadError(f"{path} has no variable {key!r}; it holds {sorted(file.keys())}")
            return use(file[key])
    except OSError as error:
        raise ImageReadError(f"{path} cannot be read as a MATLAB v7.3 (HDF5) file: {error}") from None
