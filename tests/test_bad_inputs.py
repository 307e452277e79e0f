"""Bad input across every command ends in one line that names the file or key, a non-zero exit,
and every file the user gave left byte for byte as it was.

The commands run in this process through their real entry points (the Hydra mains read
``sys.argv``), so the cases share one torch import; capfd sees what a terminal would.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate as evaluate_command
import train as train_command
from restore.data import prepare as prepare_command
from restore.data.benchmarks import get_benchmark
from restore.data.io import write_image
from restore.errors import UserError
from restore.export import main as export_main
from restore.models import MAXIM
from restore.models import convert as convert_command
from restore.models import ship as ship_command
from restore.predict import main as predict_main
from tests.helpers import TINY_MAXIM, lightning_checkpoint

TRAIN = ["task=denoise", "model=maxim_1s", "model.features=8", "trainer=cpu", "logger=csv", "trainer.max_steps=2"]
FOLDER = ["data=folder", "degradation=null", "data.patch_size=64", "data.batch_size=2", "data.num_workers=0"]
PAIRS = 20


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(tmp_path):
    """The user's files (a pair folder, checkpoints, photos); checked to be untouched after each case."""
    root = tmp_path / "inputs"
    rng = np.random.default_rng(0)
    for i in range(PAIRS):
        image = rng.random((96, 96, 3), dtype=np.float32)
        write_image(root / "pairs" / "input" / f"{i:03d}.png", image)
        write_image(root / "pairs" / "target" / f"{i:03d}.png", image)
    write_image(root / "photo.png", rng.random((40, 56, 3), dtype=np.float32))
    torch.manual_seed(0)
    model = MAXIM(**TINY_MAXIM)
    torch.save(lightning_checkpoint(model), root / "weights.ckpt")
    before = snapshot(root)
    yield root
    assert snapshot(root) == before, "a command changed a file the user gave"


def one_line_error(capfd, monkeypatch, command, *arguments: str, argv: str | None = None) -> str:
    """Run a command that must fail; return its one error line after checking it is the only one."""
    # Log handlers made by an earlier run hold the stream pytest gave that test, closed since.
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                handler.stream = sys.stderr  # setStream would flush the closed one
    if argv is not None:  # a Hydra main: the overrides come from the command line
        monkeypatch.setattr(sys, "argv", [argv, *arguments])
        arguments = ()
    with pytest.raises(SystemExit) as stopped:
        command(list(arguments)) if arguments else command()
    out, err = capfd.readouterr()
    assert stopped.value.code not in (0, None)
    assert "Traceback" not in out + err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def train_fails(capfd, monkeypatch, tmp_path, *overrides: str) -> str:
    run = f"hydra.run.dir={tmp_path / 'run'}"
    return one_line_error(capfd, monkeypatch, train_command.main, *TRAIN, *overrides, run, argv="train.py")


def broken_copy(inputs: Path, tmp_path: Path, damage) -> Path:
    """A copy of the pair folder with one file damaged by ``damage(path)``; returns the copy."""
    copy = tmp_path / "damaged"
    for path in (inputs / "pairs").rglob("*.png"):
        target = copy / path.relative_to(inputs / "pairs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    damage(copy)
    return copy


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------------------------
# Training files: named at start-up, before any step, from their headers


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: (d / "input/004.png").write_bytes(b"\x89PNG not really" * 20), ["input/004.png", "cannot be read"]),
        (lambda d: truncate(d / "target/007.png"), ["target/007.png", "truncated"]),
        (lambda d: (d / "input/002.png").write_bytes(b""), ["input/002.png", "cannot be read"]),
        (
            lambda d: (
                write_image(d / "input/003.png", np.zeros((20, 20, 3)), overwrite=True)
                or write_image(d / "target/003.png", np.zeros((20, 20, 3)), overwrite=True)
            ),
            ["input/003.png", "20x20", "data.patch_size=64"],
        ),
        (
            lambda d: write_image(d / "target/005.png", np.zeros((96, 80, 3)), overwrite=True),
            ["input/005.png", "target/005.png", "80x96"],
        ),
        (lambda d: (d / "target/006.png").unlink(), ["input(s) without a target", "input/006.png"]),
    ],
    ids=["corrupt", "truncated", "empty", "undersized", "mismatched", "unpaired"],
)
def test_a_bad_training_file_is_named_before_the_first_step(inputs, tmp_path, capfd, monkeypatch, damage, words):
    root = broken_copy(inputs, tmp_path, damage)
    line = train_fails(capfd, monkeypatch, tmp_path, *FOLDER, f"data.root={root}")
    for word in words:
        assert word in line
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training started


