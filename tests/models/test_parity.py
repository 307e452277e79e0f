"""The port reproduces the official Flax MAXIM on the shared fixture.

The fixture (``shared/maxim/fixtures/official_tiny.npz``) holds the official
model's random parameters, an input and every output the official code
produced, plus intermediate activations. The bound is 1e-5: the LayerNorm
epsilon and GELU-variant mistakes move outputs by about 8e-5, so a looser
bound would hide them (docs/model.md, parity trap 5).
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from restore.models import load_official
from restore.models.convert import flax_modules
from restore.models.fast import for_cpu_inference
from tests.helpers import shared_path

ATOL = 1e-5


@pytest.fixture(scope="module")
def fixture():
    npz = shared_path("maxim", "fixtures", "official_tiny.npz")
    config = json.loads(npz.with_suffix(".json").read_text())["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture sets grid_size_lr != block_size_lr on purpose
        model = load_official(npz, **config)
    with np.load(npz, allow_pickle=False) as arrays:
        data = {k: arrays[k] for k in arrays.files if k.startswith("__fixture__/")}
    return model, data


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2)


# The plain model without and with autograd, and with oneDNN's kernels swapped in (what
# predict and evaluate run on the CPU).
@pytest.mark.parametrize("path", ["inference", "autograd", "onednn"])
def test_every_output_of_every_stage_matches_the_official_model(fixture, path):
    model, data = fixture
    if path == "onednn":
        model = for_cpu_inference(copy.deepcopy(model))
    with torch.set_grad_enabled(path == "autograd"):
        outputs = [[out.detach() for out in stage] for stage in model(nchw(data["__fixture__/input"]))]
    assert len(outputs) == 2 and all(len(stage) == 3 for stage in outputs)
    worst = 0.0
    for s, stage in enumerate(outputs):
        for k, output in enumerate(stage):
            scale = len(stage) - 1 - k  # official order: coarsest scale first
            reference = nchw(data[f"__fixture__/output_stage{s}_scale{scale}"])
            assert output.shape == reference.shape
            worst = max(worst, (output - reference).abs().max().item())
    assert worst <= ATOL, f"max abs error {worst:.3g} > {ATOL}"
    assert torch.equal(model.final_output(outputs), outputs[-1][-1])


def test_intermediate_activations_match(fixture):
    """Each stored module output matches, so a regression points at its module."""
    model, data = fixture
    modules = flax_modules(model)
    captured = {}
    prefix = "__fixture__/intermediate/"
    names = sorted({key[len(prefix) :].split("/")[0] for key in data if key.startswith(prefix)})
    handles = [
        modules[name][1].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out if isinstance(out, tuple) else (out,))
        )
        for name in names
    ]
    with torch.no_grad():
        model(nchw(data["__fixture__/input"]))
    for handle in handles:
        handle.remove()
    errors = {}
    for key in data:
        if key.startswith(prefix):
            name, out = key[len(prefix) :].split("/")
            reference = torch.from_numpy(data[key])  # NHWC, as the modules work internally
            errors[key] = (captured[name][int(out[3:])] - reference).abs().max().item()
    assert len(errors) == 37  # every intermediate the fixture stores
    assert max(errors.values()) <= ATOL, {k: v for k, v in errors.items() if v > ATOL}
