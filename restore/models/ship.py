"""Write the part of a training checkpoint that inference needs: the weights and the model config.

    python -m restore.models.ship outputs/.../checkpoints/last.ckpt weights/my_model.ckpt

A Lightning checkpoint also holds the optimiser's moments (twice the weights again), the
loops' and callbacks' states and the random states, none of which restoring an image reads.
The shipped file keeps ``state_dict`` (the ``model.`` entries, EMA weights when training used
EMA, stored as float16 by default: half the size, and loaded back into float32 parameters)
and ``hyper_parameters["model"]``, so it loads everywhere a checkpoint does (``ckpt=FILE``
in evaluate.py, restore.predict and restore.export), with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from restore.errors import exit_on_user_error
from restore.models.loading import MODEL_PREFIX, load_model, read_checkpoint

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# The models this project trained and ships, one per task at most: conf/task/<task>.yaml names its
# file here as ``shipped:`` (restore.predict task=<task> and the app use it when no release is on disk).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def shipped_model(task_cfg) -> Path | None:
    """The shipped checkpoint a task config names, when the file is present."""
    name = task_cfg.get("shipped")
    if not name or not (WEIGHTS_DIR / name).is_file():
        return None
    return WEIGHTS_DIR / name


def ship(source: Path, destination: Path, dtype: torch.dtype = torch.float16) -> dict:
    """Write ``destination`` from the checkpoint ``source``; returns what was written. Never overwrites."""
    if destination.exists():
        raise FileExistsError(f"{destination} exists; choose another path (existing files are never overwritten)")
    checkpoint = read_checkpoint(source)
    load_model(ckpt=source)  # refuses a checkpoint whose weights do not fit its config, before writing
    state = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(MODEL_PREFIX)
    }
    shipped = {
        "state_dict": state,
        "hyper_parameters": {"model": checkpoint["hyper_parameters"]["model"]},
        "global_step": checkpoint.get("global_step"),
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        torch.save(shipped, partial)
        partial.rename(destination)
    finally:
        partial.unlink(missing_ok=True)
    return shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m restore.models.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a Lightning checkpoint (.ckpt) written by train.py")
    parser.add_argument("output", type=Path, help="where to write the inference checkpoint; never overwritten")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="storage type of the weights")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        ship(args.checkpoint, args.output, DTYPES[args.dtype])
    size = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MiB, {args.dtype} weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
