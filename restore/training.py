"""Assemble and run a training job from a composed Hydra config (``train.py``)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from restore.callbacks import AtomicCheckpointIO, Preempted
from restore.config_types import check_config_types
from restore.errors import ConfigError, UserError, exit_on_user_error, one_line
from restore.memory import check_step_memory
from restore.models.convert import CheckpointError
from restore.models.loading import load_model, read_checkpoint
from restore.module import Diverged, RestorationModule
from restore.rank_failure import RankRegistry, end_rank


def check_value_types(cfg: DictConfig) -> None:
    """Every group's values against what they are passed to, before anything is built."""
    check_config_types(cfg.model, "model")
    check_config_types(cfg.module, "module", RestorationModule)
    for key in ("data", "trainer", "logger"):
        if isinstance(cfg.get(key), DictConfig):
            check_config_types(cfg[key], key)
    for name, callback in (cfg.get("callbacks") or {}).items():
        if isinstance(callback, DictConfig):
            check_config_types(callback, f"callbacks.{name}")


def check_config(cfg: DictConfig, size_multiple: tuple[int, int]) -> None:
    """Catch values that would otherwise fail deep inside a run."""
    if cfg.module.lr <= 0:
        raise ConfigError(f"module.lr must be a positive number, got {cfg.module.lr}")
    if cfg.module.min_lr < 0 or cfg.module.min_lr > cfg.module.lr:
        raise ConfigError(f"module.min_lr must be in [0, module.lr={cfg.module.lr}], got {cfg.module.min_lr}")
    for key, minimum in (("module.warmup_steps", 0), ("module.weight_decay", 0), ("module.total_steps", 1)):
        value = OmegaConf.select(cfg, key)
        if value is not None and value < minimum:
            raise ConfigError(f"{key}={value}: must be >= {minimum}")
    if OmegaConf.select(cfg, "module.schedule_by") == "time" and OmegaConf.select(cfg, "trainer.max_time") is None:
        raise ConfigError(
            "module.schedule_by=time needs a budget: set trainer.max_time (e.g. 00:01:40:00, DD:HH:MM:SS)"
        )
    max_steps = OmegaConf.select(cfg, "trainer.max_steps")
    if max_steps is not None and max_steps != -1 and max_steps < 1:
        raise ConfigError(f"trainer.max_steps={max_steps}: give a number of steps >= 1 (or -1 for no limit)")
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


