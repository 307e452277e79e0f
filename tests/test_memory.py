"""The pre-flight estimate of a training step's memory, and the refusal (restore/memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from restore.errors import ConfigError
from restore.memory import check_step_memory, estimate_step_memory
from restore.module import RestorationModule
from tests.helpers import ROOT, TINY_MAXIM

TINY = {"_target_": "restore.models.MAXIM", **TINY_MAXIM}

# A fresh process (its resident peak is its own): the estimate, as training takes it before
# fitting, then two real training steps; the measure is the kernel's peak resident size.
MEASURE = """
import json, sys, torch
from restore.memory import estimate_step_memory
from restore.module import RestorationModule
torch.set_num_threads(1)
torch.manual_seed(0)
module = RestorationModule(model=json.loads(sys.argv[1]))
batch, patch = int(sys.argv[2]), json.loads(sys.argv[3])
estimate = estimate_step_memory(module, batch, patch)
held = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
optimizer = torch.optim.Adam(module.model.parameters())
x = torch.rand(batch, 3, *patch)
for _ in range(2):
    loss, _ = module.loss(module.model(x), x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
# VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec (pytest's, GBs).
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"estimate": estimate.needed, "peak": peak, "held": held}))
"""


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return RestorationModule(model=TINY)


def test_the_estimate_is_within_a_quarter_of_the_measured_peak():
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(TINY), "2", "[64, 128]"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Not a baseline that happens to match: the step adds at least half as much again.
    assert result["peak"] - result["held"] > 0.5 * result["held"], result
    assert result["estimate"] / result["peak"] == pytest.approx(1.0, abs=0.25), result


def test_a_step_that_does_not_fit_is_refused_naming_every_knob(module):
    with pytest.raises(ConfigError) as err:
        check_step_memory(module, batch_size=4096, patch_size=512)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("one training step needs about ")
    for knob in ("data.batch_size=", "data.patch_size=", "model.activation_checkpointing=true needs ~"):
        assert knob in message


def test_a_step_that_fits_passes_and_the_estimate_grows_with_the_batch(module):
    small = check_step_memory(module, batch_size=1, patch_size=64)
    assert small.fits and small.needed < small.available
    large = estimate_step_memory(module, batch_size=8, patch_size=64)
    assert large.needed > small.needed and not large.activation_checkpointing


def test_the_probe_leaves_the_model_and_the_random_state_alone(module):
    module.model.eval()
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    rng = torch.get_rng_state()
    assert estimate_step_memory(
        module, batch_size=2, patch_size=64, activation_checkpointing=True
    ).activation_checkpointing
    assert not module.model.training and not module.model.config.activation_checkpointing
    assert all(p.grad is None for p in module.model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_an_unknown_precision_is_a_config_error(module):
    with pytest.raises(ConfigError, match="trainer.precision=8-bit"):
        estimate_step_memory(module, batch_size=1, patch_size=64, precision="8-bit")
