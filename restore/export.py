"""Export a restoration model to ONNX or TorchScript for any image size, checked against PyTorch.

Command line (Hydra, ``conf/export.yaml``; every field is a ``key=value``)::

    python -m restore.export ckpt=last.ckpt out=maxim.onnx          # a Lightning checkpoint
    python -m restore.export weights=checkpoint.npz out=maxim.onnx  # official weights
    python -m restore.export model=maxim_1s out=maxim.pt            # random init, TorchScript

The exported graph is the whole restoration of a batch: reflect padding to
the model's size multiple exactly as the official evaluation pads, the
network, its final output, and the crop back. Input ``image``
(B, C, H, W) float32 in [0, 1] with dynamic batch, height and width; output
``restored`` of the same size. After writing, the file is run on
``check_sizes`` (onnxruntime for ONNX) and compared with PyTorch; a file that
disagrees by more than ``tolerance`` (relative to max(1, max |output|)) is
not kept. An existing ``out`` is never
overwritten.

The graph is traced, so the padding branch is the one for an odd size that
needs padding on every side, which covers every size whose padding is
shorter than the image: height and width of at least (m + 2) / 3 for a size
multiple m (22 pixels for MAXIM's 64); MAXIM's own blocks need no more.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from restore import CONF_DIR
from restore.allocator import keep_freed_memory
from restore.errors import exit_on_user_error
from restore.inference import forward_padded, size_multiple
from restore.models.loading import load_model

FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
MIN_OPSET = 18  # Resize's antialias attribute


class PaddedRestorer(nn.Module):
    """``forward_padded(model, image)`` as a module: what gets exported."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return forward_padded(self.model, image)


def export(
    model: nn.Module,
    out: str | Path,
    fmt: str | None = None,
    check_sizes: list[tuple[int, int]] = ((64, 64), (96, 160)),
    tolerance: float = 1e-4,
    opset: int = MIN_OPSET,
) -> dict:
    """Write ``model`` (wrapped in :class:`PaddedRestorer`) to ``out`` and check it.

    ``fmt``: ``onnx`` or ``torchscript``, or None to take it from the
    extension (``.onnx``, ``.pt``). Returns a report: the path, the format and
    the largest difference from PyTorch at each checked size, relative to the
    output's scale max(1, max |output|).
    Raises FileExistsError for an existing ``out`` and ValueError for a
    failed check (nothing is left at ``out`` then).
    """
    out = Path(out)
    fmt = fmt or FORMATS.get(out.suffix)
    if fmt not in FORMATS.values():
        raise ValueError(f"format: give format=onnx or format=torchscript, or an out= ending in .onnx or .pt ({out})")
    if opset < MIN_OPSET:
        raise ValueError(f"opset={opset}: MAXIM's antialiased resize needs ONNX opset {MIN_OPSET} or later")
    refuse_existing(out)
    wrapper = PaddedRestorer(model.eval()).eval()
    example = torch.rand(1, getattr(getattr(model, "config", None), "in_channels", 3), *_trace_size(model))
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    partial = Path(partial)  # a fresh name of our own: no file of the user's is touched
    try:
        run = (
            _export_onnx(wrapper, example, partial, opset)
            if fmt == "onnx"
            else _export_torchscript(wrapper, example, partial)
        )
        differences = {}
        for h, w in check_sizes:
            x = torch.rand(1, example.shape[1], h, w, generator=torch.Generator().manual_seed(h * w))
            with torch.no_grad():
                expected = wrapper(x).numpy()
            # float32 rounding is relative: measure against the output's scale (a random
            # network's outputs reach far outside [0, 1]; for images in [0, 1] it is absolute)
            scale = max(1.0, float(np.abs(expected).max()))
            differences[(h, w)] = float(np.abs(run(x.numpy()) - expected).max()) / scale
        worst = max(differences.values())
        if not worst <= tolerance:
            raise ValueError(
                f"the exported {fmt} model differs from PyTorch by up to {worst:.3g} of the output's scale "
                f"(tolerance {tolerance}) at sizes {list(differences)}; nothing was written to {out}"
            )
        refuse_existing(out)  # again: out may have appeared while exporting
        partial.rename(out)
    finally:
        partial.unlink(missing_ok=True)
    return {"out": str(out), "format": fmt, "max_difference": differences}


