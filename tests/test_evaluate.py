"""python evaluate.py: the suites on miniature benchmark layouts, the identity baseline against
numpy, the command-line contract, result files, loggers and refusals."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rich.console import Console

from restore.data import build_dataset, get_benchmark
from restore.data.io import read_image
from restore.errors import ConfigError
from restore.evaluation import evaluate
from restore.inference import restore_image
from restore.metrics import score
from restore.models import MAXIM, CheckpointError
from restore.models.loading import load_model
from tests.data import layouts
from tests.helpers import ROOT, TINY_MAXIM, compose_config, lightning_checkpoint, run_command, shared_path

RAIN = ("Rain100L", "Rain100H", "Test100", "Test1200", "Test2800")
CLEAN = ("CBSD68", "Kodak24", "McMaster", "Urban100")
ROW_KEYS_ORDER = ("dataset", "images", "psnr", "ssim", "protocol", "seconds")  # the JSON schema of DESIGN.md
ROW_KEYS = set(ROW_KEYS_ORDER)
# Every miniature pair is a constant image k and its input k + OFFSET: on RGB, 20 log10(255 / OFFSET) dB.
CONSTANT_PSNR = 20 * math.log10(255 / layouts.OFFSET)


def run_evaluate(tmp_path: Path, *overrides: str, device: str = "cpu"):
    """``python evaluate.py OVERRIDES`` in-process: the report and what was printed. On the CPU by
    default, so that values compared with CPU computations are reproducible to the last bit."""
    cfg = compose_config(
        "evaluate", f"paths.output_dir={tmp_path / 'run'}", "num_workers=0", f"device={device}", *overrides
    )
    printed = io.StringIO()
    report = evaluate(cfg, console=Console(file=printed, width=200))
    return report, printed.getvalue()


def noisy_input_psnr(folder: Path, sigma: float, seed: int = 0) -> float:
    """The mean PSNR of the noisy inputs of a clean set against its files, in numpy.

    The noisy inputs come from the dataset builder (the noise is a function of the seed and the
    image index); the clean images are read here with OpenCV, the noise level is checked, and the
    PSNR is that of the noisy image saved as an 8-bit PNG (clipped, rounded).
    """
    dataset = build_dataset(
        folder.name, folder, "test", degradation={"name": "gaussian_noise", "sigma": sigma}, seed=seed
    )
    psnrs, residuals = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        noisy = item["input"].numpy().transpose(1, 2, 0).astype(np.float64)  # (H, W, 3) in [0, 1], unclipped
        clean = cv2.imread(str(folder / f"{item['name']}.png"))[:, :, ::-1].astype(np.float64)  # RGB 0-255
        residuals.append((noisy * 255 - clean).ravel())
        saved = np.rint(np.clip(noisy, 0, 1) * 255)
        psnrs.append(10 * np.log10(255.0**2 / np.mean((saved - clean) ** 2)))
    residual = np.concatenate(residuals)
    assert abs(residual.std() - sigma) < 0.05 * sigma and abs(residual.mean()) < 0.05 * sigma
    return float(np.mean(psnrs))


def printed_row(stdout: str, dataset: str) -> str:
    lines = [line for line in stdout.splitlines() if f" {dataset} " in line]
    assert len(lines) == 1, stdout
    return lines[0]


# ---------------------------------------------------------------------------------------------
# The command-line contract: the identity row of CBSD68 at sigma 25


def check_identity_contract(folder: Path, data_root: str, tmp_path: Path, expected_images: int) -> None:
    results = tmp_path / "results.json"
    run = run_command(
        "evaluate.py",
        "suite=denoise",
        "model=identity",
        f"data_root={data_root}",
        "datasets=[CBSD68]",
        "sigma=25",
        f"results={results}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(results.read_text(encoding="utf-8"))
    (row,) = data["rows"]
    assert set(row) == ROW_KEYS
    assert row["dataset"] == "CBSD68 σ25" and row["images"] == expected_images
    assert row["protocol"] == "RGB, SSIM-2D, uint8"
    expected = noisy_input_psnr(folder, sigma=25)
    assert row["psnr"] == pytest.approx(expected, abs=1e-6)
    assert f"{expected:.3f}" in printed_row(run.stdout, "CBSD68 σ25")
    assert data["config"]["sigma"] == 25 and data["config"]["datasets"] == ["CBSD68"]
    assert "(the degraded input as it is), in fp32" in run.stdout  # the title names the precision: the protocol's
    assert json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))["rows"] == data["rows"]


def test_contract_identity_row_of_real_cbsd68_is_the_psnr_of_its_noisy_inputs(tmp_path):
    folder = shared_path("benchmarks", "CBSD68")
    check_identity_contract(folder, os.path.relpath(folder.parent, ROOT), tmp_path, expected_images=68)


def test_contract_identity_row_of_generated_photos_is_the_psnr_of_their_noisy_inputs(tmp_path):
    folder = tmp_path / "data" / "CBSD68"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for name, (h, w) in {"101085": (41, 57), "102061": (57, 41), "3096": (32, 48)}.items():
        smooth = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)), (0, 0), 3)
        cv2.imwrite(str(folder / f"{name}.png"), np.clip(smooth * 3 - 200, 0, 255).astype(np.uint8))  # some 0 / 255
    check_identity_contract(folder, str(folder.parent), tmp_path, expected_images=3)


# ---------------------------------------------------------------------------------------------
# Miniature copies of every benchmark layout


def textured_realblur(root: Path, variant: str) -> dict[str, tuple[Path, Path]]:
    """RealBlur's layout with textured pairs (ECC needs texture): ``{test image name: (blurred, sharp)}``."""
    layouts.realblur(root, variant)
    pairs = {}
    for split in ("train", "test"):
        for k, line in enumerate((root / f"RealBlur_{variant}_{split}_list.txt").read_text().split("\n")):
            if not line:
                continue
            gt, blur = (root / part for part in line.split())
            rng = np.random.default_rng(k)
            sharp = cv2.GaussianBlur(rng.uniform(0, 255, (48, 64, 3)), (0, 0), 2)
            sharp = np.clip((sharp - sharp.mean()) * 4 + 128, 0, 255).astype(np.uint8)
            cv2.imwrite(str(gt), sharp)
            cv2.imwrite(str(blur), cv2.GaussianBlur(sharp, (0, 0), 1.0))
            pairs[f"{blur.parts[-3]}/{blur.stem}"] = (blur, gt)
    return pairs


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """A data root holding a miniature copy of every dataset of the five suites."""
    root = tmp_path_factory.mktemp("data")
    layouts.gopro(root / "GoPro")
    layouts.hide(root / "HIDE")
    realblur = {v: textured_realblur(root / f"RealBlur_{v}", v) for v in "JR"}
    layouts.sidd(root / "SIDD")
    layouts.polyu(root / "PolyU")
    for name in RAIN:
        layouts.input_target(root / name)
    layouts.sots(root / "SOTS")
    layouts.lol(root / "LOL")
    layouts.fivek(root / "FiveK")
    for name in CLEAN:
        layouts.clean_set(root / name)
    return root, realblur


