"""RestorationModule: the LightningModule that trains and validates a restoration model.

It only trains and validates. Data comes from ``restore.data``, every forward
for scoring goes through ``restore.inference.forward_padded``, and scores
through ``restore.metrics`` under each validation set's protocol.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torchmetrics
from hydra.utils import instantiate
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import grad_norm
from omegaconf import DictConfig, OmegaConf

from restore.callbacks import trainer_clock
from restore.inference import forward_padded
from restore.losses import MultiStageLoss
from restore.metrics import Protocol, score


class WarmupCosine:
    """Learning-rate factor per optimizer step: linear warm-up, then cosine to ``min_lr``.

    By steps (``total_steps``), or by time: with ``total_steps=None`` the cosine follows
    ``progress``, the fraction of the run's time budget spent when the next step ends, which
    the module sets after every step; the warm-up still counts steps. A callable object rather than a closure
    so LambdaLR saves its state (``progress`` included) in the checkpoint.
    """

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, total_steps: int | None):
        self.lr, self.min_lr, self.warmup_steps = lr, min_lr, warmup_steps
        self.total_steps = None if total_steps is None else max(total_steps, warmup_steps + 1)
        self.progress = 0.0

    def __call__(self, step: int) -> float:
        floor = self.min_lr / self.lr
        if self.total_steps is None:
            warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
            return warm * (floor + (1 - floor) * cosine(self.progress))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return floor + (1 - floor) * cosine(progress)


def cosine(progress: float) -> float:
    """1 at the start, 0 at the end (progress clipped to [0, 1])."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def time_budget(trainer: pl.Trainer) -> Timer:
    """The trainer's clock of ``trainer.max_time``; it counts the time of earlier legs of a resumed run."""
    timer = trainer_clock(trainer)
    if timer is None:
        raise ValueError("module.schedule_by=time needs trainer.max_time (e.g. trainer.max_time=00:01:40:00)")
    return timer


class Diverged(Exception):
    """Training produced non-finite numbers; nothing from that step on was kept."""

    def __init__(self, step: int, what: str):
        self.step = step
        super().__init__(f"training diverged at step {step}: {what}; no checkpoint was written from that step on")


def plain(config: Any) -> Any:
    """OmegaConf -> plain containers, so checkpoints load with ``weights_only=True``."""
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


