"""model=bm3d: the bm3d package's CBM3D / BM3D as a model, run through the evaluation path."""

from __future__ import annotations

import json

import bm3d
import cv2
import numpy as np
import pytest
import torch

from restore.data import build_dataset
from restore.data.datamodule import DatasetSpec
from restore.errors import ConfigError
from restore.evaluation import RestoredInWorkers, check_noise_levels
from restore.metrics import score
from restore.models.bm3d import BM3D
from tests.helpers import run_command
from tests.test_evaluate import run_evaluate


def textured_set(folder, names=("101085", "102061"), size=(48, 40), gray=False):
    """Small smooth-plus-edges photos: something BM3D can denoise well."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in names:
        smooth = cv2.GaussianBlur(rng.uniform(0, 255, (*size, 3)), (0, 0), 4)
        image = np.clip((smooth - smooth.mean()) * 4 + 128, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{name}.png"), image[:, :, 0] if gray else image)
    return folder


# The package itself is not bit-reproducible: two calls on one image differ by up to ~2e-4 in
# a few pixels (seen here), so outputs are compared at 1e-3 (a quarter of one 8-bit level).
PACKAGE_REPEATABILITY = 1e-3


def test_rgb_images_get_cbm3d_and_gray_ones_bm3d_as_the_package_computes_them():
    rng = np.random.default_rng(0)
    clean = cv2.GaussianBlur(rng.uniform(0, 1, (40, 48, 3)), (0, 0), 3)
    noisy = clean + rng.normal(0, 25 / 255, clean.shape)
    x = torch.from_numpy(noisy.transpose(2, 0, 1)).float()[None]
    model = BM3D(sigma=25)
    expected_rgb = bm3d.bm3d_rgb(x[0].double().numpy().transpose(1, 2, 0), sigma_psd=25 / 255, profile="np")
    np.testing.assert_allclose(model(x)[0].numpy().transpose(1, 2, 0), expected_rgb, atol=PACKAGE_REPEATABILITY)
    gray = x[:, :1].expand(-1, 3, -1, -1)
    expected_gray = bm3d.bm3d(gray[0, 0].double().numpy(), sigma_psd=25 / 255, profile="np")
    out = model(gray)[0]
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    np.testing.assert_allclose(out[0].numpy(), expected_gray, atol=PACKAGE_REPEATABILITY)
    with pytest.raises(ValueError, match="needs the noise level"):
        BM3D()(x)


def test_restoring_in_two_worker_processes_gives_the_same_images_as_in_the_main_process(tmp_path):
    folder = textured_set(tmp_path / "CBSD68", names=("a", "b", "c"))
    dataset = build_dataset("CBSD68", folder, "test", degradation={"name": "gaussian_noise", "sigma": 25}, seed=0)
    model = BM3D(sigma=25)
    loader = torch.utils.data.DataLoader(RestoredInWorkers(dataset, model, {}), batch_size=1, num_workers=2)
    for i, item in enumerate(loader):
        restored_here = model(dataset[i]["input"][None])
        torch.testing.assert_close(item["restored"], restored_here, rtol=0, atol=PACKAGE_REPEATABILITY)


@pytest.mark.parametrize("name, gray", [("CBSD68", False), ("BSD68", True)])
def test_evaluate_model_bm3d_beats_the_identity_row_on_the_same_noisy_images(tmp_path, name, gray):
    textured_set(tmp_path / "data" / name, gray=gray)
    common = ("suite=denoise", f"data_root={tmp_path / 'data'}", f"datasets=[{name}]", "sigma=25")
    if gray:
        common = ("suite=denoise_gray", *common[1:])
    bm3d_report, printed = run_evaluate(tmp_path / "bm3d", "model=bm3d", *common)
    identity_report, _ = run_evaluate(tmp_path / "identity", "model=identity", *common)
    (row,) = bm3d_report.rows
    (baseline,) = identity_report.rows
    assert row.dataset == baseline.dataset == f"{name} σ25" and row.images == 2
    assert row.psnr > baseline.psnr + 6, (row.psnr, baseline.psnr)
    # the row is the mean of the per-image scores, each that of BM3D's own output
    dataset = build_dataset(name, tmp_path / "data" / name, "test", degradation={"name": "gaussian_noise", "sigma": 25})
    psnrs = [
        float(score(BM3D(sigma=25)(item["input"][None]), item["target"][None], dataset.benchmark.protocol)["psnr"][0])
        for item in (dataset[0], dataset[1])
    ]
    assert row.psnr == pytest.approx(np.mean(psnrs), abs=0.01)
    assert "BM3D" in bm3d_report.model and f"{name} σ25" in printed


def test_bm3d_on_a_real_noise_set_is_refused_before_any_image_with_the_fix(tmp_path):
    with pytest.raises(
        ConfigError, match=r"known Gaussian noise level.*SIDD.*datasets=\[CBSD68,Kodak24\].*model.sigma=10"
    ):
        check_noise_levels(BM3D(), "BM3D", [DatasetSpec("SIDD", "test", tmp_path, label="SIDD")])


def test_bm3d_restores_real_noise_at_the_level_it_is_given(tmp_path):
    """PolyU-like pairs: a clean photo and a noisy shot of it; BM3D told sigma=15 denoises the shot."""
    clean = textured_set(tmp_path / "clean", names=("sceneA", "sceneB"))
    polyu = tmp_path / "data" / "PolyU"
    polyu.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for path in clean.iterdir():
        image = cv2.imread(str(path))
        noisy = np.clip(image + rng.normal(0, 15, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(polyu / f"{path.stem}_mean.png"), image)
        cv2.imwrite(str(polyu / f"{path.stem}_real.png"), noisy)
    common = ("suite=denoise", f"data_root={tmp_path / 'data'}", "datasets=[PolyU]")
    report, _ = run_evaluate(tmp_path / "bm3d", "model=bm3d", "model.sigma=15", *common)
    baseline, _ = run_evaluate(tmp_path / "identity", "model=identity", *common)
    (row,), (noisy_row,) = report.rows, baseline.rows
    assert row.dataset == "PolyU" and row.images == 2
    assert row.psnr > noisy_row.psnr + 4, (row.psnr, noisy_row.psnr)


def test_evaluate_py_model_bm3d_uses_its_workers_and_writes_the_results_json(tmp_path):
    textured_set(tmp_path / "data" / "Kodak24", names=("kodim01", "kodim02"))
    results = tmp_path / "bm3d.json"
    run = run_command(
        "evaluate.py",
        "suite=denoise",
        "model=bm3d",
        f"data_root={tmp_path / 'data'}",
        "datasets=[Kodak24]",
        "sigma=25",
        "num_workers=2",
        f"results={results}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(results.read_text())["rows"]
    assert row["dataset"] == "Kodak24 σ25" and row["images"] == 2 and row["psnr"] > 30
