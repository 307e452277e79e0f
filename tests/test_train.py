"""`python train.py` end to end on the zero-download demo data, on CPU.

Each test runs the real entry point in a subprocess (Hydra, Lightning, the
datamodule, wandb in offline mode) with a tiny MAXIM, and checks what the run
wrote: checkpoints, metrics, wandb files, or the error it printed.
"""

from __future__ import annotations

import csv
import math
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from restore.errors import ConfigError
from restore.module import RestorationModule, WarmupCosine
from restore.training import resolve_ckpt_path
from tests.helpers import ROOT

TINY = ["data=demo", "model=maxim_1s", "model.features=8", "trainer=cpu"]
# Small patches and an early validation keep a run to seconds on two cores.
FAST = [*TINY, "data.patch_size=64", "data.batch_size=2", "data.val_max_images=1", "logger=csv"]


def train(run_dir: Path, *overrides: str, timeout: int = 600, check: bool = True, wait: bool = True, preexec_fn=None):
    """Run train.py with ``overrides`` into ``run_dir``; returns the CompletedProcess (or the Popen).
    ``preexec_fn`` runs in the child before train.py starts (resource limits)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, "train.py", *overrides]
    if not any(o.startswith(("--multirun", "-m")) for o in overrides):
        command.append(f"hydra.run.dir={run_dir}")
    if not wait:  # output to a file: an unread pipe would fill up and stall the run
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir.parent / f"{run_dir.name}.log", "w")  # noqa: SIM115 - closed by the OS with the process
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn
    )
    if check and done.returncode != 0:
        raise AssertionError(f"train.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) rows of one metric from the CSV logger."""
    (metrics,) = (run_dir / "csv").glob("version_*/metrics.csv")
    with open(metrics) as f:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(f) if row.get(key)]


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_every_task_trains_three_steps_on_the_demo_data(tmp_path):
    """``python train.py task=<task>`` for each of the five tasks, as one Hydra multirun (one output dir per job)."""
    tasks = ["denoise", "deblur", "derain", "dehaze", "lowlight"]
    train(
        tmp_path,
        "--multirun",
        f"task={','.join(tasks)}",
        *TINY,
        "trainer.max_steps=3",
        "logger=csv",
        f"hydra.sweep.dir={tmp_path}",
    )
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3", "4"]
    for job, task in zip(jobs, tasks):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert config.task_name == task
        state = checkpoint(job / "checkpoints" / "last.ckpt")
        assert state["global_step"] == 3
        assert state["hyper_parameters"]["model"]["features"] == 8


def test_a_small_maxim_learns_to_denoise(tmp_path):
    """Validation PSNR must beat the noisy input's by at least 2 dB after a short run."""
    train(
        tmp_path,
        *FAST,
        "task=denoise",
        "degradation.sigma=25",
        "data.val_max_images=2",
        "trainer.max_steps=120",
        "trainer.val_check_interval=120",
        "module.lr=2e-3",
        "data.batch_size=4",
    )
    ((_, restored),) = logged(tmp_path, "val/psnr")
    ((_, noisy),) = logged(tmp_path, "val/input_psnr")
    assert restored >= noisy + 2.0, f"restored {restored:.2f} dB vs noisy input {noisy:.2f} dB"