class RestorationModule(pl.LightningModule):
    """Trains ``model`` (a Hydra config with ``_target_``) with the multi-stage loss.

    Optimiser: Adam; schedule: per-step warm-up + cosine decay to ``min_lr``
    over ``total_steps`` (``trainer.estimated_stepping_batches`` when None), or with
    ``schedule_by="time"`` over ``trainer.max_time``, so a run with a time budget ends at
    ``min_lr`` however fast the machine is.
    Validation restores full images through the shared padding path and
    scores them under the protocol the datamodule gives each validation set.
    """

    def __init__(
        self,
        model: dict,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        min_lr: float = 1e-7,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        schedule_by: str = "steps",
        loss: dict | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        if schedule_by not in ("steps", "time"):
            raise ValueError(f"module.schedule_by={schedule_by!r}: use steps (over trainer.max_steps) or time")
        model, loss = plain(model), plain(loss) or {}
        self.save_hyperparameters(
            dict(
                model=model,
                lr=lr,
                betas=list(betas),
                weight_decay=weight_decay,
                min_lr=min_lr,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                schedule_by=schedule_by,
                loss=loss,
                channels_last=channels_last,
                compile=compile,
            ),
            logger=False,
        )
        self.model = instantiate(model)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(
                f"{type(self.model).__name__} has no trainable parameters (model=identity is the evaluation "
                "baseline); train a MAXIM preset, e.g. model=maxim_3s"
            )
        self.loss = MultiStageLoss(**loss)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Kept out of the module tree so the state_dict keys stay those of the plain model.
        self.__dict__["_forward"] = torch.compile(self.model) if compile else self.model
        self._val_psnr = torch.nn.ModuleList()
        self._val_ssim = torch.nn.ModuleList()
        self._val_input_psnr = torch.nn.ModuleList()
        self._val_rows: list[tuple[int, str, float, float]] = []

    # ---------------------------------------------------------------- training
    def forward(self, x: torch.Tensor):
        return self._forward(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, target = batch["input"], batch["target"]
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss, parts = self.loss(self(x), target)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/loss_{k}": v for k, v in parts.items()})
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        norms = grad_norm(self.model, norm_type=2)
        total = norms["grad_2.0_norm_total"]
        # A non-finite loss makes every gradient non-finite, and DDP has averaged them over the ranks
        # already, so all ranks see it here on the same step, before the weights change. Under fp16
        # loss scaling, overflowing gradients are routine: the scaler skips those steps itself.
        if not torch.isfinite(total) and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            raise Diverged(self.trainer.global_step + 1, f"the gradient norm is {total.item()}")
        self.log("train/grad_norm", total)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._step_started = time.perf_counter()

    def lr_scheduler_step(self, scheduler, metric=None) -> None:
        """After each optimizer step. By time, the next step's rate is the cosine at the moment that
        step will end (this step's duration ahead): the step that uses up the budget runs at min_lr."""
        if self.hparams.schedule_by == "time":
            timer = time_budget(self.trainer)
            spent, left = timer.time_elapsed("train"), timer.time_remaining("train")
            ahead = time.perf_counter() - self._step_started
            self._schedule.progress = (spent + ahead) / max(spent + left, 1e-9)
        scheduler.step()

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        if hp.schedule_by == "time":
            time_budget(self.trainer)
            total = None
        else:
            total = hp.total_steps or int(self.trainer.estimated_stepping_batches)
        self._schedule = WarmupCosine(hp.lr, hp.min_lr, hp.warmup_steps, total)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    # -------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        names = self._val_names()
        if len(self._val_psnr) != len(names):
            for metrics in (self._val_psnr, self._val_ssim, self._val_input_psnr):
                metrics.extend(torchmetrics.MeanMetric().to(self.device) for _ in range(len(names) - len(metrics)))
        self._val_rows = []

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Restore one full-size image and score it (and the degraded input, the baseline)."""
        protocol = self._val_protocols()[dataloader_idx]
        restored = forward_padded(self.model, batch["input"])
        result = score(restored, batch["target"], protocol)
        baseline = score(batch["input"], batch["target"], protocol)
        # 0 for the stand-in image of a rank with no image of its own
        weight = batch["weight"].to(result["psnr"]) if "weight" in batch else 1.0
        self._val_psnr[dataloader_idx].update(result["psnr"], weight)
        self._val_ssim[dataloader_idx].update(result["ssim"], weight)
        self._val_input_psnr[dataloader_idx].update(baseline["psnr"], weight)
        if "weight" not in batch:
            for name, psnr, ssim in zip(batch["name"], result["psnr"].tolist(), result["ssim"].tolist()):
                self._val_rows.append((dataloader_idx, name, psnr, ssim))
        return restored

    def on_validation_epoch_end(self) -> None:
        # MeanMetric syncs sums and counts across ranks; the datamodule's
        # validation sampler gives every image to exactly one rank.
        for idx, name in enumerate(self._val_names()):
            for key, metrics in (
                ("psnr", self._val_psnr),
                ("ssim", self._val_ssim),
                ("input_psnr", self._val_input_psnr),
            ):
                value = metrics[idx].compute()
                self.log(f"val/{name.replace('/', '-')}/{key}", value, sync_dist=False, add_dataloader_idx=False)
                if idx == 0:  # the first validation set is the one checkpoints are selected on
                    self.log(f"val/{key}", value, prog_bar=key == "psnr", add_dataloader_idx=False)
                metrics[idx].reset()

    def gathered_val_rows(self) -> list[tuple[str, str, float, float]]:
        """Every rank's per-image (dataset, image, PSNR, SSIM) rows, on every rank."""
        rows = self._val_rows
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            everyone: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, rows)
            rows = [row for part in everyone for row in part]
        names = self._val_names()
        return sorted((names[idx], image, psnr, ssim) for idx, image, psnr, ssim in rows)

    def _val_names(self) -> list[str]:
        return list(getattr(self.trainer.datamodule, "val_names", ["val"]))

    def _val_protocols(self) -> list[Protocol]:
        return list(getattr(self.trainer.datamodule, "val_protocols", [Protocol()]))

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Random states (as tensors and lists, so ``weights_only=True`` loading works) and the
        wandb run id, so a resumed run continues the same wandb run. Never non-finite weights."""
        broken = next((name for name, value in self.model.state_dict().items() if not value.isfinite().all()), None)
        if broken is not None:
            raise Diverged(self.trainer.global_step, f"the weight {broken} is not finite")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint["wandb_run_id"] = logger.experiment.id
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        kind, keys, pos, has_gauss, gauss = states.pop("numpy")
        states["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = dict(checkpoint.get("rng_states") or {})
        if states:
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
            _set_rng_states(states)