def check_resumable(path: Path, module: RestorationModule) -> dict:
    """The checkpoint to resume from, read and checked against the module; a CheckpointError names the file."""
    checkpoint = read_checkpoint(path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(
            f"ckpt_path={path}: holds weights only (no optimizer or loop state), so training cannot resume "
            "from it; give a last.ckpt written by train.py"
        )
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if found != expected:
        differing = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise CheckpointError(
            f"ckpt_path={path}: its weights do not fit this run's model ({len(differing)} differ, e.g. "
            f"{differing[0]}); resume with the model settings the checkpoint was trained with"
        )
    return checkpoint


def initialise_weights(module: RestorationModule, path: str, model_cfg: DictConfig) -> None:
    """The network's weights from ``path``, which must hold exactly this run's model (a
    CheckpointError names the file and what differs); optimizer and schedule start afresh."""
    try:
        trained = load_model(ckpt=path, model_cfg=model_cfg)
    except CheckpointError as err:
        raise CheckpointError(f"init_from: {err}") from None
    module.model.load_state_dict(trained.state_dict())


def resume_wandb_run(cfg: DictConfig, checkpoint: dict | None) -> None:
    """Point the wandb logger at the run a resumed checkpoint was logging to."""
    logger_cfg = cfg.get("logger")
    if checkpoint is None or not logger_cfg or "WandbLogger" not in str(logger_cfg.get("_target_", "")):
        return
    run_id = checkpoint.get("wandb_run_id")
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
    check_value_types(cfg)
    module = _build("model", lambda: RestorationModule(model=cfg.model, **cfg.module))
    check_config(cfg, getattr(module.model, "size_multiple", (1, 1)))
    if cfg.get("init_from") and ckpt is None:  # a resumed run has its own, newer weights
        initialise_weights(module, cfg.init_from, cfg.model)
    datamodule = _build("data", lambda: instantiate(cfg.data))
    datamodule.setup("fit")  # a missing or broken dataset stops the run here, before any logger starts
    resume_wandb_run(cfg, None if ckpt is None else check_resumable(ckpt, module))
    pin_multirun_job_for_ddp()

    callbacks = [_build(f"callbacks.{name}", lambda c=c: instantiate(c)) for name, c in cfg.callbacks.items() if c]
    callbacks.append(RankRegistry(ranks_folder(cfg)))
    logger = _build("logger", lambda: instantiate(cfg.logger)) if cfg.get("logger") else False
    trainer: pl.Trainer = _build(
        "trainer", lambda: instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()])
    )
    if cfg.get("memory_check", True) and OmegaConf.select(cfg, "data.patch_size") is not None:
        check_step_memory(
            module,
            cfg.data.batch_size,
            cfg.data.patch_size,
            in_channels=getattr(module.model, "in_channels", 3),
            precision=str(cfg.trainer.get("precision", "32-true")),
            device=trainer.strategy.root_device,
        )
    if trainer.is_global_zero and logger:
        for lg in trainer.loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    environment = dict(os.environ)
    try:
        with warnings.catch_warnings():
            # Training counts steps (max_epochs=-1) and logs follow the global step across epochs, so
            # Lightning's warning about an epoch shorter than log_every_n_steps does not apply.
            warnings.filterwarnings("ignore", "The number of training batches .* is smaller than the logging interval")
            # The training stream resumes through the datamodule's own state (the samples consumed),
            # exactly (tests/test_train.py), so Lightning's warning about a non-resumable loader does not apply.
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except Diverged as diverged:  # every rank sees the same averaged gradients: all stop on the same step
        if trainer.is_global_zero:
            print(f"error: {diverged}; {last_good(Path(cfg.paths.checkpoint_dir))}", file=sys.stderr)
        sys.exit(3)
    except Preempted as stop:  # every rank stops after the same step, its checkpoint written
        if trainer.is_global_zero:
            print(f"error: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)  # not 0: a scheduler must not take the job for finished
    except Exception as err:
        if trainer.world_size > 1:  # one rank's failure ends all
            end_rank(trainer, err, ranks_folder(cfg), where_to_resume(Path(cfg.paths.checkpoint_dir)))
        if isinstance(err, UserError):  # a file that broke mid-run: say how to go on once it is fixed
            raise UserError(f"{one_line(err)}; {how_to_resume(Path(cfg.paths.checkpoint_dir))}") from err
        raise
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


def how_to_resume(checkpoint_dir: Path) -> str:
    last = checkpoint_dir / "last.ckpt"
    if last.is_file():
        return f"training stopped; its last checkpoint is {last}: fix that, then resume with ckpt_path={last}"
    return "training stopped before its first checkpoint; fix the file and start again"


def last_saved(checkpoint_dir: Path) -> tuple[Path, int] | None:
    """``last.ckpt`` and its step, when the run wrote one (checkpoint files are written atomically)."""
    last = checkpoint_dir / "last.ckpt"
    return (last, read_checkpoint(last).get("global_step")) if last.is_file() else None


def last_good(checkpoint_dir: Path) -> str:
    """Where the newest finite weights are, and what to change (a resumed run keeps its learning rate)."""
    fix = "start again with a lower module.lr or a gradient clip (trainer.gradient_clip_val)"
    saved = last_saved(checkpoint_dir)
    if saved is None:
        return f"there is no checkpoint before it; {fix}"
    return f"the last good checkpoint is {saved[0]} (step {saved[1]}); {fix}"


def where_to_resume(checkpoint_dir: Path) -> str:
    saved = last_saved(checkpoint_dir)
    if saved is None:
        return "no checkpoint was written yet: start the run again"
    return (
        f"the newest checkpoint is {saved[0]} (step {saved[1]}): resume with ckpt_path=last (or ckpt_path={saved[0]})"
    )


def ranks_folder(cfg: DictConfig) -> Path:
    """Where the ranks of a multi-process run register (restore.rank_failure)."""
    return Path(cfg.paths.checkpoint_dir) / ".ranks"


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
        raise ConfigError(f"{key}: {one_line(err.__cause__ or err)}") from err
    except (TypeError, ValueError, MisconfigurationException) as err:
        raise ConfigError(f"{key}: {one_line(err)}") from err


def main(cfg: DictConfig) -> float | None:
    """``train.py``'s body: bad input becomes one line on stderr and exit code 2."""
    with exit_on_user_error():
        return train(cfg)
