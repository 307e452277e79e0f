"""What a training run prints first: steps counted out of max_steps, no FLOPs figures that read 0,
no warnings about the project's own configuration."""

from __future__ import annotations

import re

import pytest

from tests.test_train import FAST, logged, train

STEPS = 6  # more than one pass over the demo's training images at batch size 2: the bar must not restart


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(the run's folder, everything it printed) for a short run on the demo data."""
    run_dir = tmp_path_factory.mktemp("first_screen")
    done = train(
        run_dir,
        *FAST,
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS}",
        # a FLOP/s reading within this short run; still longer than a pass over the images, the
        # interval Lightning's warning compares it with
        f"trainer.log_every_n_steps={STEPS}",
        "callbacks.throughput.window_size=2",
    )
    return run_dir, done.stdout + done.stderr


def test_progress_counts_steps_out_of_max_steps(run):
    _, output = run
    assert not re.search(r"Epoch \d+/-", output), output
    assert re.search(rf"Step\s.*\b{STEPS}/{STEPS}\b", output), output


def test_flops_are_counted_not_printed_as_zero(run):
    run_dir, output = run
    assert "FLOPs" not in output, output
    assert "flops_per_batch" not in output, output  # ThroughputMonitor's warning when the module has none
    readings = logged(run_dir, "train/device/flops_per_sec")
    assert readings and all(value > 0 for _, value in readings)


def test_no_warning_about_the_logging_interval(run):
    _, output = run
    assert "log_every_n_steps" not in output, output
