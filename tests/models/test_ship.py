"""python -m restore.models.ship: a training checkpoint reduced to what inference reads."""

from __future__ import annotations

import pytest
import torch

from restore.models import MAXIM
from restore.models.loading import load_model
from restore.models.ship import main, ship
from tests.helpers import TINY_MAXIM, lightning_checkpoint


def training_checkpoint(path, model):
    moments = {  # Adam's two moments per parameter, as a Lightning checkpoint holds them
        i: {"step": torch.tensor(1234.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
        for i, p in enumerate(model.parameters())
    }
    optimizer_state = {"state": moments, "param_groups": []}
    torch.save(lightning_checkpoint(model, optimizer_states=[optimizer_state], global_step=1234), path)
    return path


def test_shipped_file_holds_half_precision_weights_and_config_only_and_restores_like_the_original(tmp_path):
    torch.manual_seed(0)
    model = MAXIM(**TINY_MAXIM).eval()
    source = training_checkpoint(tmp_path / "last.ckpt", model)
    shipped = ship(source, tmp_path / "shipped.ckpt")
    assert set(shipped) == {"state_dict", "hyper_parameters", "global_step"} and shipped["global_step"] == 1234
    assert all(v.dtype == torch.float16 for v in shipped["state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "shipped.ckpt").stat().st_size < 0.25 * source.stat().st_size
    loaded = load_model(ckpt=tmp_path / "shipped.ckpt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for key, value in loaded.state_dict().items():  # every weight is the original rounded to float16
        torch.testing.assert_close(value, model.state_dict()[key].half().float(), rtol=0, atol=0)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[-1][0], model(x)[-1][0], atol=2e-3, rtol=0)


def test_an_existing_output_is_never_overwritten_and_bad_checkpoints_are_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    source = training_checkpoint(tmp_path / "last.ckpt", MAXIM(**TINY_MAXIM))
    taken = tmp_path / "taken.ckpt"
    taken.write_bytes(b"mine")
    with pytest.raises(SystemExit) as stopped:
        main([str(source), str(taken)])
    assert stopped.value.code == 2
    assert taken.read_bytes() == b"mine" and "exists" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(SystemExit) as stopped:
        main([str(garbage), str(tmp_path / "out.ckpt")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(garbage) in err and not (tmp_path / "out.ckpt").exists()
    assert main([str(source), str(tmp_path / "fp32.ckpt"), "--dtype", "float32"]) == 0
    assert "float32 weights" in capsys.readouterr().out
