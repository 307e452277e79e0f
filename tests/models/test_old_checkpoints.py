"""Lightning checkpoints written before ``MaximConfig`` existed still load and restore the same.

``tests/fixtures/maxim_before_config_refactor_{gmlp,attention}.ckpt`` were saved by the
code of that time the way training saves (``tests.helpers.lightning_checkpoint``): flat
constructor fields as an OmegaConf DictConfig under ``hyper_parameters['model']``, the
weights under ``model.``, and, under ``reference``, a fixed input and every output the
model gave for it then.
"""

from __future__ import annotations

import pytest
import torch

from restore.models.loading import load_model, read_checkpoint
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.mark.parametrize("mixer", ["gmlp", "attention"])
def test_a_checkpoint_from_before_the_config_refactor_loads_strictly_and_gives_its_outputs(mixer):
    path = FIXTURES / f"maxim_before_config_refactor_{mixer}.ckpt"
    reference = read_checkpoint(path)["reference"]
    model = load_model(ckpt=path)  # builds from the flat fields, load_state_dict(strict=True)
    assert model.config.mixer == mixer
    with torch.no_grad():
        outputs = model(reference["input"])
    assert [len(stage) for stage in outputs] == [2, 2]
    for stage, stage_reference in zip(outputs, reference["outputs"]):
        for out, expected in zip(stage, stage_reference):
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
