"""The classical low-light baselines: histogram equalisation, CLAHE and the fitted global tone curve."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from skimage import color, exposure

from restore.models.loading import build_model, load_preset
from restore.models.tone import CLAHE, HistogramEqualization, ToneCurve, fit_on_dataset, fit_tone_curve, write_preset
from tests.helpers import run_command


def dark_photo(seed: int = 0, size=(40, 56)) -> np.ndarray:
    """A smooth, dark RGB image in [0, 0.3] (H, W, 3) float64."""
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.uniform(0, 1, (*size, 3)), (0, 0), 4)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.round(smooth * 0.3 * 255) / 255


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def test_the_fitted_curve_is_the_mean_target_of_each_input_level_and_interpolates_unseen_levels():
    levels = np.array([10, 10, 20, 40], dtype=np.float64)  # level 30 never occurs
    degraded = np.repeat((levels / 255)[None, :, None], 3, axis=2)  # (1, 4, 3)
    target = np.repeat(np.array([0.2, 0.4, 0.5, 0.9])[None, :, None], 3, axis=2)
    curve = fit_tone_curve([(degraded, target)])
    assert curve.shape == (3, 256)
    np.testing.assert_allclose(curve[:, 10], 0.3)  # the mean of 0.2 and 0.4
    np.testing.assert_allclose(curve[:, 20], 0.5)
    np.testing.assert_allclose(curve[:, 30], 0.7)  # half way between its seen neighbours
    np.testing.assert_allclose(curve[:, 0], 0.3)  # below the lowest seen level: held flat
    np.testing.assert_allclose(curve[:, 255], 0.9)


def test_a_curve_fitted_on_a_gamma_mapping_recovers_it_and_maps_new_images_through_it():
    gamma = lambda x: np.sqrt(x)  # noqa: E731 - the mapping the pairs were made with
    pairs = [(dark_photo(seed), gamma(dark_photo(seed))) for seed in range(3)]
    model = ToneCurve(fit_tone_curve(pairs).tolist(), fitted_on="three gamma pairs")
    probe = dark_photo(1)  # every level of it was seen in fitting
    out = model(as_batch(probe))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, gamma(probe), atol=1e-6)
    assert model.description == "a global tone curve per channel, fitted on three gamma pairs"


def test_a_tone_curve_preset_round_trips_through_its_yaml_and_never_overwrites(tmp_path):
    curve = fit_tone_curve([(dark_photo(1), dark_photo(1) * 2)])
    preset = tmp_path / "curve.yaml"
    write_preset(curve, "a test pair", preset)
    model = build_model(OmegaConf.load(preset))
    np.testing.assert_allclose(model.curve.numpy(), curve, atol=1e-5)
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_preset(curve, "a test pair", preset)
    with pytest.raises(ValueError, match="3 channels x 256 levels"):
        ToneCurve([[0.0] * 256] * 2)


def test_the_lol_curve_brightens_the_dark_levels_where_low_light_photos_lie():
    model = build_model(load_preset("lol_tone_curve"))
    assert "LOL train without its hold-out" in model.description
    curve = model.curve.numpy()
    assert (curve[:, 16] > 5 * 16 / 255).all() and (curve[:, 64] > curve[:, 16]).all()


def test_histogram_equalisation_flattens_the_value_histogram_and_keeps_hue():
    photo = dark_photo(2)
    out = HistogramEqualization()(as_batch(photo))[0].permute(1, 2, 0).double().numpy()
    before, after = color.rgb2hsv(photo), color.rgb2hsv(out)
    # equalised: the value channel's CDF is close to the identity
    values = np.sort(after[..., 2].ravel())
    assert np.abs(values - np.linspace(0, 1, values.size)).max() < 0.05
    moved = before[..., 1] > 0.05  # hue is defined where there is colour
    hue_change = np.abs(np.angle(np.exp(2j * np.pi * (after[..., 0] - before[..., 0]))))
    assert np.median(hue_change[moved]) < 0.02


def test_clahe_is_scikit_images_on_each_image_of_a_batch():
    photos = [dark_photo(3), dark_photo(4)]
    out = CLAHE(clip_limit=0.02)(as_batch(*photos).double())
    for photo, restored in zip(photos, out):
        expected = exposure.equalize_adapthist(photo, clip_limit=0.02, nbins=256)
        np.testing.assert_allclose(restored.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="clip_limit=0: must be in"):
        CLAHE(clip_limit=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) RGB images"):
        CLAHE()(torch.zeros(1, 1, 8, 8))


def lol_folder(root, count: int = 40) -> None:
    for split in ("low", "high"):
        (root / "LOL" / "our485" / split).mkdir(parents=True)
    for i in range(count):
        high = dark_photo(i) * 3
        for split, image in (("low", high / 3), ("high", high)):
            rgb = np.round(image * 255).astype(np.uint8)
            cv2.imwrite(str(root / "LOL" / "our485" / split / f"{i + 1}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_the_curve_is_fitted_on_the_training_split_without_its_holdout(tmp_path):
    lol_folder(tmp_path)
    curve, fitted_on = fit_on_dataset("LOL", tmp_path)
    assert fitted_on == "LOL train without its hold-out (38 pairs)"  # 5% of 40 held out
    np.testing.assert_allclose(curve[:, 20], min(3 * 20 / 255, 1), atol=2 / 255)
    done = run_command(
        "-m", "restore.models.tone", "LOL", "--data-root", str(tmp_path), "--out", str(tmp_path / "c.yaml")
    )
    assert done.returncode == 0 and (tmp_path / "c.yaml").is_file(), done.stderr
    again = run_command(
        "-m", "restore.models.tone", "LOL", "--data-root", str(tmp_path), "--out", str(tmp_path / "c.yaml")
    )
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "never overwritten" in again.stderr
