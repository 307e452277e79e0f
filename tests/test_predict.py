"""python -m restore.predict: real and generated photos of any size and mode, and every refusal."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra.errors import MissingConfigException
from PIL import Image
from rich.console import Console

from restore.data.io import IMAGE_EXTENSIONS, decode_image
from restore.errors import ConfigError
from restore.models import MAXIM, CheckpointError
from restore.models.convert import expected_official_shapes
from restore.predict import predict
from tests.data.layouts import tree_state
from tests.helpers import ROOT, compose_config, run_command, shared_path

# MAXIM-1S cut down to run on CPU in a fraction of a second per image; size multiple 16.
TINY_1S = (
    "model=maxim_1s",
    "model.features=4",
    "model.depth=1",
    "model.num_groups=1",
    "model.num_bottleneck_blocks=1",
    "model.num_supervision_scales=1",
    "model.high_res_stages=1",
    "model.block_size_hr=[8,8]",
    "model.grid_size_hr=[8,8]",
    "model.block_size_lr=[8,8]",
    "model.grid_size_lr=[8,8]",
)

# The official tiny fixture: a 2-stage MAXIM with non-square blocks, which its weights cannot tell.
FIXTURE = shared_path("maxim", "fixtures", "official_tiny.npz")
FIXTURE_BLOCKS = (
    "+model.block_size_hr=[8,4]",
    "+model.block_size_lr=[2,4]",
    "+model.grid_size_hr=[4,8]",
    "+model.grid_size_lr=[4,2]",
)


def run_predict(*overrides: str) -> list[Path]:
    """``python -m restore.predict OVERRIDES`` in-process, on the CPU; the files written."""
    return predict(compose_config("predict", "device=cpu", *overrides), console=Console(file=io.StringIO()))


def raw(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_real_samples_give_one_output_per_input_with_its_size_and_pixels(tmp_path):
    """The command line on every photo of samples/ (sub-folders mirrored) with the identity model:
    each output is a PNG of the input's size holding exactly the decoded input."""
    samples = shared_path("benchmarks", "samples")
    before = tree_state(samples)
    run = run_command(
        "-m", "restore.predict", f"input={os.path.relpath(samples, ROOT)}", f"output={tmp_path / 'out'}",
        "recursive=true", "model=identity",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    inputs = sorted(p for p in samples.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    outputs = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert len(inputs) == 25
    assert outputs == sorted(tmp_path / "out" / p.relative_to(samples).with_suffix(".png") for p in inputs)
    for source in inputs:
        target = tmp_path / "out" / source.relative_to(samples).with_suffix(".png")
        np.testing.assert_array_equal(decode_image(target), decode_image(source))
    assert f"restored 25 image(s) into {tmp_path / 'out'}" in run.stdout
    assert tree_state(samples) == before  # nothing under the input was written


def test_a_maxim_restores_real_photos_of_odd_sizes_to_their_own_size(tmp_path):
    folder = shared_path("benchmarks", "samples", "SOTS", "outdoor", "hazy")
    # The official fixture's weights: an untrained preset starts close to the identity.
    written = run_predict(f"input={folder}", f"output={tmp_path}", "tile=null", f"weights={FIXTURE}", *FIXTURE_BLOCKS)
    assert len(written) == 4
    for path in written:
        source = decode_image(folder / path.name)
        output = raw(path)
        assert output.shape == source.shape and output.dtype == np.uint8
        assert np.abs(output.astype(int) - source[:, :, ::-1]).mean() > 1  # the network changed the image


def write_generated(folder: Path) -> dict[str, np.ndarray]:
    """Photos in every mode the command handles, at odd sizes: ``{file name: what OpenCV stores}``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {
        "gray8.png": rng.integers(0, 256, (37, 53), dtype=np.uint8),
        "gray16.png": rng.integers(0, 65536, (41, 30), dtype=np.uint16),
        "rgb16.png": rng.integers(0, 65536, (29, 45, 3), dtype=np.uint16),
        "rgba8.png": rng.integers(0, 256, (33, 47, 4), dtype=np.uint8),
        "rgba16.png": rng.integers(0, 65536, (20, 31, 4), dtype=np.uint16),
        "photo.jpg": rng.integers(0, 256, (35, 50, 3), dtype=np.uint8),
    }
    for name, image in images.items():
        assert cv2.imwrite(str(folder / name), image)
    return images


def test_generated_gray_rgba_and_16_bit_photos_keep_their_mode_depth_and_size(tmp_path):
    images = write_generated(tmp_path / "photos")
    written = run_predict(f"input={tmp_path / 'photos'}", f"output={tmp_path / 'out'}", "model=identity")
    assert sorted(p.name for p in written) == sorted(Path(name).with_suffix(".png").name for name in images)
    for name, stored in images.items():
        output = raw(tmp_path / "out" / Path(name).with_suffix(".png").name)
        if name.endswith(".jpg"):  # lossy: the output holds the decoded JPEG
            np.testing.assert_array_equal(output, cv2.imread(str(tmp_path / "photos" / name)))
        else:  # identity: the same samples, channels (alpha included) and depth
            np.testing.assert_array_equal(output, stored)
    written = run_predict(
        f"input={tmp_path / 'photos' / 'gray16.png'}", f"output={tmp_path / 'eight'}", "bits=8", "model=identity"
    )
    np.testing.assert_array_equal(raw(written[0]), np.rint(images["gray16.png"] / 257).astype(np.uint8))


def test_a_tiny_maxim_keeps_the_size_of_every_generated_photo(tmp_path):
    images = write_generated(tmp_path / "photos")
    run_predict(f"input={tmp_path / 'photos'}", f"output={tmp_path / 'out'}", "tile=16", "tile_overlap=8", *TINY_1S)
    for name, stored in images.items():
        output = raw(tmp_path / "out" / Path(name).with_suffix(".png").name)
        assert output.shape[:2] == stored.shape[:2] and output.dtype == stored.dtype, name
        assert output.ndim == stored.ndim and (output.ndim == 2 or output.shape[2] == stored.shape[2]), name
        if output.ndim == 3 and output.shape[2] == 4:
            np.testing.assert_array_equal(output[..., 3], stored[..., 3])  # alpha is passed through


def test_alpha_follows_the_exif_orientation_of_the_colours(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[0, 0, 3], rgba[..., 3] = 200, 0, 255  # red, opaque
    rgba[0, :2, 3] = 10  # two translucent pixels in the top-left corner
    image = Image.fromarray(rgba, "RGBA")
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "rotated.png", exif=exif.tobytes())
    (written,) = run_predict(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "model=identity")
    output = raw(written)  # BGRA, upright: 6 x 4
    assert output.shape == (6, 4, 4)
    np.testing.assert_array_equal(output[..., 3], np.rot90(rgba[..., 3], -1))
    np.testing.assert_array_equal(output[..., 2], np.full((6, 4), 200))


def test_output_folder_equal_to_or_read_back_from_the_input_is_refused(tmp_path):
    write_generated(tmp_path / "photos")
    photos = tmp_path / "photos"
    cases = [
        ((f"input={photos}", f"output={photos}"), "is the input's folder"),
        ((f"input={photos / 'gray8.png'}", f"output={photos}"), "is the input's folder"),
        ((f"input={photos}", f"output={photos / 'restored'}", "recursive=true"), "would read the restored images back"),
        ((f"input={photos}", f"output={photos / 'gray8.png'}"), "is a file; give a folder"),
        ((f"input={tmp_path / 'absent'}", f"output={tmp_path / 'out'}"), "absent does not exist"),
        ((f"input={tmp_path / 'empty'}", f"output={tmp_path / 'out'}"), "holds no image files"),
        ((f"input={photos}", f"output={tmp_path / 'out'}", "bits=12"), "bits=12: give 8, 16 or null"),
    ]
    (tmp_path / "empty").mkdir()
    before = tree_state(tmp_path)
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            run_predict(*overrides, "model=identity")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError, match="notes.txt is not an image file"):
        run_predict(f"input={tmp_path / 'notes.txt'}", f"output={tmp_path / 'out'}", "model=identity")
    (tmp_path / "notes.txt").unlink()
    assert tree_state(tmp_path) == before
    # Without recursive=true a folder inside the input is never read as input: allowed.
    assert len(run_predict(f"input={photos}", f"output={photos / 'restored'}", "model=identity")) == 6


def test_existing_outputs_are_never_overwritten_and_skip_existing_restores_the_rest(tmp_path):
    write_generated(tmp_path / "photos")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "photo.png").write_bytes(b"the user's own file")
    with pytest.raises(FileExistsError, match="1 output.s. exist already .*photo.png"):
        run_predict(f"input={tmp_path / 'photos'}", f"output={tmp_path / 'out'}", "model=identity")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo.png"]
    written = run_predict(
        f"input={tmp_path / 'photos'}", f"output={tmp_path / 'out'}", "model=identity", "skip_existing=true"
    )
    assert len(written) == 5 and (tmp_path / "out" / "photo.png").read_bytes() == b"the user's own file"
    cv2.imwrite(str(tmp_path / "photos" / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="photo.jpg and .*photo.png would both be written to"):
        run_predict(f"input={tmp_path / 'photos'}", f"output={tmp_path / 'other'}", "model=identity")


def test_task_names_the_released_weights_and_their_variant(tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    args = (f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    expected = tmp_path / "checkpoints" / "Deblurring" / "GoPro" / "checkpoint.npz"
    with pytest.raises(ConfigError, match=f"task=deblur: the released weights are expected at {expected}; download"):
        run_predict(*args, "task=deblur", f"weights_dir={tmp_path / 'checkpoints'}")
    with pytest.raises(MissingConfigException, match="Could not find 'task/blur'"):
        run_predict(*args, "task=blur")
    with pytest.raises(ConfigError, match="a Lightning checkpoint .ckpt=. has its own config"):
        run_predict(*args, "task=deblur", "ckpt=last.ckpt")
    with pytest.raises(ConfigError, match="no model: give ckpt=FILE"):
        run_predict(*args)
    with pytest.raises(CheckpointError, match="does not hold the deblur model .MAXIM-3S, Deblurring/GoPro."):
        run_predict(*args, "task=deblur", f"weights={FIXTURE}")
    # A checkpoint in the official format and shapes of the released deraining MAXIM-2S (random values:
    # the release itself cannot be downloaded here), found under weights_dir as task=derain expects.
    release = tmp_path / "checkpoints" / "Deraining" / "Rain13k" / "checkpoint.npz"
    release.parent.mkdir(parents=True)
    model = MAXIM(**{k: v for k, v in compose_config("predict", "task=derain").model.items() if k != "_target_"})
    rng = np.random.default_rng(0)
    shapes = expected_official_shapes(model)
    np.savez(release, **{k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in shapes.items()})
    with pytest.raises(CheckpointError, match="does not hold the deblur model .MAXIM-3S, Deblurring/GoPro."):
        run_predict(*args, "task=deblur", f"weights={release}")
    (written,) = run_predict(*args, "task=derain", f"weights_dir={tmp_path / 'checkpoints'}")
    assert raw(written).shape == (40, 40, 3)


def test_command_line_refusal_is_one_line_with_exit_status_2(tmp_path):
    run = run_command("-m", "restore.predict", f"input={tmp_path}", f"output={tmp_path}", "model=identity")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"error: output={tmp_path} is the input's folder; write the restored images to another folder "
        "(inputs are never overwritten)"
    ]
