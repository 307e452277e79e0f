"""Official checkpoint conversion: every released name and shape, strict loading,
clear errors for files that are not official MAXIM checkpoints."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from restore.models import MAXIM, CheckpointError, load_official
from restore.models.config import VARIANTS, MaximConfig
from restore.models.convert import (
    expected_official_shapes,
    infer_config,
    main,
    official_state_dict,
    read_official_npz,
)
from restore.models.loading import load_preset
from tests.helpers import TINY_MAXIM, shared_path

PRESETS = {"S-1": "maxim_1s", "S-2": "maxim_2s", "S-3": "maxim_3s"}


@pytest.fixture(scope="module")
def released_shapes():
    return json.loads(shared_path("maxim", "fixtures", "official_param_shapes.json").read_text())["variants"]


@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_released_checkpoint_names_and_shapes_convert_strictly(variant, released_shapes):
    shapes = released_shapes[variant]
    # Zero arrays stand in for the released weights: names and shapes are what is checked.
    params = {key.removeprefix("opt/target/"): np.zeros(shape, np.float32) for key, shape in shapes.items()}
    config = infer_config(params)
    preset = OmegaConf.to_container(load_preset(PRESETS[variant]))
    preset.pop("_target_")
    model = MAXIM(**config)
    assert model.config == MaximConfig(**preset)  # every field recovered from names and shapes alone
    assert model.config == dataclasses.replace(VARIANTS[variant], num_supervision_scales=3)
    assert expected_official_shapes(model) == {k: tuple(v) for k, v in shapes.items()}
    model.load_state_dict(official_state_dict(model, params), strict=True)


def test_conv_transpose_kernels_are_flipped_and_dense_kernels_transposed():
    model = MAXIM(**TINY_MAXIM)
    params = {
        k.removeprefix("opt/target/"): np.random.default_rng(0).random(s).astype(np.float32)
        for k, s in expected_official_shapes(model).items()
    }
    state = official_state_dict(model, params)
    kernel = params["stage_0_decoder_block_0/ConvTranspose_0/kernel"]  # (kh, kw, in, out)
    torch_weight = state["stages.0.decoders.0.up.weight"]  # (in, out, kh, kw)
    assert torch.equal(torch_weight[:, :, 0, 0], torch.from_numpy(kernel[1, 1]))
    assert torch.equal(torch_weight[:, :, 1, 0], torch.from_numpy(kernel[0, 1]))
    dense = params["stage_0_global_block_0/SplitHeadMultiAxisGmlpLayer_0/in_project/kernel"]
    assert torch.equal(state["stages.0.bottleneck.0.mabs.0.in_project.weight"], torch.from_numpy(dense).t())


def test_truncated_npz_gets_a_clear_error(tmp_path):
    source = shared_path("maxim", "fixtures", "official_tiny.npz").read_bytes()
    broken = tmp_path / "truncated.npz"
    broken.write_bytes(source[: len(source) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.npz: truncated or corrupt \.npz"):
        load_official(broken)


def test_zero_byte_and_missing_files(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.npz"):
        load_official(empty)
    with pytest.raises(CheckpointError, match="no such file"):
        load_official(tmp_path / "nowhere.npz")


def test_npz_of_another_model_gets_a_clear_error(tmp_path):
    other = tmp_path / "nafnet.npz"
    np.savez(other, **{"opt/target/intro/kernel": np.zeros((3, 3, 3, 32), np.float32)})
    with pytest.raises(
        CheckpointError, match="cannot infer the MAXIM config: parameter 'stage_0_input_conv_0/kernel' is missing"
    ):
        load_official(other)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'opt/target/' parameters"):
        load_official(plain)


def test_checkpoint_that_does_not_fit_the_config_lists_the_mismatches():
    npz = shared_path("maxim", "fixtures", "official_tiny.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError) as info:
            config = json.loads(npz.with_suffix(".json").read_text())["config"]
            load_official(npz, **{**config, "num_groups": 2, "channels_reduction": 2})
    report = str(info.value)
    assert report.startswith(str(npz))
    assert "missing:" in report and "SplitHeadMultiAxisGmlpLayer_1" in report
    assert (
        "mis-shaped:" in report
        and "channel_attention/Conv_0/kernel: checkpoint (1, 1, 8, 2), model (1, 1, 8, 4)" in report
    )


def test_pickle_bearing_file_is_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, **{"opt/target/x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_official_npz(evil)
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="pickle"):
        read_official_npz(pickled)


def test_command_line_writes_a_state_dict_and_never_overwrites(tmp_path, capsys):
    npz = shared_path("maxim", "fixtures", "official_tiny.npz")
    out = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([str(npz), str(out), "--config", str(npz.with_suffix(".json"))]) == 0
        reference = load_official(npz, **json.loads(npz.with_suffix(".json").read_text())["config"])
    printed = capsys.readouterr().out
    assert "443,890 parameters" in printed
    state = torch.load(out, weights_only=True)
    config = json.loads(printed.split("config:", 1)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MAXIM(**config)
    model.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[-1][-1], reference(x)[-1][-1])
    before = out.read_bytes()
    with pytest.raises(SystemExit):
        main([str(npz), str(out)])
    assert out.read_bytes() == before