def refuse_existing(out: Path) -> None:
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another out= (existing files are never overwritten)")


def _trace_size(model: nn.Module) -> tuple[int, int]:
    """An odd size needing padding on all four sides (m + m/2 + 1), so the traced padding is the general one."""
    return tuple(m + m // 2 + 1 if m > 1 else 33 for m in size_multiple(model))


@contextlib.contextmanager
def _quiet_tracing():
    # The padding's Python arithmetic on sizes is traced; its warnings say so, and the
    # check against PyTorch on other sizes is what shows the trace generalises.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path, opset: int):
    import onnxruntime

    _register_resize_symbolics(opset)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with _quiet_tracing(), torch.no_grad():
        # The TorchScript-based exporter: torch.export (dynamo=True) takes minutes on
        # MAXIM's reshape-heavy graph where tracing takes seconds.
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["restored"],
            dynamic_axes={"image": dynamic, "restored": dynamic},
            opset_version=opset,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path):
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return run


def _register_resize_symbolics(opset: int) -> None:
    """ONNX Resize for the two resizes MAXIM uses, which the TorchScript exporter lacks.

    nearest-exact samples floor((i + 0.5) * in / out): Resize 'nearest' with
    half_pixel coordinates ((i + 0.5) * in / out - 0.5) rounded half up.
    Antialiased bilinear (PIL's triangle filter, stretched when shrinking):
    Resize 'linear' with antialias=1 and exclude_outside=1, which renormalises
    the weights at the borders as torch does (without it onnxruntime differs by
    up to 0.04 at the borders).
    """
    from torch.onnx import register_custom_op_symbolic

    def sizes(g, x, output_size):
        import torch.onnx.symbolic_helper as helper

        batch_channels = g.op(
            "Slice",
            g.op("Shape", x),
            g.op("Constant", value_t=torch.tensor([0])),
            g.op("Constant", value_t=torch.tensor([2])),
        )
        axis0 = g.op("Constant", value_t=torch.tensor([0]))
        hw = g.op("Concat", *[g.op("Unsqueeze", v, axis0) for v in helper._unpack_list(output_size)], axis_i=0)
        return g.op("Concat", batch_channels, g.op("Cast", hw, to_i=7), axis_i=0)  # (4,) int64

    def resize(g, x, output_size, **attributes):
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", x, empty, empty, sizes(g, x, output_size), **attributes)

    def nearest_exact(g, x, output_size, *scales):
        return resize(
            g,
            x,
            output_size,
            mode_s="nearest",
            coordinate_transformation_mode_s="half_pixel",
            nearest_mode_s="round_prefer_ceil",
        )

    def bilinear_antialiased(g, x, output_size, align_corners, *scales):
        return resize(
            g,
            x,
            output_size,
            mode_s="linear",
            coordinate_transformation_mode_s="half_pixel",
            antialias_i=1,
            exclude_outside_i=1,
        )

    register_custom_op_symbolic("aten::_upsample_nearest_exact2d", nearest_exact, opset)
    register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", bilinear_antialiased, opset)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        refuse_existing(Path(cfg.out))  # before building the model
        model = load_model(ckpt=cfg.ckpt, weights=cfg.weights, model_cfg=cfg.get("model"))
        report = export(
            model,
            cfg.out,
            fmt=cfg.format,
            check_sizes=[tuple(s) for s in cfg.check_sizes],
            tolerance=cfg.tolerance,
            opset=cfg.opset,
        )
    checked = ", ".join(f"{h}x{w}: {d:.2g}" for (h, w), d in report["max_difference"].items())
    print(f"wrote {report['out']} ({report['format']}); largest difference from PyTorch, relative: {checked}")


if __name__ == "__main__":
    keep_freed_memory()
    main()
