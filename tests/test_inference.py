"""The padding helper reproduces the official evaluation's padding and cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.inference import crop, forward_padded, pad_to_multiple, reflect_pad


def official_pad(image: np.ndarray, multiple: int) -> np.ndarray:
    """maxim/run_eval.py's steps, written independently with numpy: odd sizes get one
    reflected row/column at the bottom/right, then a centred reflect pad to the multiple."""
    h, w = image.shape[:2]
    image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="reflect")
    he, we = image.shape[:2]
    ph, pw = -he % multiple, -we % multiple
    return np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")


@pytest.mark.parametrize("size", [(321, 481), (100, 150), (64, 64), (7, 5), (1, 3)])
def test_pad_matches_official_numpy_padding(size):
    image = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    padded, box = pad_to_multiple(torch.from_numpy(image).permute(2, 0, 1)[None], 64)
    reference = official_pad(image, 64)
    np.testing.assert_array_equal(padded[0].permute(1, 2, 0).numpy(), reference)
    top, left, h, w = box
    # the official crop: top = H_pad//2 - H_even//2, then the ORIGINAL height
    he, we = size[0] + size[0] % 2, size[1] + size[1] % 2
    assert (top, left, h, w) == (reference.shape[0] // 2 - he // 2, reference.shape[1] // 2 - we // 2, *size)
    np.testing.assert_array_equal(crop(padded, box)[0].permute(1, 2, 0).numpy(), image)


def test_reflect_pad_larger_than_the_image_follows_numpy():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    got = reflect_pad(torch.from_numpy(x), 9, 4, 10, 7).numpy()
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (0, 0), (9, 4), (10, 7)), mode="reflect"))


def test_non_square_multiples_pad_each_axis_separately():
    padded, box = pad_to_multiple(torch.rand(2, 3, 20, 40), (16, 32))
    assert padded.shape == (2, 3, 32, 64)
    assert box == (6, 12, 20, 40)


def test_forward_padded_returns_the_input_size(tiny_maxim):
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = forward_padded(tiny_maxim.eval(), x)
        padded, box = pad_to_multiple(x, tiny_maxim.size_multiple)
        direct = crop(tiny_maxim(padded)[-1][-1], box)
    assert y.shape == x.shape
    assert torch.equal(y, direct)
