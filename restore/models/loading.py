"""Build a restoration model from what a user has: a Lightning checkpoint, official weights or a config.

:func:`load_model` is the one loader that evaluation, prediction and export share.
"""

from __future__ import annotations

import collections
import pickle
import typing
from collections.abc import Mapping
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode
from torch import nn

from restore import CONF_DIR
from restore.models.convert import CheckpointError, load_official

# What a Lightning checkpoint may hold besides tensors and plain containers: the model's
# Hydra config saved by save_hyperparameters() as an OmegaConf DictConfig. These are data
# containers, safe to rebuild; anything else is refused by torch.load(weights_only=True).
CONFIG_GLOBALS = [
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    AnyNode,
    typing.Any,
    dict,
    list,
    int,
    float,
    bool,
    str,
    collections.defaultdict,
]
MODEL_PREFIX = "model."  # the LightningModule holds the network as self.model


def load_model(
    ckpt: str | Path | None = None,
    weights: str | Path | None = None,
    model_cfg: Mapping | None = None,
) -> nn.Module:
    """The model, in eval mode, from exactly one source.

    ckpt: a Lightning checkpoint (loaded with ``weights_only=True``). The
        network is built from ``hyper_parameters["model"]`` (its Hydra config)
        unless ``model_cfg`` is given, and gets the ``model.``-prefixed entries
        of ``state_dict``. When training ran Lightning's ``EMAWeightAveraging``
        callback, those already are the EMA weights: the callback saves the
        averaged weights as ``state_dict`` and the raw ones as
        ``current_model_state``, which is only read to resume training.
    weights: an official MAXIM ``.npz``, converted on load; ``model_cfg``
        fields, when given, fix what the checkpoint cannot tell.
    model_cfg alone: a freshly initialised network (for tests and exports).

    ``model_cfg`` is a model config as in ``conf/model/*.yaml``: constructor
    fields, with an optional ``_target_`` inside ``restore.models``.
    """
    if ckpt is not None and weights is not None:
        raise ValueError("give either ckpt= (a Lightning checkpoint) or weights= (an official .npz), not both")
    if ckpt is not None:
        return _from_lightning_checkpoint(Path(ckpt), model_cfg)
    if weights is not None:
        fields = {k: v for k, v in _plain(model_cfg or {}).items() if k != "_target_"}
        return load_official(weights, **fields)
    if model_cfg is None:
        raise ValueError("nothing to load: give ckpt=FILE, weights=FILE or a model config (e.g. model=maxim_3s)")
    return build_model(model_cfg).eval()


def build_preset(name: str, **overrides) -> nn.Module:
    """The model preset ``conf/model/<name>.yaml`` with field overrides, for code that runs
    outside a Hydra command line (benchmark scripts, tests)."""
    return build_model(OmegaConf.merge(load_preset(name), overrides))


def load_preset(name: str) -> DictConfig:
    """``conf/model/<name>.yaml`` with its ``defaults:`` (other presets of conf/model) merged
    under it, as Hydra composes it for ``model=<name>``."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ValueError(f"unknown model preset '{name}': no {path} (known: {known})")
    cfg = OmegaConf.load(path)
    defaults = cfg.pop("defaults", [])
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    return OmegaConf.merge(*(cfg if entry == "_self_" else load_preset(entry) for entry in defaults))


def build_model(model_cfg: Mapping) -> nn.Module:
    """Instantiate a model config; ``_target_`` may only name a class of ``restore.models``,
    since a checkpoint's config must not be able to call arbitrary code."""
    cfg = _plain(model_cfg)
    target = cfg.get("_target_", "restore.models.MAXIM")
    if not isinstance(target, str) or not target.startswith("restore.models."):
        raise CheckpointError(f"model config: _target_={target!r} is not a model of restore.models")
    try:
        return hydra.utils.instantiate({**cfg, "_target_": target})
    except Exception as err:  # Hydra wraps the constructor's error; show the constructor's message
        raise CheckpointError(f"model config {cfg}: {err.__cause__ or err}") from None


def _from_lightning_checkpoint(path: Path, model_cfg: Mapping | None) -> nn.Module:
    checkpoint = read_checkpoint(path)
    if model_cfg is None:
        model_cfg = checkpoint.get("hyper_parameters", {}).get("model")
        if model_cfg is None:
            raise CheckpointError(
                f"{path}: hyper_parameters['model'] is missing, so the network's config is unknown; "
                "give the model config too (e.g. model=maxim_3s)"
            )
    model = build_model(model_cfg)
    state = {k[len(MODEL_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the state_dict weights do not fit the model config {_plain(model_cfg)}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # same names, other shapes
        raise CheckpointError(f"{path}: the state_dict weights do not fit the model config: {err}") from None
    return model.eval()


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file (expected a Lightning .ckpt)")
    try:
        with torch.serialization.safe_globals(CONFIG_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line), None)
        if detail is None:  # not a pickle at all: random bytes, another format, a truncated legacy file
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint (it is no file torch.save wrote); give a .ckpt from train.py"
            ) from None
        raise CheckpointError(
            f"{path}: holds Python objects that are never loaded, as they could run code ({detail}); "
            "save tensors, numbers, strings and plain or OmegaConf containers only"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({first_line}); is the file complete?"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: no 'state_dict' inside; this is not a Lightning checkpoint")
    return checkpoint


def _key_mismatch(model: nn.Module, state: Mapping) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def _plain(cfg: Mapping) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
