"""The LOL low-light recipe end to end: the preset trains on a hold-out of our485 by the wall
clock, the shipped model reproduces its recorded eval15 scores, and restore.predict task=lowlight
brightens a photo with it and no download."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from restore.data import build_dataset
from restore.models.ship import WEIGHTS_DIR
from tests.helpers import ROOT, assert_reproduces_recorded_psnr, run_command, shared_path
from tests.test_train import checkpoint, logged, train

SHIPPED = WEIGHTS_DIR / "maxim1s_w32_lol.ckpt"
RESULTS = ROOT / "docs" / "results" / "lowlight_lol_cpu"


def lol_like(root, count: int) -> None:
    """A LOL v1 layout of smooth photos and their dark, noisy versions."""
    rng = np.random.default_rng(3)
    for split in ("low", "high"):
        (root / "LOL" / "our485" / split).mkdir(parents=True)
    for i in range(count):
        high = cv2.GaussianBlur(rng.uniform(0, 255, (72, 96, 3)), (0, 0), 3)
        low = np.clip(high * 0.15 + rng.normal(0, 2, high.shape), 0, 255)
        for split, image in (("low", low), ("high", high)):
            cv2.imwrite(str(root / "LOL" / "our485" / split / f"{i + 1}.png"), image.round().astype(np.uint8))


def test_the_lol_preset_validates_on_its_holdout_and_ends_at_the_floor_of_its_time_budget(tmp_path):
    lol_like(tmp_path / "data", count=40)  # 5% of 40: two held-out pairs
    run = tmp_path / "run"
    train(
        run,
        "experiment=lowlight_lol_cpu",
        f"data_root={tmp_path / 'data'}",
        "model.features=8",
        "trainer.max_time=00:00:00:15",
        "module.warmup_steps=2",  # the preset warms up over 200 steps, more than 15 s hold
        "trainer.val_check_interval=4",
        "data.num_workers=0",
    )
    state = checkpoint(run / "checkpoints" / "last.ckpt")
    (schedule,) = state["lr_schedulers"]
    assert schedule["lr_lambdas"][0]["progress"] >= 1 and schedule["_last_lr"][0] == pytest.approx(1e-7)
    validations = logged(run, "val/LOL-val/psnr")
    assert len(validations) >= 2  # during the run and once more when its time was up
    assert validations[-1][0] == state["global_step"] - 1
    assert logged(run, "time/minutes")[-1][1] >= 0.25


def test_the_shipped_lol_model_reproduces_its_recorded_eval15_scores_to_a_hundredth_of_a_db():
    dataset = build_dataset("LOL", shared_path("benchmarks", "LOL"), "test")
    assert_reproduces_recorded_psnr(SHIPPED, dataset, RESULTS / "maxim_per_image.csv", "LOL", images=15)


def test_the_readme_table_is_the_recorded_evaluation():
    readme = (ROOT / "README.md").read_text()
    for model, name in (
        ("maxim", "MAXIM-1S w32, trained here"),
        ("lol_tone_curve", "global tone curve"),
        ("histogram_equalization", "histogram equalisation"),
        ("clahe", "CLAHE"),
        ("identity", "low-light input"),
    ):
        (row,) = [row for row in json.loads((RESULTS / f"{model}.json").read_text())["rows"] if row["dataset"] == "LOL"]
        line = next(line for line in readme.splitlines() if line.startswith(f"| {name}"))
        assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in line, (name, line)


def test_predict_task_lowlight_brightens_a_photo_with_the_shipped_model_and_no_download(tmp_path):
    dark = cv2.imread(str(shared_path("benchmarks", "LOL", "eval15", "low") / "1.png"))[:160, :240]
    cv2.imwrite(str(tmp_path / "dark.png"), dark)
    outputs = {}
    for name, chosen in (("task", "task=lowlight"), ("ckpt", f"ckpt={SHIPPED}")):
        done = run_command(
            "-m",
            "restore.predict",
            f"input={tmp_path / 'dark.png'}",
            f"output={tmp_path / name}",
            chosen,
            f"weights_dir={tmp_path / 'no_releases'}",
        )
        assert done.returncode == 0, done.stderr
        outputs[name] = cv2.imread(str(tmp_path / name / "dark.png"))
    np.testing.assert_array_equal(outputs["task"], outputs["ckpt"])  # task=lowlight is the shipped model
    assert outputs["task"].shape == dark.shape
    assert outputs["task"].mean() > 4 * dark.mean()


def test_the_model_card_states_the_recorded_scores_and_the_file_fits_the_size_limit():
    card = (ROOT / "weights" / "maxim1s_w32_lol.md").read_text()
    (row,) = [row for row in json.loads((RESULTS / "maxim.json").read_text())["rows"] if row["dataset"] == "LOL"]
    assert f"{row['psnr']:.2f}" in card and f"{row['ssim']:.3f}" in card
    assert SHIPPED.stat().st_size < 15 * 2**20
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(state) == {"state_dict", "hyper_parameters", "global_step"}
    assert all(value.dtype == torch.float16 for value in state["state_dict"].values() if value.is_floating_point())
    assert "citec-spbu/Retinex-Algorithm@3514382" in card  # the snapshot the training data came from
