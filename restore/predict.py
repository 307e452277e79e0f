"""Restore your own images: one file or a folder, any size.

Command line (Hydra, ``conf/predict.yaml``; every field is a ``key=value``)::

    python -m restore.predict input=photos/ output=restored/ weights=checkpoint.npz   # official weights
    python -m restore.predict input=photo.jpg output=restored/ ckpt=last.ckpt         # a Lightning checkpoint
    python -m restore.predict input=photos/ output=restored/ task=deblur              # the released deblurring MAXIM

``task=`` names the released MAXIM of a task (``release`` in ``conf/task/<task>.yaml``):
without ``weights=`` it reads that release from ``<weights_dir>/<release>/checkpoint.npz``;
with ``weights=`` the weights must fit the task's model preset (MAXIM-3S or -2S), as the
official evaluation builds the model of the task and then loads the weights.

Each input ``<name>.<ext>`` becomes ``<output>/<name>.png`` (sub-folders mirrored with
``recursive=true``), the same size as the input and, unless ``bits=`` says otherwise, the same
bit depth. Gray files give gray PNGs (the model sees three equal channels; its output's channel
mean is written). An alpha channel is kept as it is and written back (gray with alpha comes out
as RGBA). EXIF orientation is applied, so outputs are upright. Nothing is ever overwritten:
the output folder may not be the input's folder (nor inside it with ``recursive=true``, where
outputs would be read back as inputs), and existing outputs are refused up front
(``skip_existing=true`` leaves those inputs out instead).

A video ``<name>.<ext>`` (``restore.video.VIDEO_EXTENSIONS``; a folder may mix images and
videos) becomes ``<output>/<name>.<ext>``, restored frame by frame at its size and frame
timestamps, its audio copied, encoded with the input's codec unless ``codec=`` says otherwise.
A video interrupted part way keeps its finished segments; ``skip_existing=true`` continues it
from the first frame after them (or says why it cannot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from restore import CONF_DIR
from restore.allocator import keep_freed_memory
from restore.cli import model_from_config, restore_options_of, wide_console
from restore.data.io import IMAGE_EXTENSIONS, ImageReadError, decode_image, is_image_file, to_float, write_image
from restore.data.layout import list_images
from restore.errors import ConfigError, exit_on_user_error
from restore.inference import pick_device, precision_name, restore_image, to_inference
from restore.models.convert import CheckpointError
from restore.models.loading import load_model
from restore.models.ship import shipped_model
from restore.video import VIDEO_EXTENSIONS, is_video_file, list_videos, parts_folder, restore_video

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Photo:
    """An input image as the user's file holds it."""

    rgb: np.ndarray  # (H, W, 3) uint8 or uint16, upright (EXIF orientation applied)
    alpha: np.ndarray | None  # (H, W) of the same dtype, or None
    gray: bool  # the file has a single channel

    @property
    def bits(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8


def read_photo(path: Path) -> Photo:
    """Read an image with what :func:`restore.data.io.decode_image` drops: its channel count and alpha."""
    import cv2

    rgb = decode_image(path)  # the ImageReadError for anything unreadable names the file
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    channels = 1 if raw is None or raw.ndim == 2 else raw.shape[2]
    alpha = None
    if channels == 4:
        alpha = _upright(raw[..., 3], path)
        if alpha.shape != rgb.shape[:2] or alpha.dtype != rgb.dtype:
            raise ImageReadError(f"{path}: its alpha channel ({alpha.shape}, {alpha.dtype}) does not fit its colours")
    return Photo(rgb=rgb, alpha=alpha, gray=channels == 1)


def _upright(plane: np.ndarray, path: Path) -> np.ndarray:
    """Apply the file's EXIF orientation to one plane (H, W).

    IMREAD_UNCHANGED, the only OpenCV mode that returns the alpha channel at full depth, skips
    the orientation that decode_image's IMREAD_COLOR applies to the colours; the eight cases
    are those of PIL's ``ImageOps.exif_transpose``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError):
        orientation = 1  # a format PIL cannot read carries no EXIF that OpenCV applied either
    return {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(plane)


def restore_photo(model: nn.Module, photo: Photo, options: dict, device: torch.device) -> np.ndarray:
    """The restored photo as written: float in [0, 1], (H, W, 1), (H, W, 3) or (H, W, 4) as the input."""
    x = torch.from_numpy(to_float(photo.rgb).transpose(2, 0, 1)).unsqueeze(0).to(device)  # (1, 3, H, W)
    return output_image(restore_image(model, x, **options)[0], photo)


def output_image(restored: torch.Tensor, photo: Photo) -> np.ndarray:
    """The restored (3, H, W) image in the input's layout: (H, W, 1) gray, (H, W, 3) or (H, W, 4)."""
    rgb = restored.clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    if photo.gray:
        return rgb.mean(axis=2, keepdims=True)
    if photo.alpha is not None:
        return np.concatenate([rgb, to_float(photo.alpha)[..., None]], axis=2)
    return rgb


# ---------------------------------------------------------------------------------------------
# Where inputs come from and outputs go


def plan_files(
    source: Path, output: Path, *, recursive: bool = False, skip_existing: bool = False
) -> list[tuple[Path, Path]]:
    """``[(input, output)]`` for an image or a folder, after every refusal that protects the user's files."""
    if not source.exists():
        raise ConfigError(f"input={source} does not exist; give an image file or a folder of images")
    folder = source if source.is_dir() else source.parent
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output={output} is a file; give a folder (it is created when missing)")
    if output.resolve() == folder.resolve():
        raise ConfigError(
            f"output={output} is the input's folder; write the restored images to another folder "
            "(inputs are never overwritten)"
        )
    if recursive and source.is_dir() and output.resolve().is_relative_to(source.resolve()):
        raise ConfigError(
            f"output={output} is inside input={source}, and recursive=true would read the restored images "
            "back as inputs; choose an output folder outside the input folder"
        )
    if source.is_dir():
        inputs = list_images(source, "images to restore", recursive=recursive, allow_empty=True)
        inputs = sorted(inputs + list_videos(source, recursive=recursive))
        if not inputs:
            raise ConfigError(
                f"input={source} holds no image files and no videos; readable extensions: "
                f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}"
            )
    elif is_image_file(source) or is_video_file(source):
        inputs = [source]
    else:
        raise ConfigError(
            f"input={source} is not an image file (nor a video); readable extensions: "
            f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}"
        )
    pairs, claimed = [], {}
    for path in inputs:
        relative = path.relative_to(folder)
        target = output / (relative if is_video_file(path) else relative.with_suffix(".png"))
        if target in claimed:
            raise ConfigError(f"{claimed[target]} and {path} would both be written to {target}; rename one of them")
        claimed[target] = path
        pairs.append((path, target))
    existing = [target for _, target in pairs if target.exists()]
    if existing and not skip_existing:
        shown = ", ".join(str(path) for path in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{len(existing)} output(s) exist already ({shown}); outputs are never overwritten: choose another "
            "output= folder, or skip_existing=true to restore only the others"
        )
    unfinished = [parts_folder(target) for path, target in pairs if parts_folder(target).exists()]
    if unfinished and not skip_existing:
        raise FileExistsError(
            f"{unfinished[0]} holds an interrupted run; skip_existing=true continues it from where it stopped, "
            "or delete the folder to start over"
        )
    return [(path, target) for path, target in pairs if not target.exists()]


