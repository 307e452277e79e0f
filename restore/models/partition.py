"""MAXIM's two partitions of a channels-last image into token sets (docs/model.md, "Partitions").

- :func:`block_partition` with a ``block_size`` (fh, fw): the image is cut into
  fh x fw windows and each window's fh*fw pixels are one set (local mixing).
- :func:`grid_partition` with a ``grid_size`` (gh, gw): the image is laid on a
  gh x gw grid of windows and the gh*gw pixels at one offset in every window are
  one set (dilated, global mixing).

Tokens are numbered row-major within a window and windows row-major over the
grid, as the official ``block_images`` does. Both return the tokens first,
``(T, N, C)`` with N = B * sets (batch outermost), so a token-mixing Dense is
one GEMM with the (T, T) weight on the left and the single copy moves whole runs
of C channels; :func:`per_set` views them as ``(B, sets, T, C)`` for attention.
The inverses return a strided ``(B, gh, fh, gw, fw, C)`` view that elementwise
ops read directly (``x.view(that.shape)`` tiles an image the same way) and
``reshape(B, H, W, C)`` turns into the image.
"""

from __future__ import annotations

import torch

Size2 = tuple[int, int]


def block_partition(x: torch.Tensor, block_size: Size2) -> torch.Tensor:
    """(B, H, W, C) -> (fh*fw, B*gh*gw, C): the pixels of each ``block_size`` window."""
    return _tokens_first(_tiles(x, block_size).permute(2, 4, 0, 1, 3, 5))


def grid_partition(x: torch.Tensor, grid_size: Size2) -> torch.Tensor:
    """(B, H, W, C) -> (gh*gw, B*fh*fw, C): the ``grid_size`` windows seen at each offset."""
    return _tokens_first(_tiles(x, _window_of_grid(x.shape, grid_size)).permute(1, 3, 0, 2, 4, 5))


def block_unpartition(tokens: torch.Tensor, shape: torch.Size, block_size: Size2) -> torch.Tensor:
    """The inverse of :func:`block_partition` for an image of ``shape``, as a (B, gh, fh, gw, fw, C) view."""
    b, h, w, c = shape
    fh, fw = block_size
    return tokens.view(fh, fw, b, h // fh, w // fw, c).permute(2, 3, 0, 4, 1, 5)


def grid_unpartition(tokens: torch.Tensor, shape: torch.Size, grid_size: Size2) -> torch.Tensor:
    """The inverse of :func:`grid_partition` for an image of ``shape``, as a (B, gh, fh, gw, fw, C) view."""
    b, h, w, c = shape
    gh, gw = grid_size
    return tokens.view(gh, gw, b, h // gh, w // gw, c).permute(2, 0, 3, 1, 4, 5)


# Each partition with its inverse, by the axis it mixes.
PARTITIONS = {"grid": (grid_partition, grid_unpartition), "block": (block_partition, block_unpartition)}


def per_set(tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """(T, B*n, C) -> (B, n, T, C), a view: each set's tokens, then their channels."""
    t, _, c = tokens.shape
    return tokens.view(t, batch, -1, c).permute(1, 2, 0, 3)


def tokens_first(sets: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`per_set`: (B, n, T, C) -> (T, B*n, C)."""
    b, n, t, c = sets.shape
    return sets.permute(2, 0, 1, 3).reshape(t, b * n, c)


def _tiles(x: torch.Tensor, window: Size2) -> torch.Tensor:
    """(B, H, W, C) -> (B, gh, fh, gw, fw, C), a view; the window must divide the image."""
    h, w = x.shape[1:3]
    fh, fw = window
    if h % fh or w % fw:
        raise ValueError(f"a {h}x{w} feature map does not split into {fh}x{fw} windows")
    return x.unflatten(2, (w // fw, fw)).unflatten(1, (h // fh, fh))


def _window_of_grid(shape: torch.Size, grid_size: Size2) -> Size2:
    if shape[1] % grid_size[0] or shape[2] % grid_size[1]:
        raise ValueError(
            f"a {shape[1]}x{shape[2]} feature map does not split into a {grid_size[0]}x{grid_size[1]} grid"
        )
    return shape[1] // grid_size[0], shape[2] // grid_size[1]


def _tokens_first(moved: torch.Tensor) -> torch.Tensor:
    return moved.reshape(moved.shape[0] * moved.shape[1], -1, moved.shape[-1])