EXPECTED_ROWS = {
    "deblur": {"GoPro": 2, "HIDE": 3, "RealBlur_J": 2, "RealBlur_R": 2},
    "denoise": {"SIDD": 6, "PolyU": 2, **{f"{name} σ{sigma}": 3 for name in CLEAN for sigma in (15, 25, 50)}},
    "derain": {**{name: 4 for name in RAIN}, "average": 20},
    "dehaze": {"SOTS indoor": 4, "SOTS outdoor": 2},
    "lowlight": {"LOL": 2, "FiveK": 1},
}


def rain_psnr(name: str) -> float:
    """Y-channel PSNR of a miniature rain pair: gray k + OFFSET against gray k, k the name's position,
    Y = 16 + 219 v / 255 rounded half up as MATLAB's rgb2ycbcr does on uint8 images."""
    k = ("1", "2", "10", "11").index(name)

    def luma(v: int) -> int:
        return math.floor(16 + 219 * v / 255 + 0.5)

    return 20 * math.log10(255 / (luma(k + layouts.OFFSET) - luma(k)))


@pytest.mark.parametrize("suite", EXPECTED_ROWS)
def test_each_suite_finds_pairs_and_scores_every_dataset_of_its_miniature_layout(suite, miniature, tmp_path):
    data_root, realblur = miniature
    report, printed = run_evaluate(tmp_path, f"suite={suite}", "model=identity", f"data_root={data_root}")
    assert {row.dataset: row.images for row in report.rows} == EXPECTED_ROWS[suite]
    assert not report.skipped
    for row in report.rows:
        assert row.dataset in printed
        if row.dataset != "average":
            name = row.dataset.split(" ")[0]
            assert row.protocol == get_benchmark(name).protocol.describe()
    for image in report.images:
        name = image.dataset.split(" ")[0]
        if name.startswith("RealBlur"):  # ECC-aligned; the expected value from the pair written above
            blurred, sharp = (
                torch.from_numpy(read_image(p).transpose(2, 0, 1))[None] for p in realblur[name[-1]][image.image]
            )
            expected = score(blurred, sharp, get_benchmark(name).protocol)["psnr"].item()
            assert image.psnr == pytest.approx(expected, abs=1e-9)
        elif name in RAIN:
            assert image.psnr == pytest.approx(rain_psnr(image.image), abs=1e-9), image
        elif name not in CLEAN:
            # a mispair has another offset; SIDD is scored on float32 inputs / 255, hence 1e-6
            assert image.psnr == pytest.approx(CONSTANT_PSNR, abs=1e-6), image
    for row in report.rows:
        if row.dataset.split(" ")[0] in CLEAN:  # white noise of sigma s on 0-255: about 20 log10(255 / s) dB
            sigma = float(row.dataset.split("σ")[1])
            assert abs(row.psnr - 20 * math.log10(255 / sigma)) < 1.0, row
    per_image = list(csv.DictReader((tmp_path / "run" / "per_image.csv").open(encoding="utf-8")))
    assert len(per_image) == len(report.images)
    saved = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert [row["dataset"] for row in saved["rows"]] == list(EXPECTED_ROWS[suite])


