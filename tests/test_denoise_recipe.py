"""The Gaussian-denoising recipe end to end: the CBSD432 preset trains and logs its learning curve
against wall-clock minutes, the curve is drawn with BM3D on the same hold-out images, and the
shipped denoiser reproduces the per-image CBSD68 scores its results file records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from restore.data import build_dataset
from restore.metrics import score
from restore.models.bm3d import BM3D
from tests.helpers import ROOT, assert_reproduces_recorded_psnr, run_command, shared_path
from tests.test_train import logged, train

SHIPPED = ROOT / "weights" / "maxim1s_w32_cbsd432_sigma25.ckpt"
RESULTS = ROOT / "docs" / "results" / "denoise_cbsd432_cpu"


def photo_like_set(folder: Path, count: int, size=(72, 72)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for i in range(count):
        smooth = cv2.GaussianBlur(rng.uniform(0, 255, (*size, 3)), (0, 0), 3)
        cv2.imwrite(str(folder / f"{1000 + i}.jpg"), np.clip((smooth - 128) * 3 + 128, 0, 255).astype(np.uint8))
    return folder


def test_the_cbsd432_preset_logs_minutes_at_each_validation_and_its_curve_shows_bm3d_on_that_holdout(tmp_path):
    photo_like_set(tmp_path / "data" / "CBSD432", count=34)  # 3% of 34: one held-out image
    run = tmp_path / "run"
    train(
        run,
        "experiment=denoise_cbsd432_cpu",
        f"data_root={tmp_path / 'data'}",
        "model.features=8",
        "module.compile=false",  # compiling takes minutes on two cores; the preset's speed-up is measured elsewhere
        "trainer.max_steps=5",
        "trainer.val_check_interval=2",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    # training ended between two saves (step 5, saves every 2): last.ckpt still holds the final step
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"] == 5
    minutes = [value for _, value in logged(run, "time/minutes")]
    assert len(minutes) == 2 and 0 < minutes[0] < minutes[1]
    assert [step for step, _ in logged(run, "val/CBSD432-val/psnr")] == [1, 3]
    out = tmp_path / "curve" / "curve.png"
    done = run_command(
        "benchmarks/learning_curve.py", str(run), "--out", str(out), "--baseline", "bm3d", "--workers", "1"
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    holdout = json.loads((out.parent / "bm3d_holdout.json").read_text())
    assert holdout["set"] == "CBSD432/val" and holdout["images"] == 1 and holdout["sigma"] == 25
    noise = {"name": "gaussian_noise", "sigma": 25}
    holdout_set = build_dataset("CBSD432", tmp_path / "data" / "CBSD432", "val", degradation=noise, seed=42)
    item = holdout_set[0]  # the run's seed: the very noise its validation saw
    expected = score(BM3D(sigma=25)(item["input"][None]), item["target"][None], holdout_set.benchmark.protocol)["psnr"]
    assert holdout["psnr"] == pytest.approx(float(expected[0]), abs=0.01)


def test_the_shipped_denoiser_reproduces_its_recorded_cbsd68_scores_to_a_hundredth_of_a_db():
    noise = {"name": "gaussian_noise", "sigma": 25}
    dataset = build_dataset("CBSD68", shared_path("benchmarks", "CBSD68"), "test", degradation=noise, seed=0)
    assert_reproduces_recorded_psnr(SHIPPED, dataset, RESULTS / "maxim_per_image.csv", "CBSD68 σ25", images=68)


def test_the_readme_table_is_the_recorded_evaluation():
    readme = (ROOT / "README.md").read_text().split("## A trained denoiser: MAXIM-1S against BM3D", 1)[1]
    for model, name in (("maxim", "MAXIM-1S"), ("bm3d", "CBM3D"), ("identity", "noisy input")):
        rows = {row["dataset"]: row for row in json.loads((RESULTS / f"{model}.json").read_text())["rows"]}
        line = next(line for line in readme.splitlines() if line.startswith(f"| {name}"))
        for dataset in ("CBSD68 σ25", "Kodak24 σ25"):
            assert f"{rows[dataset]['psnr']:.2f} / {rows[dataset]['ssim']:.4f}" in line, (name, dataset, line)


def test_predict_denoises_a_photo_with_the_shipped_weights_and_no_download(tmp_path):
    clean = cv2.imread(str(shared_path("benchmarks", "Kodak24") / "kodim01.png"))[:200, :300]
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), noisy)
    done = run_command(
        "-m",
        "restore.predict",
        f"input={tmp_path / 'photo.png'}",
        f"output={tmp_path / 'out'}",
        f"ckpt={SHIPPED}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 0, done.stderr
    restored = cv2.imread(str(tmp_path / "out" / "photo.png"))
    assert restored.shape == clean.shape

    def psnr(image):
        return 10 * np.log10(255**2 / np.mean((image.astype(np.float64) - clean) ** 2))

    assert psnr(restored) > psnr(noisy) + 8, (psnr(restored), psnr(noisy))


def test_the_model_card_states_the_recorded_scores_and_the_file_fits_the_size_limit():
    card = (ROOT / "weights" / "maxim1s_w32_cbsd432_sigma25.md").read_text()
    rows = {row["dataset"]: row for row in json.loads((RESULTS / "maxim.json").read_text())["rows"]}
    for dataset in ("CBSD68 σ25", "Kodak24 σ25"):
        assert f"{rows[dataset]['psnr']:.2f}" in card
    assert SHIPPED.stat().st_size < 15 * 2**20
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(state) == {"state_dict", "hyper_parameters", "global_step"}
    assert re.search(r"\b6,139,561\b", card)
