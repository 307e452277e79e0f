"""Forward passes on images of any size: the one place that pads, tiles and ensembles.

Training, validation, evaluation and prediction all call the model through
here; the model's own forward stays the official one and only accepts sizes
that are multiples of ``model.size_multiple``.

- :func:`forward_padded`: reflect-pad to the size multiple exactly as the
  official evaluation does, run, take the final output, crop back.
- :func:`restore_image`: the same, optionally tiled (feathered blending),
  as an x8 geometric self-ensemble, and under bf16 autocast (CUDA, or a CPU
  with native bf16 matrix units) or fp16 autocast (CUDA).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from restore.models.fast import for_cpu_inference

Box = tuple[int, int, int, int]  # top, left, height, width


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two axes with numpy's 'reflect' semantics.

    torch's reflect mode refuses pads as large as the image; numpy (which the
    official evaluation uses) keeps reflecting. Padding in steps of at most
    size - 1 gives numpy's result for any pad width.
    """
    for dim, before, after in ((-2, top, bottom), (-1, left, right)):
        while before or after:
            n = x.shape[dim]
            if n == 1:  # numpy repeats a single row or column
                b, a, mode = before, after, "replicate"
            else:
                b, a, mode = min(before, n - 1), min(after, n - 1), "reflect"
            x = F.pad(x, [0, 0, b, a] if dim == -2 else [b, a, 0, 0], mode=mode)
            before, after = before - b, after - a
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int | tuple[int, int]) -> tuple[torch.Tensor, Box]:
    """Pad an NCHW batch the way the official MAXIM evaluation does.

    First an odd height (width) gets one reflected row (column) at the bottom
    (right), then the even size is reflect-padded to the next multiple, split
    equally between the two sides. Returns the padded batch and the box that
    :func:`crop` uses to cut the original ``H x W`` region back out.
    """
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    h, w = x.shape[-2:]
    if h % mh == 0 and w % mw == 0:
        return x, (0, 0, h, w)
    x = reflect_pad(x, 0, h % 2, 0, w % 2)
    he, we = x.shape[-2:]
    ph, pw = -he % mh, -we % mw
    x = reflect_pad(x, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    hp, wp = x.shape[-2:]
    return x, (hp // 2 - he // 2, wp // 2 - we // 2, h, w)


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    top, left, h, w = box
    return x[..., top : top + h, left : left + w]


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; any other torch device name as is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name}: give auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name}: no CUDA device is available here; use device=auto or device=cpu")
    return device


def to_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in eval mode, on the CPU with oneDNN's kernels swapped in
    (``restore.models.fast``: same outputs, faster float32 inference)."""
    model = model.to(device).eval()
    return for_cpu_inference(model) if device.type == "cpu" else model


def size_multiple(model: nn.Module) -> tuple[int, int]:
    """The input-size multiple a model needs; (1, 1) for models without one."""
    return getattr(model, "size_multiple", (1, 1))


def model_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The restored image of one forward on an input of an allowed size (MAXIM: its final output)."""
    outputs = model(x)
    return model.final_output(outputs) if hasattr(model, "final_output") else outputs


