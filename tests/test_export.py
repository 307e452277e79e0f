"""Export to ONNX / TorchScript with dynamic sizes, and the one model loader it shares."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from restore.export import export
from restore.inference import forward_padded
from restore.models import MAXIM, CheckpointError, load_official
from restore.models.loading import load_model, load_preset
from tests.helpers import lightning_checkpoint, shared_path

# A small MAXIM with both resizes the export must translate: a 2-scale input pyramid
# (nearest-exact) and cross-gating across levels (antialiased bilinear). Size multiple 8x16.
EXPORT_MAXIM = dict(
    features=8,
    depth=2,
    num_stages=1,
    num_supervision_scales=2,
    block_size_hr=(2, 4),
    grid_size_hr=(4, 2),
    block_size_lr=(2, 2),
    grid_size_lr=(2, 2),
)


@pytest.fixture(scope="module")
def small_maxim():
    torch.manual_seed(0)
    return MAXIM(**EXPORT_MAXIM).eval()


def test_onnx_export_of_a_small_maxim_agrees_with_pytorch_at_two_sizes(small_maxim, tmp_path):
    out = tmp_path / "small.onnx"
    report = export(small_maxim, out, check_sizes=[(64, 64), (96, 160)])
    assert report["format"] == "onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["small.onnx"]  # no temporary file left behind
    assert set(report["max_difference"]) == {(64, 64), (96, 160)}
    assert all(d <= 1e-4 for d in report["max_difference"].values())
    # independently of export()'s own check: an odd size that is not a multiple, in a batch of two
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 37, 45)
    with torch.no_grad():
        expected = forward_padded(small_maxim, x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    assert got.shape == (2, 3, 37, 45)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_torchscript_export_agrees_with_pytorch_at_another_size(small_maxim, tmp_path):
    out = tmp_path / "small.pt"
    report = export(small_maxim, out, check_sizes=[(64, 64)])
    assert report["format"] == "torchscript"
    loaded = torch.jit.load(str(out))
    x = torch.rand(1, 3, 53, 71)
    with torch.no_grad():
        expected = forward_padded(small_maxim, x)
        assert torch.allclose(loaded(x), expected, rtol=0, atol=1e-5 * max(1.0, expected.abs().max().item()))


def test_export_never_overwrites_and_names_the_problem(small_maxim, tmp_path):
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match="model.onnx exists"):
        export(small_maxim, existing)
    assert existing.read_bytes() == b"the user's file"
    with pytest.raises(ValueError, match="format=onnx or format=torchscript"):
        export(small_maxim, tmp_path / "model.bin")


def test_command_line_reports_missing_files_and_existing_outputs(tmp_path, monkeypatch, capsys):
    import restore.export

    monkeypatch.chdir(tmp_path)

    def run(*args) -> str:  # as `python -m restore.export ARGS`
        monkeypatch.setattr(sys, "argv", [restore.export.__file__, *args])
        with pytest.raises(SystemExit) as exit_:
            restore.export.main()
        assert exit_.value.code == 2
        return capsys.readouterr().err

    assert "absent.ckpt: no such checkpoint file" in run("ckpt=absent.ckpt", "out=m.onnx")
    assert "absent.npz: no such file" in run("weights=absent.npz", "out=m.onnx")
    (tmp_path / "m.onnx").write_text("keep me")
    assert "m.onnx exists" in run("model=maxim_1s", "out=m.onnx")
    assert (tmp_path / "m.onnx").read_text() == "keep me"


def test_load_model_rebuilds_a_lightning_checkpoint(small_maxim, tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(small_maxim), path)
    loaded = load_model(ckpt=path)
    assert not loaded.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(forward_padded(loaded, x), forward_padded(small_maxim, x))


def test_load_model_reads_the_ema_weights_that_lightnings_callback_saves_as_state_dict(tmp_path):
    """A real fit with EMAWeightAveraging: its checkpoint holds the averaged weights as state_dict
    and the raw ones as current_model_state; load_model returns the averaged ones."""
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

    config = {"_target_": "restore.models.MAXIM", **EXPORT_MAXIM}

    class Trained(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"model": config})
            self.model = MAXIM(**EXPORT_MAXIM)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return (forward_padded(self.model, x) - x).abs().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(6, 3, 32, 32)), batch_size=2)
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[
            EMAWeightAveraging(decay=0.5, update_starting_at_step=0),
            ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=3),
        ],
    )
    trainer.fit(Trained(), data)
    path = tmp_path / "last.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert "current_model_state" in saved and "ema_state_dict" not in saved  # the layout the loader relies on
    averaged = {k.removeprefix("model."): v for k, v in saved["state_dict"].items() if k.startswith("model.")}
    raw = {k.removeprefix("model."): v for k, v in saved["current_model_state"].items() if k.startswith("model.")}
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # the two differ after 3 steps

    loaded = load_model(ckpt=path).state_dict()
    assert loaded.keys() == averaged.keys()
    assert all(torch.equal(loaded[k], averaged[k]) for k in averaged)


def test_load_model_refuses_unsafe_or_unfitting_checkpoints(small_maxim, tmp_path):
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"model": {"features": 8}, "callback": np.random.default_rng()}}, unsafe
    )
    with pytest.raises(CheckpointError, match="never loaded"):
        load_model(ckpt=unsafe)
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"_target_": "os.system", "command": "true"}}}, hostile)
    with pytest.raises(CheckpointError, match="'os.system' is not a model of restore.models"):
        load_model(ckpt=hostile)
    other = tmp_path / "other.ckpt"
    checkpoint = lightning_checkpoint(small_maxim)
    checkpoint["hyper_parameters"]["model"]["features"] = 16
    torch.save(checkpoint, other)
    with pytest.raises(CheckpointError, match="do not fit the model config"):
        load_model(ckpt=other)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        (tmp_path / "broken.ckpt").write_bytes(b"PK\x03\x04 truncated")
        load_model(ckpt=tmp_path / "broken.ckpt")


def test_load_model_reads_official_weights_and_presets():
    fixture = shared_path("maxim", "fixtures", "official_tiny.npz")
    config = json.loads(fixture.with_suffix(".json").read_text())["config"]
    loaded, reference = load_model(weights=fixture, model_cfg=config), load_official(fixture, **config)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))
    model = load_model(model_cfg=load_preset("maxim_1s"))
    assert isinstance(model, MAXIM) and model.config.features == 32 and model.config.num_stages == 1
    with pytest.raises(ValueError, match="nothing to load"):
        load_model()
