"""One reader for every file: bit depths, gray, alpha, EXIF orientation, .mat arrays, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from restore.data.io import ImageReadError, image_size, read_image, read_mat_variable, write_image
from tests.helpers import shared_path


def _rgb_gradient(height=6, width=9) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 20, cols * 25, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def test_8bit_png_reads_as_rgb_float_in_unit_range(tmp_path):
    rgb = _rgb_gradient()
    cv2.imwrite(str(tmp_path / "a.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (6, 9, 3)
    np.testing.assert_array_equal(image, rgb / np.float32(255))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_png_and_tiff_keep_all_16_bits(tmp_path, suffix):
    rgb16 = np.random.default_rng(0).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"a{suffix}"), rgb16[:, :, ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / f"a{suffix}"), rgb16.astype(np.float32) / 65535)


def test_jpeg_reads_close_to_what_was_saved(tmp_path):
    rgb = np.full((16, 16, 3), (200, 100, 30), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=100)
    np.testing.assert_allclose(read_image(tmp_path / "a.jpg"), rgb / 255, atol=3 / 255)


@pytest.mark.parametrize("dtype, scale", [(np.uint8, 255), (np.uint16, 65535)])
def test_gray_is_expanded_to_three_equal_channels(tmp_path, dtype, scale):
    gray = (np.arange(20).reshape(4, 5) * (scale // 20)).astype(dtype)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (4, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray / np.float32(scale))


def test_alpha_channel_is_dropped(tmp_path):
    rgba = np.dstack([_rgb_gradient(), np.zeros((6, 9), np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), _rgb_gradient() / np.float32(255))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    # Stored 20 rows x 30 columns with orientation 6 ("rotate 90 degrees clockwise to display").
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:, :10] = 255  # the left third is white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / f"a{suffix}", exif=exif, quality=100)
    image = read_image(tmp_path / f"a{suffix}")
    assert image.shape == (30, 20, 3)
    assert image[:10].mean() > 0.95 and image[-10:].mean() < 0.05  # the white part is now on top
    assert image_size(tmp_path / f"a{suffix}") == (30, 20)


def test_a_real_benchmark_photo_reads(tmp_path):
    folder = shared_path("benchmarks", "CBSD68")
    image = read_image(sorted(folder.glob("*.png"))[0])
    assert image.shape[2] == 3 and sorted(image.shape[:2]) == [321, 481]
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png does not exist"):
        read_image(tmp_path / "nope.png")


def test_zero_byte_file_error_names_it(tmp_path):
    (tmp_path / "empty.png").touch()
    with pytest.raises(ImageReadError, match=r"empty\.png is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")


def test_truncated_png_error_names_it(tmp_path):
    cv2.imwrite(str(tmp_path / "full.png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png cannot be decoded: the file is truncated, corrupt"):
        read_image(tmp_path / "cut.png")


def test_directory_instead_of_a_file_error_names_it(tmp_path):
    (tmp_path / "img.png").mkdir()
    with pytest.raises(ImageReadError, match=r"img\.png is a directory; expected an image file"):
        read_image(tmp_path / "img.png")


def test_image_read_error_is_a_value_error():
    assert issubclass(ImageReadError, ValueError)


def test_write_8bit_png_clips_and_rounds(tmp_path):
    image = np.array([[[-0.2, 0.5, 1.3], [0.1, 0.499 / 255, 0.501 / 255]]], np.float32)  # (1, 2, 3)
    write_image(tmp_path / "o.png", image)
    stored = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    np.testing.assert_array_equal(stored, [[[0, 128, 255], [26, 0, 1]]])


def test_write_16bit_png_from_a_chw_tensor_round_trips(tmp_path):
    tensor = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "o.png", tensor, bits=16)
    stored = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (5, 7, 3)
    np.testing.assert_allclose(read_image(tmp_path / "o.png"), tensor.permute(1, 2, 0).numpy(), atol=0.5 / 65535)


def test_write_16bit_rgba_png_keeps_colour_order_and_alpha(tmp_path):
    image = np.zeros((2, 3, 4), np.float32)
    image[..., 0], image[..., 3] = 1.0, 0.25  # red, a quarter opaque
    write_image(tmp_path / "o.png", image, bits=16)
    stored = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)  # BGRA
    assert stored.dtype == np.uint16 and stored.shape == (2, 3, 4)
    np.testing.assert_array_equal(stored[0, 0], [0, 0, 65535, round(0.25 * 65535)])


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_image(tmp_path / "o.png", np.zeros((2, 2, 3)))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"o\.png already exists; not overwriting"):
        write_image(path, np.ones((2, 2, 3)))
    assert path.read_bytes() == before
    write_image(path, np.ones((2, 2, 3)), overwrite=True)
    assert read_image(path).min() == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "o.jpg", "image": np.zeros((2, 2, 3))}, "writes PNG files"),
        ({"path": "o.png", "image": np.zeros((2, 2, 3)), "bits": 12}, "bits must be 8 or 16"),
        ({"path": "o.png", "image": np.zeros((2, 2, 2))}, "1, 3 or 4 channels"),
        ({"path": "o.png", "image": np.full((2, 2, 3), np.nan)}, "NaN"),
    ],
)
def test_write_rejects_bad_requests(tmp_path, kwargs, message):
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(ValueError, match=message):
        write_image(**kwargs)
    assert not list(tmp_path.iterdir())


def test_mat_v5_variable_reads_with_scipy(tmp_path):
    import scipy.io

    blocks = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 4, 3)
    scipy.io.savemat(tmp_path / "v5.mat", {"Blocks": blocks})
    np.testing.assert_array_equal(read_mat_variable(tmp_path / "v5.mat", "Blocks"), blocks)
    with pytest.raises(ImageReadError, match=r"v5\.mat has no variable 'Other'; it holds \['Blocks'\]"):
        read_mat_variable(tmp_path / "v5.mat", "Other")


def test_mat_v73_hdf5_variable_comes_back_in_matlab_axis_order(tmp_path):
    h5py = pytest.importorskip("h5py")
    image = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    with h5py.File(tmp_path / "v73.mat", "w") as file:
        file.create_dataset("InoisySRGB", data=image.T)  # MATLAB v7.3 stores arrays with axes reversed
    np.testing.assert_array_equal(read_mat_variable(tmp_path / "v73.mat", "InoisySRGB"), image)


def test_corrupt_mat_file_error_names_it(tmp_path):
    (tmp_path / "bad.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ImageReadError, match=r"bad\.mat"):
        read_mat_variable(tmp_path / "bad.mat", "X")


def test_decoded_cache_returns_the_same_pixels_without_decoding_again(tmp_path, monkeypatch):
    from restore.data import io as image_io

    rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 10, 3), dtype=np.uint16)
    source = tmp_path / "frame.png"
    cv2.imwrite(str(source), rgb16[:, :, ::-1])
    first = image_io.decode_image_cached(source, tmp_path / "cache")
    np.testing.assert_array_equal(first, rgb16)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded again")

    monkeypatch.setattr(image_io, "decode_image", no_decoding)
    np.testing.assert_array_equal(image_io.decode_image_cached(source, tmp_path / "cache"), rgb16)
    monkeypatch.undo()
    cv2.imwrite(str(source), np.zeros((3, 4, 3), np.uint8))  # an edited file is decoded again
    assert image_io.decode_image_cached(source, tmp_path / "cache").shape == (3, 4, 3)
    with pytest.raises(ImageReadError, match=r"gone\.png does not exist"):
        image_io.decode_image_cached(tmp_path / "gone.png", tmp_path / "cache")