# ---------------------------------------------------------------------------------------------
# The model


def model_for_prediction(cfg: DictConfig) -> tuple[nn.Module, str]:
    """The model of ``ckpt=``, ``weights=`` or ``model=``, or the model of ``task=``.

    ``task=`` composes ``conf/task/<task>.yaml``: its model preset (the official config of the
    release, so the weights are built as the official evaluation builds them; ``model.<field>``
    overrides still apply), ``release``, the official checkpoint's folder under ``weights_dir``,
    and ``shipped``, the model this project trained for the task (under ``weights/``), which
    restores when the release is not on disk.
    """
    task = cfg.get("task_name")
    if task is None:
        return model_from_config(cfg)
    if cfg.get("ckpt") is not None:
        raise ConfigError("task= names an official MAXIM release; a Lightning checkpoint (ckpt=) has its own config")
    weights = Path(cfg.weights) if cfg.get("weights") is not None else None
    if weights is None:
        weights = Path(cfg.weights_dir) / cfg.release / "checkpoint.npz"
        if not weights.is_file():
            shipped = shipped_model(cfg)
            if shipped is not None:
                description = f"task={task}: {shipped.name}, trained by this project ({weights} absent)"
                return load_model(ckpt=shipped), description
            raise ConfigError(
                f"task={task}: the released weights are expected at {weights}; download "
                f"gs://gresearch/maxim/ckpt/{cfg.release}/checkpoint.npz (google-research/maxim README) "
                "there, or give weights=FILE"
            )
    fields = OmegaConf.to_container(cfg.model, resolve=True)
    try:
        model = load_model(weights=weights, model_cfg=fields)
    except CheckpointError as err:
        raise CheckpointError(
            f"{weights} does not hold the {task} model (MAXIM-{fields['num_stages']}S, {cfg.release}): {err}"
        ) from None
    return model, f"task={task}, weights={weights}"


