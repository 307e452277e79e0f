"""What the command-line entry points share: the model a config names, and one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from torch import nn

from restore.errors import ConfigError
from restore.inference import AUTOCAST_CHOICES
from restore.models.loading import load_model


def wide_console() -> Console:
    """A console whose table rows never wrap when the output is a file or a pipe (rich's default
    width there is 80 columns), so every table row and message stays one line to read or grep."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    return console


def model_from_config(cfg: Mapping) -> tuple[nn.Module, str]:
    """The model named by ``ckpt=``, ``weights=`` or ``model=`` and a one-line description of it."""
    ckpt, weights, model_cfg = cfg.get("ckpt"), cfg.get("weights"), cfg.get("model")
    if ckpt is None and weights is None and model_cfg is None:
        raise ConfigError(
            "no model: give ckpt=FILE (a Lightning checkpoint), weights=FILE (official MAXIM .npz) "
            "or model=identity (the degraded input, scored as it is)"
        )
    model = load_model(ckpt=ckpt, weights=weights, model_cfg=model_cfg)
    if ckpt is not None:
        return model, f"ckpt={ckpt}"
    if weights is not None:
        return model, f"weights={weights}"
    name = type(model).__name__
    if hasattr(model, "description"):
        return model, model.description
    if any(True for _ in model.parameters()):
        return model, f"{name}, randomly initialised (no ckpt= or weights=)"
    return model, f"{name} (the degraded input as it is)"


def restore_options_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The restore_image options of the config, every value checked (a ConfigError names the key)."""
    tile, overlap = cfg.get("tile"), cfg.get("tile_overlap", 64)
    if tile is not None and tile != "auto" and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ConfigError(f"tile={tile}: give a tile side in pixels (e.g. tile=512), tile=auto or tile=null")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ConfigError(f"tile_overlap={overlap}: give a number of pixels >= 0")
    if isinstance(tile, int) and overlap >= tile:
        raise ConfigError(f"tile_overlap={overlap} must be smaller than tile={tile}")
    autocast = cfg.get("autocast")
    if autocast not in (None, *AUTOCAST_CHOICES):
        raise ConfigError(
            f"autocast={autocast}: give auto (bf16 where the device has native bf16, else fp32), fp32, bf16 or fp16"
        )
    ensemble = cfg.get("ensemble", False)
    if not isinstance(ensemble, bool):
        raise ConfigError(f"ensemble={ensemble}: give true or false")
    return {"tile": tile, "tile_overlap": overlap, "ensemble": ensemble, "autocast": autocast}