def test_a_file_broken_inside_is_named_from_the_worker_with_how_to_resume(inputs, tmp_path, capfd, monkeypatch):
    # The header and the end marker are intact; only decoding the pixels fails: in the loader
    # worker of the first validation, after two training steps.
    (validation,) = get_benchmark("folder").samples(inputs / "pairs", "val")
    name = validation.input.path.name

    def damage(folder):
        data = (folder / "input" / name).read_bytes()
        (folder / "input" / name).write_bytes(data[: len(data) // 2] + data[-12:])

    root = broken_copy(inputs, tmp_path, damage)
    line = train_fails(
        capfd,
        monkeypatch,
        tmp_path,
        *FOLDER,
        f"data.root={root}",
        "data.num_workers=1",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "callbacks.last_checkpoint.every_n_train_steps=1",
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"input/{name} cannot be decoded" in line and "Caught" not in line
    assert f"resume with ckpt_path={last}" in line and torch.load(last, weights_only=True)["global_step"] == 2


def test_full_error_shows_the_trace(inputs, tmp_path, monkeypatch):
    root = broken_copy(inputs, tmp_path, lambda d: truncate(d / "input/001.png"))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(
        sys, "argv", ["train.py", *TRAIN, *FOLDER, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    with pytest.raises(UserError, match="truncated"):
        train_command.main()


# --------------------------------------------------------------------------------------------
# Config values: the key, what it got, what it needs


@pytest.mark.parametrize(
    "override, words",
    [
        ("trainer.max_steps=abc", ["trainer.max_steps='abc'", "an integer"]),
        ("trainer.precision=bf17", ["trainer.precision='bf17'", "'bf16-mixed'"]),
        ("trainer.log_every_n_steps=1.5", ["trainer.log_every_n_steps=1.5", "an integer"]),
        ("module.lr=fast", ["module.lr='fast'", "a number"]),
        ("module.warmup_steps=-3", ["module.warmup_steps=-3", ">= 0"]),
        ("trainer.max_steps=0", ["trainer.max_steps=0", ">= 1"]),
        ("model.features=abc", ["model.features='abc'", "an integer"]),
        ("model.features=0", ["features", "positive"]),
        ("data.batch_size=0", ["data.batch_size", ">= 1"]),
        ("data.num_workers=many", ["data.num_workers='many'", "an integer"]),
        ("data.patch_size=100", ["data.patch_size=100", "multiple of 64x64"]),
        ("callbacks.best_checkpoint.save_top_k=all", ["callbacks.best_checkpoint.save_top_k='all'", "an integer"]),
    ],
)
def test_a_wrong_config_value_names_its_key(tmp_path, capfd, monkeypatch, override, words):
    line = train_fails(capfd, monkeypatch, tmp_path, "data=demo", override)
    for word in words:
        assert word in line, line


# --------------------------------------------------------------------------------------------
# Checkpoints and .npz files that are not what they claim


def test_resuming_from_files_that_are_not_training_checkpoints(inputs, tmp_path, capfd, monkeypatch):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((inputs / "weights.ckpt").read_bytes()[:5000])
    for path, words in (
        (garbage, ["not a PyTorch checkpoint"]),
        (truncated, ["not a readable PyTorch checkpoint"]),
        (inputs / "weights.ckpt", ["weights only", "last.ckpt"]),
        (tmp_path / "absent.ckpt", ["no such checkpoint file"]),
    ):
        line = train_fails(capfd, monkeypatch, tmp_path, "data=demo", f"ckpt_path={path}")
        assert str(path) in line and all(word in line for word in words), line


def test_evaluate_predict_export_and_convert_refuse_foreign_checkpoints(inputs, tmp_path, capfd, monkeypatch):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, params=np.array([{"a": 1}], dtype=object))
    truncated_npz = tmp_path / "truncated.npz"
    np.savez(truncated_npz, a=np.zeros(1000))
    truncate(truncated_npz)
    evaluated = one_line_error(
        capfd,
        monkeypatch,
        evaluate_command.main,
        "suite=denoise",
        f"ckpt={foreign}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        argv="evaluate.py",
    )
    assert str(foreign) in evaluated and "state_dict" in evaluated
    predicted = one_line_error(
        capfd,
        monkeypatch,
        predict_main,
        f"input={inputs / 'photo.png'}",
        f"output={tmp_path / 'out'}",
        f"weights={pickled}",
        argv="predict",
    )
    assert str(pickled) in predicted
    exported = one_line_error(
        capfd, monkeypatch, export_main, f"weights={truncated_npz}", f"out={tmp_path / 'model.onnx'}", argv="export"
    )
    assert str(truncated_npz) in exported and not (tmp_path / "model.onnx").exists()
    converted = one_line_error(capfd, monkeypatch, convert_command.main, str(garbage_npz(tmp_path)), "out.pt")
    assert "garbage.npz" in converted
    shipped = one_line_error(capfd, monkeypatch, ship_command.main, str(foreign), str(tmp_path / "s.ckpt"))
    assert str(foreign) in shipped and not (tmp_path / "s.ckpt").exists()


def garbage_npz(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(2).bytes(500))
    return path


# --------------------------------------------------------------------------------------------
# Outputs that already hold files, images that cannot be read, datasets that are not there


def test_outputs_that_exist_are_never_overwritten(inputs, tmp_path, capfd, monkeypatch):
    taken = tmp_path / "taken"
    write_image(taken / "photo.png", np.ones((8, 8, 3)))
    mine = (taken / "photo.png").read_bytes()
    line = one_line_error(
        capfd,
        monkeypatch,
        predict_main,
        f"input={inputs / 'photo.png'}",
        f"output={taken}",
        "model=identity",
        argv="predict",
    )
    assert "photo.png" in line and (taken / "photo.png").read_bytes() == mine
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"mine")
    line = one_line_error(
        capfd, monkeypatch, export_main, "model=maxim_1s", "model.features=8", f"out={onnx}", argv="export"
    )
    assert str(onnx) in line and onnx.read_bytes() == b"mine"
    results = tmp_path / "results.json"
    results.write_text("mine")
    line = one_line_error(
        capfd,
        monkeypatch,
        evaluate_command.main,
        "suite=denoise",
        "model=identity",
        f"results={results}",
        f"data_root={tmp_path / 'nothing'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        argv="evaluate.py",
    )
    assert str(results) in line and results.read_text() == "mine"


def test_unreadable_photos_and_bad_restore_options_are_one_line(inputs, tmp_path, capfd, monkeypatch):
    broken = tmp_path / "broken.png"
    broken.write_bytes((inputs / "photo.png").read_bytes()[:100])
    line = one_line_error(
        capfd,
        monkeypatch,
        predict_main,
        f"input={broken}",
        f"output={tmp_path / 'out'}",
        "model=identity",
        argv="predict",
    )
    assert str(broken) in line
    line = one_line_error(
        capfd,
        monkeypatch,
        predict_main,
        f"input={inputs / 'photo.png'}",
        f"output={tmp_path / 'out2'}",
        "model=identity",
        "tile=huge",
        argv="predict",
    )
    assert "tile=huge" in line


def test_missing_datasets_are_one_line_for_training_and_prepare(tmp_path, capfd, monkeypatch):
    line = train_fails(capfd, monkeypatch, tmp_path, "data=folder", f"data.root={tmp_path / 'nowhere'}")
    assert "nowhere" in line
    line = one_line_error(capfd, monkeypatch, prepare_command.main, "GoPro", "--root", str(tmp_path / "nowhere"))
    assert "nowhere" in line
