"""Helpers shared by the tests: paths to ../shared and small model configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTORE_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip saying so when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent (set RESTORE_SHARED to the shared/ folder to run this test)", allow_module_level=True
        )
    return path


# A small MAXIM with every kind of module (2 stages, 3 scales, cross-gating),
# non-square blocks and a 16 x 32 size multiple, cheap enough for CPU tests.
TINY_MAXIM = dict(
    features=8,
    depth=3,
    num_stages=2,
    num_groups=1,
    num_bottleneck_blocks=1,
    num_supervision_scales=3,
    block_size_hr=(4, 8),
    grid_size_hr=(8, 4),
    block_size_lr=(2, 4),
    grid_size_lr=(2, 4),
)


def compose_config(config_name: str, *overrides: str):
    """A config of conf/ composed by Hydra as its command would compose it (no run dir)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def run_command(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` as a user types it, from the repository root; text output captured."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def lightning_checkpoint(model, **extra) -> dict:
    """What ``restore.module.RestorationModule`` saves: the network under ``model.``, its Hydra
    config (an OmegaConf DictConfig) under hyper_parameters['model']."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"_target_": "restore.models.MAXIM", **model.config.as_dict()})
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return {"state_dict": state, "hyper_parameters": {"model": cfg}, "epoch": 3, **extra}


def assert_reproduces_recorded_psnr(ckpt: Path, dataset, per_image_csv: Path, row: str, images: int) -> None:
    """The shipped ``ckpt`` scores the first three images of ``dataset`` as the recorded evaluation
    did (``per_image_csv``'s rows of ``row``, which holds ``images`` images), to 0.01 dB."""
    import csv

    import pytest

    from restore.inference import restore_image
    from restore.metrics import score
    from restore.models.loading import load_model

    with open(per_image_csv, newline="") as handle:
        recorded = {line["image"]: float(line["psnr"]) for line in csv.DictReader(handle) if line["dataset"] == row}
    assert len(recorded) == images
    model = load_model(ckpt=ckpt)
    for index in (0, 1, 2):
        item = dataset[index]
        restored = restore_image(model, item["input"][None])
        psnr = float(score(restored, item["target"][None], dataset.benchmark.protocol)["psnr"][0])
        assert psnr == pytest.approx(recorded[item["name"]], abs=0.01), item["name"]