def validate_in_one_process(run_dir: Path) -> float:
    """val/psnr of a run's last.ckpt, recomputed in this process on one device."""
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    module = RestorationModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    datamodule = instantiate(config.data)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, use_distributed_sampler=False
    )
    (result,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    return result["val/psnr"]


def test_ddp_validation_scores_every_image_once_and_multirun_keeps_one_dir_per_job(tmp_path):
    """Two gloo processes validate like one process (same PSNR on the same weights), and a
    --multirun of DDP jobs writes each job, all its ranks included, into that job's own directory."""
    train(
        tmp_path,
        "--multirun",
        "seed=1,2",
        *FAST,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "data.val_max_images=3",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert (tmp_path / job / "train_ddp_process_1.log").exists()  # rank 1 ran inside its job's directory
    run = tmp_path / "0"
    ((step, ddp_psnr),) = logged(run, "val/psnr")
    assert step == 1  # the last (second) step, zero-based
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert validate_in_one_process(run) == pytest.approx(ddp_psnr, abs=1e-4)


RESUMABLE = [
    "trainer.max_steps=12",
    "callbacks.last_checkpoint.every_n_train_steps=2",
    "trainer.deterministic=true",
    "trainer.val_check_interval=1000",
]


def signal_mid_run(run_dir: Path, overrides: list[str], signum: int) -> tuple[subprocess.Popen, int]:
    """Start a run, send ``signum`` once a checkpoint of step 4 or later exists; the process and
    the step of that checkpoint."""
    process = train(run_dir, *overrides, wait=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if last.exists() and 4 <= _step_of(last) < 12:
            break
        assert process.poll() is None, f"the run ended before the signal: see {run_dir.name}.log"
        time.sleep(0.2)
    seen = _step_of(last)
    process.send_signal(signum)
    process.wait(timeout=300)
    return process, seen


def assert_same_weights(resumed: dict, reference: dict, keys=("state_dict",)) -> None:
    assert resumed["global_step"] == reference["global_step"] == 12
    for weights in keys:
        assert resumed[weights].keys() == reference[weights].keys()
        for name, value in reference[weights].items():
            assert torch.equal(resumed[weights][name], value), f"{weights}: {name} differs after resuming"


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL mid-run, resume from last.ckpt: same final step and, deterministic on CPU, the same
    weights, the EMA of the weights included."""
    steps = [*RESUMABLE, "callbacks=ema", "callbacks.ema.update_starting_at_step=1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(straight, *FAST, *steps)
    _, killed_at = signal_mid_run(killed, [*FAST, *steps], signal.SIGKILL)
    last = killed / "checkpoints" / "last.ckpt"
    assert 4 <= _step_of(last) < 12

    train(killed, *FAST, *steps, f"ckpt_path={last}")
    reference = checkpoint(straight / "checkpoints" / "last.ckpt")
    # the EMA weights, and the trained weights
    assert_same_weights(checkpoint(last), reference, keys=("state_dict", "current_model_state"))
    ema, trained = reference["state_dict"], reference["current_model_state"]
    assert any(not torch.equal(ema[name], trained[name]) for name in ema)  # the EMA really averaged


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_preempted_run_saves_the_step_it_stopped_after_and_resumes_to_the_same_weights(tmp_path, signum):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(straight, *FAST, *RESUMABLE)
    process, seen = signal_mid_run(stopped, [*FAST, *RESUMABLE], signum)
    last = stopped / "checkpoints" / "last.ckpt"
    output = (stopped.parent / f"{stopped.name}.log").read_text()
    assert process.returncode == 128 + signum  # a stop, not a finished job
    step = _step_of(last)
    assert seen <= step < 12  # the step the signal interrupted was finished and saved
    assert f"stopped by {signal.Signals(signum).name} after step {step}; its checkpoint is {last}" in output
    assert f"resume with ckpt_path={last}" in output and "Traceback" not in output
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no partial file left

    train(stopped, *FAST, *RESUMABLE, f"ckpt_path={last}")
    assert_same_weights(checkpoint(last), checkpoint(straight / "checkpoints" / "last.ckpt"))


def test_a_sigterm_to_one_of_two_gloo_ranks_stops_both_after_the_same_step_and_resumes_exactly(tmp_path):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.val_max_images=2"]  # one per rank
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(straight, *FAST, *ddp, *RESUMABLE)
    process, seen = signal_mid_run(stopped, [*FAST, *ddp, *RESUMABLE], signal.SIGTERM)  # rank 0 only
    last = stopped / "checkpoints" / "last.ckpt"
    assert process.returncode == 128 + signal.SIGTERM
    assert seen <= _step_of(last) < 12
    assert "stopped by SIGTERM after step" in (stopped.parent / f"{stopped.name}.log").read_text()

    train(stopped, *FAST, *ddp, *RESUMABLE, f"ckpt_path={last}")
    assert_same_weights(checkpoint(last), checkpoint(straight / "checkpoints" / "last.ckpt"))


GLOO = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("error:")]


def test_a_killed_gloo_rank_ends_the_other_within_60_s_with_one_line_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    overrides = [*FAST, *GLOO, "data.val_max_images=2", *RESUMABLE, "trainer.max_steps=200"]
    process = train(run, *overrides, wait=False)
    last, registered = run / "checkpoints" / "last.ckpt", run / "checkpoints" / ".ranks" / "1.alive"
    deadline = time.time() + 300
    while not (last.exists() and _step_of(last) >= 4 and registered.exists()):
        assert process.poll() is None and time.time() < deadline, f"see {run.name}.log"
        time.sleep(0.2)
    pid = int(registered.read_text().split()[1])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    process.wait(timeout=120)
    assert time.monotonic() - killed < 60
    log = run.parent / f"{run.name}.log"
    (line,) = error_lines(log)  # rank 0's; rank 1 is gone
    assert process.returncode == 4, log.read_text()[-3000:]
    assert line.startswith(f"error: rank 0: rank 1 died (process {pid} is gone); every rank stopped; ")
    step = _step_of(last)
    assert f"the newest checkpoint is {last} (step {step}): resume with ckpt_path=last" in line
    assert "Traceback" not in log.read_text()

    train(run, *[o for o in overrides if o != "trainer.max_steps=200"], "trainer.max_steps=12", f"ckpt_path={last}")
    assert checkpoint(last)["global_step"] == 12


def test_a_rank_that_raises_names_its_error_and_the_other_rank_names_that_rank(tmp_path):
    from restore.data.io import write_image

    pairs = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for i in range(12):
        image = rng.random((96, 96, 3), dtype=np.float32)
        write_image(pairs / "input" / f"{i:03d}.png", image)
        write_image(pairs / "target" / f"{i:03d}.png", image)
    broken = pairs / "input" / "005.png"  # header and end marker intact: only decoding the pixels fails
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2] + data[-12:])
    run = tmp_path / "run"
    folder = ["data=folder", f"data.root={pairs}", "degradation=null", "data.patch_size=64", "data.batch_size=2"]
    done = train(
        run, *TINY[1:], *folder, "data.num_workers=0", "logger=csv", *GLOO, "trainer.max_steps=20", check=False
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(lines) == 2, done.stderr[-3000:]
    failing = next(line for line in lines if "failed:" not in line)
    rank = int(re.match(r"error: rank (\d): ", failing).group(1))
    assert "input/005.png cannot be decoded" in failing
    other = next(line for line in lines if line != failing)
    assert other.startswith(f"error: rank {1 - rank}: rank {rank} failed: ")
    assert "input/005.png cannot be decoded" in other and "every rank stopped" in other
    assert lines[0].startswith("error: rank 0: ")  # rank 0's line comes first
    assert "Traceback" not in done.stdout + done.stderr


def test_a_diverging_run_stops_on_the_step_it_happens_and_never_saves_non_finite_weights(tmp_path):
    # Adam moves every weight by about lr per step: lr=1e30 overflows the next forward pass
    done = train(
        tmp_path,
        *FAST,
        "module.lr=1e30",
        "module.min_lr=0",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=10",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        check=False,
    )
    assert done.returncode == 3
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    last = tmp_path / "checkpoints" / "last.ckpt"
    good = checkpoint(last)["global_step"]
    assert re.search(rf"training diverged at step {good + 1}: the gradient norm is (nan|inf)", line), line
    assert f"the last good checkpoint is {last} (step {good})" in line and "module.lr" in line
    assert "Traceback" not in done.stdout + done.stderr
    saved = sorted(p for p in last.parent.iterdir())
    assert saved and all(p.suffix == ".ckpt" for p in saved)  # no partial file left behind
    for path in saved:
        assert all(value.isfinite().all() for value in checkpoint(path)["state_dict"].values()), path.name


def test_a_checkpoint_that_does_not_fit_stops_the_run_in_one_line_and_keeps_the_previous_one(tmp_path):
    steps = ["trainer.val_check_interval=1000", "callbacks.last_checkpoint.every_n_train_steps=2"]
    train(tmp_path, *FAST, *steps, "trainer.max_steps=2")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    limit = len(before) // 2  # every log and config file fits; a checkpoint does not

    def small_files() -> None:  # in the child: files may not grow past the limit (EFBIG, not a kill)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = train(
        tmp_path, *FAST, *steps, "trainer.max_steps=6", f"ckpt_path={last}", check=False, preexec_fn=small_files
    )
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    written = r"cannot write the checkpoint \S+/checkpoints/\S+\.ckpt \(File too large\): it needs \d+\.\d MiB"
    assert re.search(written, line), line
    assert f"{tmp_path / 'checkpoints'} has" in line and f"resume with ckpt_path={last}" in line
    assert "Traceback" not in done.stdout + done.stderr
    assert last.read_bytes() == before and checkpoint(last)["global_step"] == 2  # still the previous, loadable
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no partial file left behind


def _step_of(path: Path) -> int:
    try:
        return checkpoint(path)["global_step"]
    except (OSError, RuntimeError, EOFError):  # replaced while we read it: look again
        return -1


def test_wandb_offline_run_holds_metrics_config_and_image_panels(tmp_path):
    train(
        tmp_path,
        *TINY,
        "data.patch_size=64",
        "data.batch_size=2",
        "data.val_max_images=2",
        "logger=wandb",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
    )
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    run_id = run.name.rsplit("-", 1)[1]
    # Offline runs keep history, config and summary as protobuf records in one file (synced later
    # with `wandb sync`); their keys and values are stored as plain strings inside it.
    records = (run / f"run-{run_id}.wandb").read_bytes()
    for logged_string in (
        b"val/psnr",
        b"val/ssim",
        b"train/loss",
        b"train/grad_norm",
        b"lr-Adam",
        b"task_name",
        b'"denoise"',
    ):
        assert logged_string in records, logged_string
    panels = list((run / "files" / "media" / "images" / "val").glob("panels_*.png"))
    assert len(panels) == 2  # input | output | target | error for each of the two validation images
    (table,) = (run / "files" / "media" / "table" / "val").glob("images_*.table.json")
    assert '"psnr"' in table.read_text()
    # the run id is stored with the checkpoint, so a resumed run continues the same wandb run
    assert checkpoint(tmp_path / "checkpoints" / "last.ckpt")["wandb_run_id"] == run_id


def test_init_from_starts_a_run_from_trained_weights_and_refuses_another_model_in_one_line(tmp_path):
    first, second, wider = tmp_path / "first", tmp_path / "second", tmp_path / "wider"
    train(first, *FAST, "trainer.max_steps=2")
    trained = first / "checkpoints" / "last.ckpt"
    # at lr 1e-30 Adam's steps vanish below float resolution: the run holds the weights it started from
    train(second, *FAST, "trainer.max_steps=1", "module.lr=1e-30", "module.min_lr=0", f"init_from={trained}")
    started, source = checkpoint(second / "checkpoints" / "last.ckpt"), checkpoint(trained)
    assert started["global_step"] == 1  # a new run: its own optimizer and step count
    for name, value in source["state_dict"].items():
        torch.testing.assert_close(started["state_dict"][name], value, rtol=0, atol=1e-20, msg=name)

    done = train(wider, *FAST, "trainer.max_steps=1", "model.features=16", f"init_from={trained}", check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    assert f"init_from: {trained}: the state_dict weights do not fit the model config" in output


@pytest.mark.parametrize(
    "override, message",
    [
        ("task=deblr", "Could not find 'task/deblr'"),
        ("model=maxim_4s", "Could not find 'model/maxim_4s'"),
        ("data=gopr", "Could not find 'data/gopr'"),
        ("module.lr=-1", "module.lr must be a positive number, got -1"),
        ("data.patch_size=100", "data.patch_size=100 is not a multiple of 64x64"),
        ("model=identity", "model: IdentityBaseline has no trainable parameters"),
    ],
)
def test_config_mistakes_get_one_clear_error(tmp_path, override, message):
    base = [o for o in TINY if not (override.startswith("model=") and o.startswith("model"))]
    done = train(tmp_path, *base, "logger=csv", "trainer.max_steps=1", override, check=False, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert message in output
    assert "Traceback" not in output
    if override.startswith(("task=", "model=maxim", "data=")):
        assert "Available options" in output  # Hydra lists the allowed values


def test_a_missing_dataset_says_where_to_put_it(tmp_path):
    done = train(
        tmp_path,
        "task=deblur",
        "trainer=cpu",
        "logger=csv",
        f"data_root={tmp_path / 'nothing'}",
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert "GoPro not found" in done.stderr and "data/README.md" in done.stderr and "data=demo" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_warmup_then_cosine_to_the_floor():
    schedule = WarmupCosine(lr=2e-4, min_lr=1e-7, warmup_steps=10, total_steps=110)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx((1e-7 / 2e-4) + (1 - 1e-7 / 2e-4) * 0.5)  # half way down the cosine
    assert schedule(110) * 2e-4 == pytest.approx(1e-7)
    assert schedule(10_000) * 2e-4 == pytest.approx(1e-7)
    assert all(schedule(s) >= schedule(s + 1) for s in range(10, 120))
    assert not math.isnan(WarmupCosine(2e-4, 1e-7, 0, 0)(0))


def test_by_time_the_cosine_follows_the_spent_fraction_of_the_budget_after_a_warm_up_in_steps():
    schedule = WarmupCosine(lr=1e-3, min_lr=1e-7, warmup_steps=4, total_steps=None)
    floor = 1e-7 / 1e-3
    assert schedule(0) == pytest.approx(0.25)  # the warm-up counts steps, the cosine is still at its top
    schedule.progress = 0.5
    assert schedule(100) == pytest.approx(floor + (1 - floor) * 0.5)
    schedule.progress = 1.2  # the budget's last step ran over it: the floor, never beyond
    assert schedule(100) == pytest.approx(floor)
    schedule.progress = 0.0
    assert WarmupCosine(1e-3, 1e-7, 0, None)(0) == pytest.approx(1.0)


def scheduler_state(path: Path) -> tuple[float, float, float]:
    """(progress of the time schedule, learning rate, seconds on the trainer's clock) of a checkpoint."""
    state = checkpoint(path)
    (schedule,) = state["lr_schedulers"]
    (timer,) = (value for key, value in state["callbacks"].items() if key.startswith("Timer"))
    return schedule["lr_lambdas"][0]["progress"], schedule["_last_lr"][0], timer["time_elapsed"]["train"]


TIMED = [*FAST, "module.schedule_by=time", "module.lr=1e-3", "module.min_lr=1e-6", "module.warmup_steps=2"]


def test_a_run_scheduled_by_time_ends_at_the_floor_when_its_budget_is_spent(tmp_path):
    done = train(tmp_path, *TIMED, "trainer.max_steps=-1", "trainer.max_time=00:00:00:06")
    progress, lr, seconds = scheduler_state(tmp_path / "checkpoints" / "last.ckpt")
    assert progress >= 1 and seconds >= 6
    assert lr == pytest.approx(1e-6)
    assert checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] > 2, done.stdout[-2000:]


def test_a_resumed_run_continues_the_clock_and_the_schedule_of_the_first_leg(tmp_path):
    budget = "trainer.max_time=00:00:10:00"
    train(tmp_path / "leg1", *TIMED, budget, "trainer.max_steps=3")
    first = scheduler_state(tmp_path / "leg1" / "checkpoints" / "last.ckpt")
    train(
        tmp_path / "leg2", *TIMED, budget, "trainer.max_steps=6", f"ckpt_path={tmp_path / 'leg1/checkpoints/last.ckpt'}"
    )
    second = scheduler_state(tmp_path / "leg2" / "checkpoints" / "last.ckpt")
    assert (
        0 < first[0] < second[0] < 0.5 and second[2] > first[2]
    )  # the second leg's clock starts where the first ended
    assert second[1] < first[1] < 1e-3  # still going down the same cosine


def test_schedule_by_time_without_a_time_budget_is_refused_in_one_line(tmp_path):
    done = train(tmp_path, *FAST, "module.schedule_by=time", "trainer.max_steps=2", check=False)
    assert done.returncode == 2
    assert "module.schedule_by=time needs a budget: set trainer.max_time" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_ckpt_path_last_finds_the_newest_run_of_the_task(tmp_path):
    for stamp in ("2026-01-01_00-00-00", "2026-02-01_00-00-00"):
        (tmp_path / "deblur" / stamp / "checkpoints").mkdir(parents=True)
        (tmp_path / "deblur" / stamp / "checkpoints" / "last.ckpt").write_bytes(b"x")
        time.sleep(0.01)
    newest = tmp_path / "deblur" / "2026-02-01_00-00-00" / "checkpoints" / "last.ckpt"
    assert resolve_ckpt_path("last", "deblur", outputs=tmp_path) == newest
    with pytest.raises(ConfigError, match="no .*denoise/\\*/checkpoints/last.ckpt to resume from"):
        resolve_ckpt_path("last", "denoise", outputs=tmp_path)


def test_bf16_mixed_precision_and_channels_last_train(tmp_path):
    train(
        tmp_path,
        *FAST,
        "trainer.precision=bf16-mixed",
        "module.channels_last=true",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    ((_, psnr),) = logged(tmp_path, "val/psnr")
    assert math.isfinite(psnr)
    state = checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_slurm_launcher_asks_for_one_task_per_gpu():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)


def test_every_spatial_mixer_trains_on_the_demo_data(tmp_path):
    """The alternative-mixer presets under the training recipe (small patches: the attention mixers are
    several times MAXIM's cost per pixel, and the full 256x256 batch of 8 takes minutes on CPU)."""
    presets = ["maxim_2s_attention", "maxim_2s_mixing", "maxvit_unet_2s"]
    others = [o for o in FAST if not o.startswith("model=")]
    train(
        tmp_path,
        "--multirun",
        f"model={','.join(presets)}",
        *others,
        "task=denoise",
        "trainer.max_steps=3",
        f"hydra.sweep.dir={tmp_path}",
    )
    for job, preset in enumerate(presets):
        state = checkpoint(tmp_path / str(job) / "checkpoints" / "last.ckpt")
        assert state["global_step"] == 3
        assert state["hyper_parameters"]["model"]["mixer"] == ("mixing" if preset == "maxim_2s_mixing" else "attention")