def test_gopro_ssim_row_is_the_mean_over_its_images(miniature, tmp_path):
    report, _ = run_evaluate(
        tmp_path, "suite=deblur", "model=identity", f"data_root={miniature[0]}", "datasets=[GoPro]"
    )
    # Constant images: the SSIM of every window is (2 mu_p mu_t + C1) / (mu_p^2 + mu_t^2 + C1); GoPro's
    # test frames are k = 6 and 7 (after six training frames).
    c1 = (0.01 * 255) ** 2
    expected = [(2 * (k + 100) * k + c1) / ((k + 100) ** 2 + k**2 + c1) for k in (6, 7)]
    (row,) = report.rows
    assert [image.ssim for image in report.images] == pytest.approx(expected, abs=1e-12)
    assert row.ssim == pytest.approx(np.mean(expected), abs=1e-12)


def test_datasets_missing_under_data_root_are_listed_as_skipped_with_the_path_looked_for(tmp_path):
    layouts.gopro(tmp_path / "data" / "GoPro")
    report, printed = run_evaluate(tmp_path, "suite=deblur", "model=identity", f"data_root={tmp_path / 'data'}")
    assert [row.dataset for row in report.rows] == ["GoPro"]
    assert [(s.dataset, s.path) for s in report.skipped] == [
        (name, str(tmp_path / "data" / name)) for name in ("HIDE", "RealBlur_J", "RealBlur_R")
    ]
    assert f"skipped HIDE: {tmp_path / 'data' / 'HIDE'} does not exist" in printed
    saved = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert saved["skipped"][0] == {"dataset": "HIDE", "path": str(tmp_path / "data" / "HIDE")}
    with pytest.raises(ConfigError, match="nothing to evaluate: no dataset of suite=dehaze"):
        run_evaluate(tmp_path / "dehaze", "suite=dehaze", "model=identity", f"data_root={tmp_path / 'data'}")


def test_rain_average_is_the_mean_of_the_five_set_means_and_only_exists_with_all_five(miniature, tmp_path):
    report, _ = run_evaluate(tmp_path / "all", "suite=derain", "model=identity", f"data_root={miniature[0]}")
    sets, average = report.rows[:-1], report.rows[-1]
    assert average.dataset == "average" and average.images == sum(row.images for row in sets)
    assert average.psnr == pytest.approx(np.mean([row.psnr for row in sets]), abs=1e-12)
    assert average.ssim == pytest.approx(np.mean([row.ssim for row in sets]), abs=1e-12)
    assert average.protocol == "Y, SSIM-2D, uint8; mean of 5 set means"
    report, printed = run_evaluate(
        tmp_path / "two", "suite=derain", "model=identity", f"data_root={miniature[0]}", "datasets=[Rain100L,test100]"
    )
    assert [row.dataset for row in report.rows] == ["Rain100L", "Test100"]
    assert "no average row: it is the mean over all of Rain100L, Rain100H, Test100, Test1200, Test2800" in printed


