"""The shipped blind denoiser: predict's and the app's default for denoising, its recorded scores
reproduced from the file, its card and its preset."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from restore.data import build_dataset
from restore.predict import model_for_prediction
from tests.helpers import ROOT, assert_reproduces_recorded_psnr, compose_config, run_command, shared_path

SHIPPED = ROOT / "weights" / "maxim1s_w32_cbsd432_blind.ckpt"
RESULTS = ROOT / "docs" / "results" / "denoise_blind_cpu"


@pytest.mark.parametrize("sigma", [15, 50])
def test_the_shipped_blind_denoiser_reproduces_its_recorded_cbsd68_scores(sigma):
    noise = {"name": "gaussian_noise", "sigma": sigma}
    dataset = build_dataset("CBSD68", shared_path("benchmarks", "CBSD68"), "test", degradation=noise, seed=0)
    per_image = RESULTS / "maxim_blind_per_image.csv"
    assert_reproduces_recorded_psnr(SHIPPED, dataset, per_image, f"CBSD68 σ{sigma}", images=68)


def test_task_denoise_restores_with_the_blind_model_when_no_release_is_on_disk(tmp_path):
    cfg = compose_config("predict", "task=denoise", f"weights_dir={tmp_path}", "input=x", "output=y")
    _, description = model_for_prediction(cfg)
    assert SHIPPED.name in description


@pytest.mark.parametrize("sigma", [10, 50])
def test_predict_without_a_noise_level_denoises_light_and_heavy_noise_of_a_saved_photo(tmp_path, sigma):
    clean = cv2.imread(str(shared_path("benchmarks", "Kodak24") / "kodim05.png"))[:160, :240]
    noisy = np.clip(clean + np.random.default_rng(sigma).normal(0, sigma, clean.shape), 0, 255).round()
    cv2.imwrite(str(tmp_path / "photo.png"), noisy.astype(np.uint8))
    done = run_command(
        "-m", "restore.predict", f"input={tmp_path / 'photo.png'}", f"output={tmp_path / 'out'}", "task=denoise",
        f"weights_dir={tmp_path / 'no-release'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def psnr(image):
        return 10 * np.log10(255**2 / np.mean((image.astype(np.float64) - clean) ** 2))

    restored = cv2.imread(str(tmp_path / "out" / "photo.png"))
    assert psnr(restored) > psnr(noisy) + (4 if sigma == 10 else 10), (psnr(restored), psnr(noisy))


def test_the_card_states_the_recorded_scores_and_the_file_fits_the_size_limit():
    card = (ROOT / "weights" / "maxim1s_w32_cbsd432_blind.md").read_text()
    rows = {row["dataset"]: row for row in json.loads((RESULTS / "maxim_blind.json").read_text())["rows"]}
    for dataset, row in rows.items():
        assert f"{row['psnr']:.2f}" in card, dataset
    assert SHIPPED.stat().st_size < 16 * 2**20
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert all(value.dtype == torch.float16 for value in state["state_dict"].values() if value.is_floating_point())
    preset = compose_config("train", "experiment=denoise_blind_cpu")
    assert preset.degradation.sigma == [0, 55] and preset.degradation.photo == 0.5 and preset.data.channel_shuffle


def recorded(pattern: str) -> dict[str, float]:
    """PSNR by dataset over the result files matching ``pattern``."""
    return {
        row["dataset"]: row["psnr"] for path in RESULTS.glob(pattern) for row in json.loads(path.read_text())["rows"]
    }


@pytest.mark.parametrize(
    ("line_start", "pattern"),
    [
        ("| **MAXIM-1S blind, the default**", "maxim_blind.json"),
        ("| MAXIM-1S σ-25 model |", "maxim_sigma25_*.json"),
        ("| CBM3D, same images, told σ |", "bm3d_*.json"),
    ],
)
def test_the_readme_rows_of_the_denoiser_table_are_their_recorded_evaluations(line_start, pattern):
    scores = recorded(pattern)
    lines = (ROOT / "README.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model | CBSD68 σ15 |"))
    line = next(line for line in lines if line.startswith(line_start))
    columns = [cell.strip() for cell in header.strip("|").split("|")][1:]
    cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")][1:]
    checked = 0
    for column, cell in zip(columns, cells, strict=True):
        dataset = "PolyU" if column.startswith("PolyU") else column
        if dataset in scores:
            assert cell == f"{scores[dataset]:.2f}", column
            checked += 1
    assert checked >= 4, line