def forward_padded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Restore an NCHW batch of any size: pad, run, take the final output, crop back."""
    padded, box = pad_to_multiple(x, size_multiple(model))
    return crop(model_output(model, padded), box)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTOCAST_CHOICES = ("auto", "fp32", "bf16", "fp16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU that supports bf16, or a
    CPU with AMX tiles or AVX-512 BF16 (read from the CPU's feature flags, not guessed from its
    vendor). Elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def resolve_autocast(autocast: str | None, device: torch.device) -> Literal["bf16", "fp16"] | None:
    """The autocast a restore runs under on ``device``: ``"auto"`` is bf16 where the device has
    native bf16 matrix units and float32 (None) elsewhere; ``"fp32"`` or None is float32."""
    if autocast not in (None, *AUTOCAST_CHOICES):
        raise ValueError(f"autocast={autocast!r}: give {', '.join(AUTOCAST_CHOICES)} or None")
    if autocast == "auto":
        return "bf16" if native_bf16(device) else None
    if autocast == "fp16" and device.type != "cuda":
        raise ValueError(f"autocast='fp16' runs on CUDA only and the input is on {device}; use bf16 or fp32")
    return None if autocast == "fp32" else autocast


def precision_name(autocast: str | None, device: torch.device) -> str:
    """What a restore with ``autocast`` on ``device`` computes in: fp32, bf16 or fp16."""
    return resolve_autocast(autocast, device) or "fp32"


# tile="auto" on a CPU, where torch cannot measure memory as it does on CUDA: tiles of
# at most this many pixels per image of the batch. MAXIM-3S's float32 forward grew the
# process by about 7 KB per pixel (peak RSS at 256x256 and 384x384), so a 512x512 tile
# stays under 2 GB.
CPU_TILE_PIXELS = 512 * 512
# tile="auto" on CUDA: the share of the free memory a tile's forward may use.
CUDA_MEMORY_FRACTION = 0.8

# The eight symmetries of the square: (quarter turns, mirror first).
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def restore_image(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tile: int | Literal["auto"] | None = None,
    tile_overlap: int = 64,
    ensemble: bool = False,
    autocast: Literal["auto", "fp32", "bf16", "fp16"] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Restore an NCHW batch in [0, 1] of any size: (B, C, H, W) -> (B, C_out, H, W) float32.

    The image is padded as :func:`forward_padded` pads it (the official
    reflect padding to the model's size multiple) and cropped back.

    tile: ``None`` runs the whole image at once; an int cuts the padded image
        into square tiles of that side (rounded down to the size multiple;
        smaller images or sides stay whole), overlapping by at least
        ``tile_overlap`` pixels and blended with linear ramps across the
        overlap, so no seam shows; ``"auto"`` picks the side from free memory
        (:func:`auto_tile_size`), or no tiling when the image fits. MAXIM's
        grid gMLP and channel attention see the whole input, so tiled outputs
        differ slightly from untiled ones everywhere.
    ensemble: the x8 geometric self-ensemble: the mean of the outputs for the
        4 rotations of the image and of its mirror image, each turned back.
    autocast: ``"bf16"`` runs the model under bf16 autocast (CUDA or CPU),
        ``"fp16"`` under fp16 autocast (CUDA only), ``"auto"`` in bf16 where the
        input's device has native bf16 matrix units (:func:`native_bf16`) and in
        float32 elsewhere; None or ``"fp32"``: float32. The result is float32 either way.
    progress: show a progress bar over tiles and ensemble members.

    Runs without gradients and leaves the model's train/eval mode alone (the
    caller sets it, as Lightning's validation loop does).
    """
    _check_restore_args(x, tile, tile_overlap)
    try:
        dtype = AUTOCAST_DTYPES.get(resolve_autocast(autocast, x.device))
    except ValueError as err:
        raise ValueError(f"restore_image: {err}") from None
    transforms = DIHEDRAL if ensemble else DIHEDRAL[:1]
    mixed_precision = torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with torch.no_grad(), mixed_precision:
        if tile == "auto":
            tile = auto_tile_size(model, x)
        total = None
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("restoring", total=len(transforms))  # in images; tiles advance by fractions

            def advance(fraction: float) -> None:
                bar.advance(task, fraction)

            for turns, flip in transforms:
                view = torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))
                if tile:
                    y = _forward_tiled(model, view, tile, tile_overlap, advance)
                else:
                    y = forward_padded(model, view).float()
                    advance(1.0)
                y = torch.rot90(y, -turns, dims=(-2, -1))
                y = y.flip(-1) if flip else y
                # float64 sums of float32 outputs: exact for eight equal values, so an
                # ensemble of an exactly equivariant model returns its single pass.
                total = y.double() if total is None else total + y.double()
    return (total / len(transforms)).float()


def _check_restore_args(x, tile, tile_overlap) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"restore_image: expected a (B, C, H, W) float tensor, got {getattr(x, 'shape', type(x))}")
    if tile is not None and tile != "auto" and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"restore_image: tile must be a positive int, 'auto' or None, got {tile!r}")
    if not isinstance(tile_overlap, int) or tile_overlap < 0:
        raise ValueError(f"restore_image: tile_overlap must be a non-negative int, got {tile_overlap!r}")
    if isinstance(tile, int) and tile_overlap >= tile:
        raise ValueError(f"restore_image: tile_overlap ({tile_overlap}) must be smaller than tile ({tile})")


