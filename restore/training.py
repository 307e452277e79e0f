"""Assemble and run a training job from a composed Hydra config (``train.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from restore.callbacks import AtomicCheckpointIO
from restore.data.layout import DatasetError
from restore.module import RestorationModule


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def check_config(cfg: DictConfig, size_multiple: tuple[int, int]) -> None:
    """Catch values that would otherwise fail deep inside a run."""
    if cfg.module.lr <= 0:
        raise ConfigError(f"module.lr must be a positive number, got {cfg.module.lr}")
    if cfg.module.min_lr < 0 or cfg.module.min_lr > cfg.module.lr:
        raise ConfigError(f"module.min_lr must be in [0, module.lr={cfg.module.lr}], got {cfg.module.min_lr}")
    patch = OmegaConf.select(cfg, "data.patch_size")
    if patch is not None:
        mh, mw = size_multiple
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        if ph % mh or pw % mw:
            raise ConfigError(
                f"data.patch_size={patch} is not a multiple of {mh}x{mw}, the size this model needs "
                f"(its block and grid sizes at every level); use e.g. data.patch_size={max(mh, mw) * 2}"
            )


def resolve_ckpt_path(ckpt_path: str | None, task_name: str, outputs: Path = Path("outputs")) -> Path | None:
    """``ckpt_path=last`` means this task's newest run's ``checkpoints/last.ckpt``."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        candidates = sorted(outputs.glob(f"{task_name}/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"ckpt_path=last: no {outputs}/{task_name}/*/checkpoints/last.ckpt to resume from")
        return candidates[-1]
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return path


def resume_wandb_run(cfg: DictConfig, ckpt: Path | None) -> None:
    """Point the wandb logger at the run a resumed checkpoint was logging to."""
    logger_cfg = cfg.get("logger")
    if ckpt is None or not logger_cfg or "WandbLogger" not in str(logger_cfg.get("_target_", "")):
        return
    run_id = torch.load(ckpt, map_location="cpu", weights_only=True).get("wandb_run_id")
    if run_id and not logger_cfg.get("id"):
        with open_dict(cfg):
            cfg.logger.id = run_id


def pin_multirun_job_for_ddp() -> None:
    """Let Lightning's DDP launcher re-run this job, not the whole sweep.

    Lightning starts the other ranks by re-running ``sys.argv`` with
    ``hydra.run.dir`` set to the parent's run dir. Under ``--multirun`` that
    argv would launch the entire sweep again in every rank, into a stray
    directory. Rewrite it to this job's own overrides and point run.dir at
    this job's output directory.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def train(cfg: DictConfig) -> float | None:
    """Fit, print where everything went; returns the best validation PSNR (for sweepers)."""
    pl.seed_everything(cfg.seed, workers=True)
    ckpt = resolve_ckpt_path(cfg.ckpt_path, cfg.task_name)
    module = _build("model", lambda: RestorationModule(model=cfg.model, **cfg.module))
    check_config(cfg, getattr(module.model, "size_multiple", (1, 1)))
    datamodule = _build("data", lambda: instantiate(cfg.data))
    datamodule.setup("fit")  # a missing or broken dataset stops the run here, before any logger starts
    resume_wandb_run(cfg, ckpt)
    pin_multirun_job_for_ddp()

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()])
    if trainer.is_global_zero and logger:
        for lg in trainer.loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    environment = dict(os.environ)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    # Lightning's DDP launcher leaves its process group and its variables (LOCAL_RANK,
    # MASTER_PORT, ...) behind; the next job of a --multirun sweep must start clean,
    # or it takes itself for a worker launched from outside and waits forever.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(environment)

    best = next((c for c in trainer.checkpoint_callbacks if c.monitor), None)
    if trainer.is_global_zero:
        report(trainer, Path(cfg.paths.checkpoint_dir))
    # wandb writes a run out only when it finishes, otherwise at interpreter exit; and Lightning's
    # logger adopts a run still open, so the next job of a --multirun sweep would log into this one.
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.finish()
    return None if best is None or best.best_model_score is None else best.best_model_score.item()


def report(trainer: pl.Trainer, checkpoint_dir: Path) -> None:
    """Where the run went, and how its last validation compares with the degraded input."""
    saved = ", ".join(sorted(p.name for p in checkpoint_dir.glob("*.ckpt"))) or "none"
    print(f"checkpoints: {checkpoint_dir} ({saved})")
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            print(f"wandb run: {lg.experiment.dir} (id {lg.experiment.id})")
        elif lg.log_dir:
            print(f"logs: {lg.log_dir}")
    metrics = trainer.callback_metrics
    if "val/psnr" in metrics:
        print(
            f"validation PSNR: {metrics['val/psnr']:.2f} dB restored, {metrics['val/input_psnr']:.2f} dB degraded input"
        )


def _build(key: str, make):
    """Instantiate a config group; a bad value becomes a ConfigError naming the group."""
    try:
        return make()
    except InstantiationException as err:
        raise ConfigError(f"{key}: {err.__cause__ or err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {err}") from err


def main(cfg: DictConfig) -> float | None:
    """``train.py``'s body: configuration and dataset errors become a message on stderr and exit code 2."""
    try:
        return train(cfg)
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