# ---------------------------------------------------------------------------------------------
# The command


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's class and weights: what a resumed video must be restored with again."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_predictor(cfg: DictConfig) -> tuple[nn.Module, str, torch.device]:
    """The model of the config on its device, in eval mode, and its description."""
    model, description = model_for_prediction(cfg)
    device = pick_device(cfg.device)
    return to_inference(model, device), description, device


def _restore_video_file(cfg, model, options, device, source: Path, target: Path, progress: Progress, frames: TaskID):
    def restore_frame(rgb: np.ndarray) -> np.ndarray:
        return restore_photo(model, Photo(rgb=rgb, alpha=None, gray=False), options, device)

    def on_start(total: int, done: int) -> None:
        progress.reset(frames, total=total or None, completed=done, description=f"{source.name} frames", visible=True)

    codec_options = OmegaConf.to_container(cfg.codec_options) if cfg.codec_options is not None else None
    restore_video(
        source,
        target,
        restore_frame,
        settings={"model": model_fingerprint(model), "options": options},
        codec=cfg.codec,
        codec_options=codec_options,
        segment_frames=int(cfg.segment_frames),
        resume=bool(cfg.skip_existing),
        on_start=on_start,
        on_frame=lambda: progress.advance(frames),
    )
    progress.update(frames, visible=False)
    return target


def predict(cfg: DictConfig, console: Console | None = None) -> list[Path]:
    """Restore ``cfg.input`` into ``cfg.output``; returns the files written."""
    console = console or wide_console()
    options = restore_options_of(cfg)
    if cfg.bits not in (None, 8, 16):
        raise ConfigError(f"bits={cfg.bits}: give 8, 16 or null (the input's own depth)")
    if isinstance(cfg.segment_frames, bool) or not isinstance(cfg.segment_frames, int) or cfg.segment_frames < 1:
        raise ConfigError(f"segment_frames={cfg.segment_frames}: give a number of frames >= 1")
    pairs = plan_files(
        Path(cfg.input), Path(cfg.output), recursive=bool(cfg.recursive), skip_existing=bool(cfg.skip_existing)
    )
    model, description, device = load_predictor(cfg)
    written = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("restoring", total=len(pairs))
        frames = progress.add_task("frames", visible=False)
        for source, target in pairs:
            if is_video_file(source):
                written.append(_restore_video_file(cfg, model, options, device, source, target, progress, frames))
            else:
                photo = read_photo(source)
                restored = restore_photo(model, photo, options, device)
                written.append(write_image(target, restored, bits=cfg.bits or photo.bits))
            progress.advance(bar)
    videos = sum(is_video_file(path) for path in written)
    counts = f"{len(written) - videos} image(s)" + (f" and {videos} video(s)" if videos else "")
    precision = precision_name(options["autocast"], device)
    console.print(f"restored {counts} into {cfg.output} with {description}, in {precision}")
    return written


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        predict(cfg)


if __name__ == "__main__":
    keep_freed_memory()
    main()
