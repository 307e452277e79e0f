"""A wheel of the project holds everything it reads at run time, conf/ included, and its commands
run from an install that knows nothing of this checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from restore.models.loading import load_preset
from tests.helpers import ROOT

# What the build reads (pyproject.toml names README.md as the long description). The wheel is
# built from a copy so the checkout gets no build/ folder and concurrent runs cannot collide.
BUILD_INPUTS = ("pyproject.toml", "README.md", "restore", "conf")


def relative_files(folder: Path) -> set[str]:
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory) -> tuple[Path, Path]:
    """(the sources the wheel was built from, the folder it was installed into)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    pip("wheel", ".", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"), cwd=source)
    (wheel,) = (work / "dist").glob("restore-*.whl")
    target = work / "target"
    pip("install", "--no-deps", "--no-compile", "--target", str(target), str(wheel), cwd=work)
    return source, target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` seeing the installed wheel and the dependencies only: -S skips
    site-packages' .pth files, so the checkout's editable install cannot answer ``import restore``."""
    paths = sysconfig.get_paths()
    dependencies = dict.fromkeys([paths["purelib"], paths["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *dependencies])}
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_wheel_holds_every_module_and_config(wheel_install):
    source, target = wheel_install
    installed = relative_files(target / "restore")
    configs = {name.removeprefix("conf/") for name in installed if name.startswith("conf/")}
    assert installed - {f"conf/{name}" for name in configs} == relative_files(source / "restore")
    assert configs == relative_files(source / "conf")


def test_a_model_preset_is_read_from_the_installed_package(wheel_install, tmp_path):
    _, target = wheel_install
    script = (
        "import json, restore\n"
        "from restore.models.loading import build_preset\n"
        "model = build_preset('maxim_1s', features=8)\n"
        "config = model.config.as_dict()\n"
        "print(json.dumps({'file': restore.__file__, 'conf': str(restore.CONF_DIR), 'config': config}))\n"
    )
    done = run_installed(target, tmp_path, "-c", script)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["file"]) == target / "restore" / "__init__.py"
    assert Path(found["conf"]) == target / "restore" / "conf"
    preset = OmegaConf.to_container(load_preset("maxim_1s"))
    expected = {key: value for key, value in preset.items() if key != "_target_"} | {"features": 8}
    assert {key: found["config"][key] for key in expected} == expected


def test_predict_runs_from_the_installed_wheel(wheel_install, tmp_path):
    _, target = wheel_install
    pixels = np.random.default_rng(0).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    done = run_installed(
        target, tmp_path, "-m", "restore.predict", "model=identity", "input=photo.png", "output=restored", "device=cpu"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "restored" / "photo.png")), pixels)
    assert {path.name for path in tmp_path.iterdir()} == {"photo.png", "restored"}  # nothing else written
