"""Official MAXIM checkpoints (JAX ``.npz``) -> PyTorch.

The official loader (``maxim/run_eval.py``) reads the ``.npz``, splits each key
on "/" and hands the ``opt/target`` subtree to the Flax model. We do the same,
infer whatever the parameter names and shapes determine of the config, build
the model and load it strictly. Parameter names come from the ``flax_names``
each module declares, so there is no per-variant table to keep in sync.

Layout changes (docs/model.md, "Checkpoint layout"): Dense kernels are transposed;
Conv kernels (kh, kw, in, out) become (out, in, kh, kw); ConvTranspose kernels
are flipped in both spatial axes before the permute, because Flax's
ConvTranspose (``transpose_kernel=False``) correlates where torch convolves.

Command line::

    python -m restore.models.convert IN.npz OUT.pt [--config CONFIG.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restore.errors import UserError, exit_on_user_error
from restore.models.maxim import MAXIM

PREFIX = "opt/target/"


class CheckpointError(UserError):
    """An official checkpoint that cannot be read or does not fit the model."""


def flax_modules(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Map each official module path (e.g. ``stage_0_encoder_block_1``) to its
    torch path and module; handy to compare intermediates with the official model."""
    return {flax: (torch_path, module) for torch_path, flax, module in _walk(model, "", "") if flax}


def flax_parameter_names(model: nn.Module) -> dict[str, str]:
    """Map every parameter name of ``model`` to its official key (without ``opt/target/``)."""
    names = {}
    for torch_path, flax_path, module in _walk(model, "", ""):
        for param_name, flax_leaf in (_leaf_names(module) or {}).items():
            if getattr(module, param_name, None) is not None:
                names[f"{torch_path}.{param_name}"] = f"{flax_path}/{flax_leaf}"
    return names


def _walk(module: nn.Module, torch_path: str, flax_path: str):
    yield torch_path, flax_path, module
    if _leaf_names(module) is not None:
        return
    for child_torch, child_flax in module.flax_names.items():
        yield from _walk(
            module.get_submodule(child_torch),
            f"{torch_path}.{child_torch}" if torch_path else child_torch,
            "/".join(p for p in (flax_path, child_flax) if p),
        )


def _leaf_names(module: nn.Module) -> dict[str, str] | None:
    if isinstance(module, nn.LayerNorm):
        return {"weight": "scale", "bias": "bias"}
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        return {"weight": "kernel", "bias": "bias"}
    return None


def to_torch_layout(module: nn.Module, leaf: str, array: np.ndarray) -> torch.Tensor:
    """Convert one official array to the layout of ``module``'s parameter."""
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if leaf != "kernel":
        return tensor
    if isinstance(module, nn.Linear):
        return tensor.t()
    if isinstance(module, nn.ConvTranspose2d):
        return tensor.flip(0, 1).permute(2, 3, 0, 1)
    return tensor.permute(3, 2, 0, 1)  # Conv2d: (kh, kw, in, out) -> (out, in, kh, kw)


def to_flax_shape(module: nn.Module, leaf: str, shape: torch.Size) -> tuple[int, ...]:
    """The official shape of a parameter of ``module`` with torch shape ``shape``."""
    if leaf != "kernel":
        return tuple(shape)
    if isinstance(module, nn.Linear):
        return (shape[1], shape[0])
    if isinstance(module, nn.ConvTranspose2d):
        return (shape[2], shape[3], shape[0], shape[1])
    return (shape[2], shape[3], shape[1], shape[0])