def test_datasets_picks_sets_or_single_splits_and_names_the_suite_datasets_when_unknown(miniature, tmp_path):
    data_root = f"data_root={miniature[0]}"
    report, _ = run_evaluate(tmp_path / "a", "suite=dehaze", "model=identity", data_root, "datasets=['SOTS outdoor']")
    assert [row.dataset for row in report.rows] == ["SOTS outdoor"]
    report, _ = run_evaluate(
        tmp_path / "b", "suite=denoise", "model=identity", data_root, "datasets=[kodak24]", "sigma=[15,50]"
    )
    assert [row.dataset for row in report.rows] == ["Kodak24 σ15", "Kodak24 σ50"]
    unknown = "'Set12' is not in suite=denoise; its datasets: SIDD, PolyU, CBSD68, Kodak24"
    with pytest.raises(ConfigError, match=unknown):
        run_evaluate(tmp_path / "c", "suite=denoise", "model=identity", data_root, "datasets=[Set12]")
    with pytest.raises(ConfigError, match="sigma=25 sets the noise of synthetic Gaussian sets; suite=deblur has none"):
        run_evaluate(tmp_path / "d", "suite=deblur", "model=identity", data_root, "sigma=25")
    with pytest.raises(ConfigError, match=r"sigma=0: noise levels are numbers in \(0, 255\]"):
        run_evaluate(tmp_path / "e", "suite=denoise", "model=identity", data_root, "sigma=0")


