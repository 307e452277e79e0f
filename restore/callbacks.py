"""Lightning extensions: validation image panels and tables for wandb, atomic checkpoint files,
a progress bar and a model summary for training that counts steps, FLOPs for the throughput logs.

EMA comes from Lightning's own ``EMAWeightAveraging`` (validation runs on the
averaged weights and checkpoints store them as ``state_dict``); see
``conf/callbacks``.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar, Timer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count
from torch.utils.flop_counter import FlopCounterMode

from restore.errors import UserError


def error_map(restored: torch.Tensor, target: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """|restored - target| averaged over channels, amplified and shown as gray (3, H, W)."""
    error = (restored - target).abs().mean(dim=0, keepdim=True).mul(gain).clamp(0, 1)
    return error.expand(3, -1, -1)


def panel(degraded: torch.Tensor, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """input | output | target | error map, side by side (3, H, 4W), clipped to [0, 1]."""
    restored = restored.clamp(0, 1)
    return torch.cat([degraded.clamp(0, 1), restored, target, error_map(restored, target)], dim=-1)


class ValidationImageLogger(pl.Callback):
    """At each validation: panels for the first ``num_images`` images of the first
    validation set, and a table of every image's PSNR and SSIM, to wandb."""

    def __init__(self, num_images: int = 4):
        self.num_images = num_images
        self._panels: list[tuple[str, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._panels = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if dataloader_idx != 0 or not trainer.is_global_zero or len(self._panels) >= self.num_images:
            return
        for i, name in enumerate(batch["name"][: self.num_images - len(self._panels)]):
            image = panel(batch["input"][i], outputs[i], batch["target"][i]).float().cpu()
            self._panels.append((name, image))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        rows = pl_module.gathered_val_rows()  # a collective: every rank takes part
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not trainer.is_global_zero or not loggers or trainer.sanity_checking:
            return
        for logger in loggers:
            if self._panels:
                logger.log_image(
                    key="val/panels",
                    images=[image for _, image in self._panels],
                    caption=[f"{name}: input | output | target | error x4" for name, _ in self._panels],
                    step=trainer.global_step,
                )
            logger.log_table(
                key="val/images",
                columns=["dataset", "image", "psnr", "ssim"],
                data=[list(row) for row in rows],
                step=trainer.global_step,
            )


def trainer_clock(trainer: pl.Trainer) -> Timer | None:
    """The Timer Lightning adds for ``trainer.max_time``; a resumed run's clock includes earlier legs."""
    return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)


class WallClock(pl.Callback):
    """Logs ``time/minutes``, the wall-clock minutes of training so far, with every validation,
    so a learning curve can be drawn against time as well as steps.

    With ``trainer.max_time`` the minutes are those of the trainer's own clock, which a resumed
    run continues (earlier legs included); without it a resumed run counts from its own start.
    """

    def __init__(self):
        self._start: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._start is None or trainer.sanity_checking:
            return
        timer = trainer_clock(trainer)
        seconds = timer.time_elapsed("train") if timer is not None else time.perf_counter() - self._start
        pl_module.log("time/minutes", seconds / 60, rank_zero_only=True)


class Preempted(Exception):
    """The run was asked to stop by a signal; ``last.ckpt`` holds the step it stopped after."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after step {step}; its checkpoint is {checkpoint}: "
            f"resume with ckpt_path={checkpoint} (or ckpt_path=last)"
        )


class LastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also writes ``last.ckpt`` when training ends between two of its saves,
    and when the run is asked to stop.

    Lightning writes ``last.ckpt`` at the end of training only when none was written before, so
    a run stopped by ``trainer.max_time``, or whose ``max_steps`` is not a multiple of
    ``every_n_train_steps``, would keep the weights of its previous save as ``last.ckpt``.

    Preemption: SIGTERM (cloud schedulers, Kubernetes, ``scancel``) and SIGUSR1 (SLURM's warning
    before a time limit, with ``--signal=USR1@60``) let the current step finish; then every rank
    agrees, ``last.ckpt`` is written at that step and the run ends with :class:`Preempted`
    (``train.py`` exits with status 128 + the signal's number, so a scheduler sees a stop, not a
    finished job). Resuming from it continues at the next batch, as from any periodic save.
    Lightning's own SIGTERM handling is replaced while training runs: it ends the run without a
    checkpoint. Under SLURM with ``auto_requeue`` SIGUSR1 stays Lightning's, which requeues the job.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._signal: int | None = None
        self._previous_handlers: dict[int, object] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        environment = getattr(trainer.strategy, "cluster_environment", None)
        requeues = isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        for signum in self.SIGNALS:
            if signum == signal.SIGUSR1 and requeues:
                continue
            self._previous_handlers[signum] = signal.signal(signum, self._note_signal)

    def _note_signal(self, signum: int, frame) -> None:
        self._signal = signum  # acted on after the current step: a signal handler must not save

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        signum = self._agreed_signal(trainer)
        if signum is None:
            return
        self._save_last_now(trainer)
        raise Preempted(
            signum, trainer.global_step, Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        )

    def _agreed_signal(self, trainer) -> int | None:
        """The signal any rank received (the largest number when ranks differ), on every rank."""
        local = torch.tensor([self._signal or 0])
        if trainer.world_size > 1:
            local = trainer.strategy.reduce(local.to(trainer.strategy.root_device), reduce_op="max").cpu()
        return int(local.item()) or None

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_last_now(trainer)
        super().on_train_end(trainer, pl_module)

    def _save_last_now(self, trainer) -> None:
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}
        super().teardown(trainer, pl_module, stage)


def batch_size(batch: dict) -> int:
    """Images in a training batch (for Lightning's ThroughputMonitor)."""
    return batch["input"].shape[0]


class FlopsPerBatch(pl.Callback):
    """Counts the FLOPs of the first training batch as it runs (forward, loss and backward, on one
    device) with PyTorch's FlopCounterMode, and gives them to the module as ``flops_per_batch``,
    which Lightning's ThroughputMonitor turns into FLOP/s (and MFU on the GPUs it knows). It must
    come before the ThroughputMonitor among the callbacks: that one reads the figure at the end of
    the same batch."""

    def __init__(self):
        self._counter: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not hasattr(pl_module, "flops_per_batch"):
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._counter is not None:
            pl_module.flops_per_batch = self._stop().get_total_flops()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._counter is not None:
            self._stop()

    def _stop(self) -> FlopCounterMode:
        counter, self._counter = self._counter, None
        counter.__exit__(None, None, None)
        return counter


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar as one bar for the whole run when training counts steps
    (``max_epochs=-1`` with ``max_steps``, as every training config here): ``Step`` and the
    optimizer steps so far out of ``max_steps``. Lightning's own bar restarts with every epoch,
    here just one pass over the training images, and reads ``Epoch 9/-2``."""

    def _counts_steps(self) -> bool:
        trainer = self.trainer
        return trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._counts_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._counts_steps():
            return super()._get_train_description(current_epoch)
        return f"{'Step':{len(self.validation_description)}}"  # as wide as "Validation": no flicker

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if not self._counts_steps() or self.train_progress_bar_id is None:
            super().on_train_epoch_start(trainer, pl_module)  # Lightning would reset the bar to 0 here

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning moves the bar to batch_idx + 1, the batches of this epoch
        position = trainer.global_step - 1 if self._counts_steps() else batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, position)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version; the run's folder, printed at the end, names it
        return metrics


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary without its FLOPs columns, which read 0: Lightning counts them
    only by running the module's ``example_input_array`` through the model before training, a
    full-size forward pass on every rank. FlopsPerBatch counts a real training batch instead."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="left" if name in ("Name", "Type") else "right", no_wrap=name == "Name")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        totals = Table.grid(expand=True)
        for label, value in (
            ("Trainable params", get_human_readable_count(trainable_parameters)),
            ("Non-trainable params", get_human_readable_count(total_parameters - trainable_parameters)),
            ("Total params", get_human_readable_count(total_parameters)),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
        ):
            totals.add_row(f"[bold]{label}[/]: {value}")
        console = get_console()
        console.print(table)
        console.print(totals)


class DiskFull(UserError):
    """A checkpoint could not be written for lack of space, quota or allowed file size."""


# ENOSPC: the filesystem is full; EDQUOT: the user's quota; EFBIG: the file-size limit (ulimit -f).
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint next to its destination, then rename it into place.

    Lightning's own writer builds the file in the system temp directory and
    moves it; when that directory is on another filesystem, the move is a
    copy, and a run killed during the copy leaves a half-written last.ckpt.
    A rename within one directory is atomic: the checkpoint is either the
    previous one or the new one, never a mix. A write that fails for lack of
    room removes its partial file and stops the run with :class:`DiskFull`,
    which says how much room the checkpoint needs and how much there is.

    The checkpoint is serialised in memory first: torch.save's own file writer reports a
    failed write as a RuntimeError about stream positions, without the system's error.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        data = io.BytesIO()
        torch.save(checkpoint, data)
        try:
            with open(partial, "wb") as handle:
                handle.write(data.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())  # a full disk may only say so when the data is flushed
            os.replace(partial, path)
        except OSError as err:
            if err.errno not in NO_ROOM:
                raise
            needed, free = data.getbuffer().nbytes / 2**20, shutil.disk_usage(path.parent).free / 2**20
            raise DiskFull(
                f"cannot write the checkpoint {path} ({os.strerror(err.errno)}): it needs {needed:.1f} MiB, "
                f"{path.parent} has {free:.0f} MiB free; make room (or raise the quota or file-size limit)"
            ) from None
        finally:
            partial.unlink(missing_ok=True)