def expected_official_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every official key (with ``opt/target/``) the model expects, with its shape."""
    params = dict(model.named_parameters())
    shapes = {}
    for torch_name, flax_name in flax_parameter_names(model).items():
        module = model.get_submodule(torch_name.rpartition(".")[0])
        shapes[PREFIX + flax_name] = to_flax_shape(module, flax_name.rpartition("/")[2], params[torch_name].shape)
    return shapes


def read_official_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read the ``opt/target/`` arrays of an official checkpoint, refusing pickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected an official MAXIM checkpoint.npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: holds a single array, not an .npz archive of named parameters")
            params = {key: archive[key] for key in archive.files if key.startswith(PREFIX)}
    except CheckpointError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise CheckpointError(
                f"{path}: contains pickled Python objects, which are never loaded (they can run code). "
                "Official MAXIM checkpoints hold plain arrays only; re-save it with numpy.savez."
            ) from err
        raise CheckpointError(f"{path}: not a readable .npz archive ({err})") from err
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt .npz archive ({err}); download it again") from err
    if not params:
        raise CheckpointError(
            f"{path}: no '{PREFIX}' parameters; this is not an official MAXIM checkpoint "
            "(those store every parameter under opt/target/...)"
        )
    return {key[len(PREFIX) :]: value for key, value in params.items()}


def infer_config(params: dict[str, np.ndarray], **given) -> dict:
    """Complete ``given`` with the fields the parameter names and shapes determine.

    Block and grid sizes are only known as products (n_b, n_g); square sizes
    are assumed unless given, as for every released checkpoint.
    """

    def count(pattern: str) -> int:
        regex = re.compile(pattern)
        return len({m.group(1) for key in params if (m := regex.match(key))})

    def shape(key: str) -> tuple[int, ...]:
        if key not in params:
            raise CheckpointError(f"cannot infer the MAXIM config: parameter '{key}' is missing")
        return params[key].shape

    cfg = dict(given)
    stem = "stage_0_input_conv_0/kernel"
    cfg.setdefault("features", shape(stem)[3])
    cfg.setdefault("in_channels", shape(stem)[2])
    cfg.setdefault("num_stages", count(r"stage_(\d+)_"))
    cfg.setdefault("depth", count(r"stage_0_encoder_block_(\d+)/"))
    cfg.setdefault("num_supervision_scales", count(r"stage_0_input_conv_(\d+)/"))
    cfg.setdefault("num_bottleneck_blocks", count(r"stage_0_global_block_(\d+)/"))
    cfg.setdefault("num_groups", count(r"stage_0_encoder_block_0/channel_attention_block_1(\d+)/"))
    cfg.setdefault("use_bias", f"{stem[: -len('kernel')]}bias" in params)
    cfg.setdefault("use_cross_gating", any(k.startswith("stage_0_cross_gating_block_") for k in params))
    cfg.setdefault(
        "use_global_mlp", any(k.startswith("stage_0_encoder_block_0/SplitHeadMultiAxisGmlpLayer_0/") for k in params)
    )
    last = cfg["num_stages"] - 1
    cfg.setdefault("num_outputs", shape(f"stage_{last}_output_conv_0/kernel")[3])
    cfg.setdefault("channels_reduction", _infer_reduction(params, cfg))

    encoder = "stage_0_encoder_block_0/SplitHeadMultiAxisGmlpLayer_0/"
    bottleneck = "stage_0_global_block_0/SplitHeadMultiAxisGmlpLayer_0/"
    source = encoder if cfg["use_global_mlp"] else bottleneck
    c = shape(f"{source}LayerNorm_in/scale")[0]
    cfg.setdefault("input_proj_factor", shape(f"{source}in_project/kernel")[1] // c)
    cu = c * cfg["input_proj_factor"] // 2
    cfg.setdefault("grid_gmlp_factor", shape(f"{source}GridGmlpLayer/in_project/kernel")[1] // cu)
    cfg.setdefault("block_gmlp_factor", shape(f"{source}BlockGmlpLayer/in_project/kernel")[1] // cu)

    # Token counts per level come from the skip cross-gating blocks (or the
    # decoders' MABs) and the bottleneck, which always uses block_size_lr.
    def tokens(level: int) -> tuple[int, int]:
        if cfg["use_cross_gating"]:
            gate = f"stage_0_cross_gating_block_{level}/SplitHeadMultiAxisGating_x/"
            return shape(gate + "Dense_1/kernel")[0], shape(gate + "Dense_0/kernel")[0]
        mab = f"stage_0_decoder_block_{level}/UNetEncoderBlock_0/SplitHeadMultiAxisGmlpLayer_0/"
        return (
            shape(mab + "BlockGmlpLayer/BlockGatingUnit/Dense_0/kernel")[0],
            shape(mab + "GridGmlpLayer/GridGatingUnit/Dense_0/kernel")[0],
        )

    n_lr = shape(bottleneck + "BlockGmlpLayer/BlockGatingUnit/Dense_0/kernel")[0]
    if "block_size_lr" not in cfg:
        cfg["block_size_lr"] = _square(n_lr, "block_size_lr")
    cfg.setdefault("grid_size_lr", cfg["block_size_lr"])
    per_level = [tokens(i) for i in range(cfg["depth"])] if (cfg["use_cross_gating"] or cfg["use_global_mlp"]) else []
    if per_level:
        n_block_hr, n_grid_hr = per_level[0]
        if "high_res_stages" not in cfg and (n_block_hr, n_grid_hr) != (n_lr, n_lr):
            cfg["high_res_stages"] = next((i for i, t in enumerate(per_level) if t != per_level[0]), len(per_level))
        for name, n in (("block_size_hr", n_block_hr), ("grid_size_hr", n_grid_hr)):
            if name not in cfg:
                cfg[name] = _square(n, name)
    return cfg


def _square(tokens: int, name: str) -> tuple[int, int]:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise CheckpointError(
            f"cannot infer {name}: the checkpoint fixes only its product ({tokens}), which is not a square; "
            f"pass {name}=(h, w) explicitly"
        )
    return side, side


def _infer_reduction(params: dict[str, np.ndarray], cfg: dict) -> int:
    """channels // reduction is all a checkpoint shows; intersect over levels."""
    candidates = None
    for level in range(cfg["depth"]):
        key = f"stage_0_encoder_block_{level}/channel_attention_block_10/channel_attention/Conv_0/kernel"
        if key not in params:
            break
        channels, squeezed = params[key].shape[2:]
        fits = {r for r in range(1, channels + 1) if channels // r == squeezed}
        candidates = fits if candidates is None else candidates & fits
    if not candidates or len(candidates) > 1:
        raise CheckpointError(
            f"cannot infer channels_reduction from the checkpoint (candidates: {sorted(candidates or [])}); "
            "pass it explicitly"
        )
    return candidates.pop()


def official_state_dict(model: nn.Module, params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert official arrays (keys without ``opt/target/``) to ``model``'s state_dict.

    Raises one CheckpointError listing every missing, unexpected and
    mis-shaped name when the checkpoint does not fit the model.
    """
    if isinstance(model, MAXIM) and (model.config.mixer, model.config.block) != ("gmlp", "maxim"):
        raise CheckpointError(
            f"official checkpoints hold the gMLP MAXIM; a model with mixer={model.config.mixer}, "
            f"block={model.config.block} "
            "cannot load them (use mixer=gmlp, block=maxim)"
        )
    expected = {k[len(PREFIX) :]: v for k, v in expected_official_shapes(model).items()}
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(params[k].shape)}, model {expected[k]}"
        for k in set(expected) & set(params)
        if tuple(params[k].shape) != expected[k]
    )
    if missing or unexpected or misshaped:
        raise CheckpointError(_mismatch_report(missing, unexpected, misshaped))
    state = {}
    for torch_name, flax_name in flax_parameter_names(model).items():
        module = model.get_submodule(torch_name.rpartition(".")[0])
        state[torch_name] = to_torch_layout(module, flax_name.rpartition("/")[2], params[flax_name])
    return state


def _mismatch_report(missing: list[str], unexpected: list[str], misshaped: list[str], show: int = 15) -> str:
    lines = [
        "the checkpoint does not fit this MAXIM configuration (pass the official config fields it was trained with):"
    ]
    for title, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if names:
            lines.append(f"  {len(names)} {title}:")
            lines += [f"    {PREFIX}{n}" for n in names[:show]]
            if len(names) > show:
                lines.append(f"    ... and {len(names) - show} more")
    return "\n".join(lines)


def load_official(path: str | Path, **config) -> MAXIM:
    """Build a MAXIM from an official ``checkpoint.npz`` and load it strictly.

    ``config`` takes official field names (e.g. the ``config`` of the fixture's
    JSON); fields not given are inferred from the checkpoint. Returns the model
    in eval mode.
    """
    params = read_official_npz(path)
    try:
        model = MAXIM(**infer_config(params, **config))
        state = official_state_dict(model, params)
    except (CheckpointError, TypeError) as err:
        raise CheckpointError(f"{path}: {err}") from None
    model.load_state_dict(state, strict=True)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m restore.models.convert",
        description="Convert an official MAXIM checkpoint.npz to a PyTorch state_dict (.pt).",
    )
    parser.add_argument("input", type=Path, help="official checkpoint (.npz)")
    parser.add_argument("output", type=Path, help="where to write the state_dict (.pt); never overwritten")
    parser.add_argument(
        "--config", type=Path, help="JSON with official config fields (a top-level 'config' key is also accepted)"
    )
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"{args.output} exists; choose another output path (existing files are never overwritten)")
    config = {}
    if args.config:
        config = json.loads(args.config.read_text())
        config = config.get("config", config)
    with exit_on_user_error():
        model = load_official(args.input, **config)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    torch.save(model.state_dict(), partial)
    partial.replace(args.output)  # atomic: never a half-written file under the final name
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {n_params:,} parameters")
    print("config:", json.dumps(model.config.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