def test_a_lightning_checkpoint_is_restored_scored_and_saved_as_16_bit_pngs(miniature, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(lightning_checkpoint(MAXIM(**TINY_MAXIM)), ckpt)
    report, _ = run_evaluate(
        tmp_path,
        "suite=dehaze",
        f"ckpt={ckpt}",
        f"data_root={miniature[0]}",
        "datasets=['SOTS outdoor']",
        "save_images=true",
        "save_bits=16",
    )
    model = load_model(ckpt=ckpt)
    dataset = build_dataset("SOTS", miniature[0] / "SOTS", "outdoor")
    assert [image.image for image in report.images] == dataset.names
    for image, item in zip(report.images, (dataset[i] for i in range(len(dataset)))):
        restored = restore_image(model, item["input"][None])  # (1, 3, 16, 24): padded to 16 x 32 and cropped
        expected = score(restored, item["target"][None], get_benchmark("SOTS").protocol)
        assert image.psnr == pytest.approx(expected["psnr"].item(), abs=1e-9)
        assert image.psnr != pytest.approx(CONSTANT_PSNR, abs=0.01)  # the network changed the input
        saved = cv2.imread(
            str(tmp_path / "run" / "images" / "SOTS_outdoor" / f"{image.image}.png"), cv2.IMREAD_UNCHANGED
        )
        assert saved.dtype == np.uint16 and saved.shape == (16, 24, 3)
        np.testing.assert_allclose(
            saved[:, :, ::-1] / 65535, restored[0].clamp(0, 1).permute(1, 2, 0), atol=0.51 / 65535
        )


def test_results_file_format_follows_the_extension_and_an_existing_file_is_never_replaced(miniature, tmp_path):
    args = ("suite=lowlight", "model=identity", f"data_root={miniature[0]}")
    report, _ = run_evaluate(tmp_path / "json", *args, f"results={tmp_path / 'r.json'}")
    assert [set(row) for row in json.loads((tmp_path / "r.json").read_text())["rows"]] == [ROW_KEYS, ROW_KEYS]
    run_evaluate(tmp_path / "csv", *args, f"results={tmp_path / 'r.csv'}")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [row["dataset"] for row in rows] == ["LOL", "FiveK"] and list(rows[0]) == list(ROW_KEYS_ORDER)
    assert float(rows[0]["psnr"]) == pytest.approx(report.rows[0].psnr, abs=1e-9)
    run_evaluate(tmp_path / "md", *args, f"results={tmp_path / 'r.md'}")
    markdown = (tmp_path / "r.md").read_text()
    assert "| dataset | images | PSNR | SSIM | protocol | seconds |" in markdown
    assert f"| LOL | 2 | {report.rows[0].psnr:.2f} | {report.rows[0].ssim:.4f} | RGB, SSIM-2D, uint8 |" in markdown
    before = (tmp_path / "r.md").read_bytes()
    with pytest.raises(FileExistsError, match="r.md exists"):
        run_evaluate(tmp_path / "again", *args, f"results={tmp_path / 'r.md'}")
    assert (tmp_path / "r.md").read_bytes() == before
    with pytest.raises(ValueError, match="use .json, .csv or .md"):
        run_evaluate(tmp_path / "txt", *args, f"results={tmp_path / 'r.txt'}")
    with pytest.raises(FileExistsError, match="results.json exists: the run dir holds an earlier evaluation"):
        run_evaluate(tmp_path / "json", *args)


def test_bad_models_and_options_are_refused_before_any_image_is_restored(miniature, tmp_path):
    data_root = f"data_root={miniature[0]}"
    cases = [
        (("suite=lowlight",), ConfigError, "no model: give ckpt=FILE"),
        (("suite=lowlight", "ckpt=a.ckpt", "weights=b.npz"), ValueError, "either ckpt=.*or weights=.*not both"),
        (("suite=lowlight", f"ckpt={tmp_path / 'absent.ckpt'}"), CheckpointError, "absent.ckpt: no such checkpoint"),
        (("suite=lowlight", f"weights={tmp_path / 'absent.npz'}"), CheckpointError, "absent.npz: no such file"),
        (("suite=lowlight", "model=identity", "tile=0"), ConfigError, "tile=0: give a tile side"),
        (("suite=lowlight", "model=identity", "save_bits=12"), ConfigError, "save_bits=12: give 8 or 16"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            run_evaluate(tmp_path, data_root, *overrides)
    with pytest.raises(ValueError, match="device=cuda:7"):
        run_evaluate(tmp_path, data_root, "suite=lowlight", "model=identity", device="cuda:7")
    assert not (tmp_path / "run").exists()  # nothing was written


def test_command_line_errors_are_one_line_and_unknown_suites_list_the_suites(tmp_path):
    run = run_command("evaluate.py", "suite=deblur", f"ckpt={tmp_path / 'absent.ckpt'}", f"hydra.run.dir={tmp_path}")
    assert run.returncode == 2
    assert (
        run.stderr.strip() == f"error: {tmp_path / 'absent.ckpt'}: no such checkpoint file (expected a Lightning .ckpt)"
    )
    run = run_command("evaluate.py", "suite=deblurring", "model=identity", f"hydra.run.dir={tmp_path}")
    assert run.returncode == 1
    assert "Could not find 'suite/deblurring'" in run.stderr
    assert all(f"\t{suite}" in run.stderr for suite in EXPECTED_ROWS)


def test_logger_wandb_sends_the_results_table_offline(miniature, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    report, _ = run_evaluate(tmp_path, "suite=lowlight", "model=identity", f"data_root={miniature[0]}", "logger=wandb")
    (table_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/files/media/table/evaluate/lowlight_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == list(ROW_KEYS_ORDER)
    assert [row[0] for row in table["data"]] == ["LOL", "FiveK"]
    assert table["data"][0][2] == pytest.approx(report.rows[0].psnr, abs=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_on_cuda_agrees_with_the_cpu(miniature, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(lightning_checkpoint(MAXIM(**TINY_MAXIM)), ckpt)
    args = ("suite=deblur", f"ckpt={ckpt}", f"data_root={miniature[0]}", "datasets=[GoPro,RealBlur_J]")
    cpu, _ = run_evaluate(tmp_path / "cpu", *args)
    cuda, _ = run_evaluate(tmp_path / "cuda", *args, device="cuda")
    assert [image.image for image in cuda.images] == [image.image for image in cpu.images]
    for on_cuda, on_cpu in zip(cuda.images, cpu.images):
        assert on_cuda.psnr == pytest.approx(on_cpu.psnr, abs=0.01) and on_cuda.ssim == pytest.approx(
            on_cpu.ssim, abs=1e-3
        )