def _tile_starts(size: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Tile offsets along one axis: a stride of tile - overlap rounded down to ``multiple``
    (so tiles overlap by at least ``overlap``), the last tile flush with the end."""
    if tile >= size:
        return [0]
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    return list(range(0, size - tile, stride)) + [size - tile]


def _feather(length: int, overlap: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """A tile's blending weight along one axis: 1, ramping linearly over ``overlap`` pixels
    on the sides that overlap a neighbour; never 0, so every pixel keeps a weight."""
    weight = torch.ones(length)
    if overlap:
        ramp = (torch.arange(overlap) + 0.5) / overlap
        if fade_in:
            weight[:overlap] = torch.minimum(weight[:overlap], ramp)
        if fade_out:
            weight[-overlap:] = torch.minimum(weight[-overlap:], ramp.flip(0))
    return weight


def _forward_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int, advance: Callable[[float], None]):
    """Run overlapping tiles of the padded image and blend them: (B, C, H, W) -> (B, C_out, H, W).

    The whole image is padded first, exactly as :func:`forward_padded` pads
    it, and cut into tiles whose sides and offsets are multiples of the size
    multiple: every tile then sees MAXIM's block partition at the same phase
    as the untiled forward (block gating weights depend on the position inside
    a block, so a shifted partition is a different function), and no tile is
    padded again.
    """
    padded, box = pad_to_multiple(x, size_multiple(model))
    h, w = padded.shape[-2:]
    (th, tw), tops, lefts = _tile_grid(model, (h, w), tile, overlap)
    out = weight = None
    for top in tops:
        for left in lefts:
            rows, cols = slice(top, top + th), slice(left, left + tw)
            y = model_output(model, padded[..., rows, cols]).float()  # (B, C_out, th, tw)
            ramp_rows = _feather(th, overlap, top > 0, top + th < h)
            ramp_cols = _feather(tw, overlap, left > 0, left + tw < w)
            ramp = (ramp_rows[:, None] * ramp_cols).to(y.device)  # (th, tw)
            if out is None:
                out = y.new_zeros(*y.shape[:2], h, w)
                weight = y.new_zeros(h, w)
            out[..., rows, cols] += y * ramp
            weight[rows, cols] += ramp
            advance(1 / (len(tops) * len(lefts)))
    return crop(out / weight, box)


def _tile_grid(model: nn.Module, padded_size: tuple[int, int], tile: int, overlap: int):
    """-> the tile's (height, width) and the tiles' top and left offsets over a padded image."""
    (mh, mw), (h, w) = size_multiple(model), padded_size
    th, tw = min(max(mh, tile // mh * mh), h), min(max(mw, tile // mw * mw), w)
    return (th, tw), _tile_starts(h, th, overlap, mh), _tile_starts(w, tw, overlap, mw)


def forward_count(model: nn.Module, x: torch.Tensor, *, tile, tile_overlap: int = 64, ensemble: bool = False) -> int:
    """How many model forwards :func:`restore_image` runs for ``x``: tiles times ensemble members
    (for progress shown per forward)."""
    members = len(DIHEDRAL) if ensemble else 1
    if tile == "auto":
        tile = auto_tile_size(model, x)
    if not tile:
        return members
    count = 0
    for turns, _ in DIHEDRAL[:members]:  # a quarter turn swaps the sides, before padding each
        view = torch.rot90(x[:1, :1], turns, dims=(-2, -1))
        _, tops, lefts = _tile_grid(
            model, pad_to_multiple(view, size_multiple(model))[0].shape[-2:], tile, tile_overlap
        )
        count += len(tops) * len(lefts)
    return count


def auto_tile_size(model: nn.Module, x: torch.Tensor) -> int | None:
    """The side of the largest square tile whose forward fits in memory, or None when ``x`` fits whole.

    CUDA: one probe forward on a (B, C, p, p) batch (p about 256) under the
    current autocast measures the peak bytes per pixel; tiles may use
    ``CUDA_MEMORY_FRACTION`` of the free memory (``torch.cuda.mem_get_info``).
    CPU: tiles of at most ``CPU_TILE_PIXELS`` pixels per image. Tiles are a
    multiple of the model's size multiple, so they need no padding.
    """
    mh, mw = size_multiple(model)
    multiple = math.lcm(mh, mw)
    batch, channels, h, w = x.shape
    if x.device.type == "cuda":
        side = multiple * max(1, 256 // multiple)
        probe = x.new_zeros(batch, channels, side, side)
        torch.cuda.synchronize(x.device)
        before = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        forward_padded(model, probe)
        bytes_per_pixel = (torch.cuda.max_memory_allocated(x.device) - before) / (side * side)
        free, _ = torch.cuda.mem_get_info(x.device)
        pixels = int(CUDA_MEMORY_FRACTION * free / bytes_per_pixel)
    else:
        pixels = CPU_TILE_PIXELS
    if h * w <= pixels:
        return None
    return max(multiple, math.isqrt(pixels) // multiple * multiple)
