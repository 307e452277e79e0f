"""Forward passes on images of any size: the one place that pads and crops.

Training, validation, evaluation and prediction all call the model through
here; the model's own forward stays the official one and only accepts sizes
that are multiples of ``model.size_multiple``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def size_multiple(model: nn.Module) -> tuple[int, int]:
    """The input-size multiple a model needs; (1, 1) for models without one."""
    return getattr(model, "size_multiple", (1, 1))


def forward_padded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Restore an NCHW batch of any size: pad, run, take the final output, crop back."""
    padded, box = pad_to_multiple(x, size_multiple(model))
    outputs = model(padded)
    final = model.final_output(outputs) if hasattr(model, "final_output") else outputs
    return crop(final, box)
