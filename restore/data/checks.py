"""Checks of a dataset's files before they are used: sizes and pairing, decoded or from headers.

Training checks every file's header at start-up (:func:`check_headers`), so a broken, truncated,
undersized or mismatched file is named in the first seconds rather than when a loader worker
first meets it, hours into a run. ``data/prepare.py`` runs the same check with full decodes.
"""

from __future__ import annotations

from collections.abc import Sequence

from restore.data.io import ImageReadError, image_size
from restore.data.layout import DatasetError, FileSource, Sample, Source


def sample_problem(sample: Sample, *, decode: bool, patch_size: int | None = None) -> str | None:
    """What is wrong with one sample's files, or None: unreadable, an input and target of different
    sizes, or smaller than ``patch_size``. Without ``decode`` sizes come from the file headers, and
    sources that are no image files (arrays in a .mat) are not looked at."""
    try:
        sizes = [_size(source, decode) for source in (sample.input, sample.target) if source is not None]
    except (ImageReadError, DatasetError) as error:
        return str(error)
    known = [size for size in sizes if size is not None]
    if patch_size and known and min(known[0]) < patch_size:
        (h, w), first = known[0], sample.input or sample.target
        return (
            f"{first} is {w}x{h}, smaller than data.patch_size={patch_size}; lower data.patch_size or remove the file"
        )
    if len(known) < 2 or known[0] == known[1]:
        return None
    (h, w), (th, tw) = known
    if sample.crop_target and th >= h and tw >= w:
        return None  # the documented SOTS-indoor border, cropped when read
    return f"{sample.input} is {w}x{h} but its target {sample.target} is {tw}x{th}; an input and its target must match"


def check_headers(samples: Sequence[Sample], where: str, patch_size: int | None = None) -> None:
    """Raise one DatasetError naming the first bad file (and how many there are) among ``samples``."""
    found = (sample_problem(sample, decode=False, patch_size=patch_size) for sample in samples)
    problems = [problem for problem in found if problem]
    if problems:
        more = f" ({len(problems)} of {len(samples)} files have problems; `python data/prepare.py` lists them)"
        raise DatasetError(f"{where}: {problems[0]}" + (more if len(problems) > 1 else ""))


def _size(source: Source, decode: bool) -> tuple[int, int] | None:
    """(height, width) of a source: decoded, or from a file's header; None when unknown without decoding."""
    if decode:
        return source.read().shape[:2]
    return image_size(source.path) if isinstance(source, FileSource) else None
