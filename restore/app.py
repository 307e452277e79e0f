"""python -m restore.app: a local page to look at restorations, before and after, at full resolution.

The page (Gradio, ``conf/app.yaml``) takes a photo (dropped, or one of the photos scikit-image
ships), restores it with a model picked from a list (the denoiser in ``weights/``, each task's
official release found under ``weights_dir``, the ``ckpt=`` / ``weights=`` / ``model=`` of the
command line) through the same steps as ``restore.predict`` (so the result is the file predict
writes, bit for bit, at the input's bit depth), and shows input and output under a zoomable
before/after slider. "Try it on a clean photo" first degrades the photo as the task's training
data is degraded (``restore.data.degrade``), then scores the degraded and the restored image
against it (``restore.metrics.score``).

It binds to 127.0.0.1 unless ``host=`` says otherwise, and writes only into its own temporary
folder (uploads, samples, results), which it deletes on exit.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from restore import CONF_DIR
from restore.allocator import keep_freed_memory
from restore.cli import restore_options_of
from restore.data.benchmarks import DEMO_SPLITS
from restore.data.degrade import build_degradation
from restore.data.io import ImageReadError, image_size, to_float, write_image
from restore.data.layout import SkimageSource
from restore.errors import UserError, exit_on_user_error, one_line
from restore.inference import forward_count, precision_name
from restore.metrics import score
from restore.models.ship import WEIGHTS_DIR, shipped_model
from restore.predict import load_predictor, read_photo, restore_photo
from restore.video import to_integers

TASKS = ("denoise", "deblur", "derain", "dehaze", "lowlight")
# The field a strength in [0, 1] sets, per degradation, and whether a larger value is milder.
STRENGTH = {
    "gaussian_noise": ("sigma", False),
    "poisson_gaussian_noise": ("peak", True),
    "motion_blur": ("kernel_size", False),
    "defocus_blur": ("radius", False),
    "rain": ("density", False),
    "haze": ("beta", False),
    "low_light": ("exposure", True),
}
# Bytes per pixel a restoration holds besides the model (float inputs, outputs, the tiled
# blend's sums, the 8/16-bit copies shown and written): an upload needing more than the
# available memory is refused before it is decoded.
BYTES_PER_PIXEL = 200


@dataclass(frozen=True)
class Choice:
    """A model the page offers: the predict overrides that load it and the task it restores."""

    label: str
    overrides: tuple[str, ...]
    task: str


def predict_config(overrides: list[str]) -> DictConfig:
    """``conf/predict.yaml`` composed with ``overrides``, as ``python -m restore.predict`` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main
        return compose("predict", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("predict", overrides=overrides)


def model_choices(cfg: DictConfig) -> list[Choice]:
    """The command line's model first, then the models shipped for each task, then each release on disk."""
    choices = []
    for key in ("ckpt", "weights"):
        if cfg.get(key) is not None:
            choices.append(Choice(f"{key}={cfg[key]}", (f"{key}={cfg[key]}",), cfg.model_task))
    if cfg.get("model") is not None:
        choices.append(
            Choice(f"model={cfg.model}", (f"model={cfg.model}", *cfg.get("model_overrides", [])), cfg.model_task)
        )
    tasks = {task: OmegaConf.load(CONF_DIR / "task" / f"{task}.yaml") for task in TASKS}
    for task, task_cfg in tasks.items():
        shipped = shipped_model(task_cfg)
        if shipped is not None:
            choices.append(Choice(f"{task}: shipped, trained here ({shipped.name})", (f"ckpt={shipped}",), task))
    for task, task_cfg in tasks.items():
        release = task_cfg.release
        if (Path(cfg.weights_dir) / release / "checkpoint.npz").is_file():
            overrides = (f"task={task}", f"weights_dir={cfg.weights_dir}")
            choices.append(Choice(f"{task}: the official MAXIM ({release})", overrides, task))
    if not choices:
        raise UserError(
            f"no model to offer: give ckpt=FILE, weights=FILE or model=PRESET (nothing shipped in {WEIGHTS_DIR})"
        )
    return choices


def task_degradation(task: str, strength: float):
    """The task's training degradation with its main field set by ``strength`` in [0, 1]."""
    spec = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / f"{task}.yaml").degradation)
    degradation = build_degradation(spec)
    field, milder_when_larger = STRENGTH[degradation.name]
    low, high = degradation.range(field)
    fraction = 1 - strength if milder_when_larger else strength
    value = low + fraction * (high - low)
    if field == "kernel_size":
        value = 2 * math.floor(value / 2) + 1  # kernels have odd sizes
    return dataclasses.replace(degradation, **{field: value}), f"{degradation.name} {field}={value:.4g}"


def shown(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) float image in [0, 1] as 8-bit RGB for the page."""
    rgb = image[..., :3] if image.shape[2] >= 3 else np.repeat(image, 3, axis=2)
    return to_integers(rgb, 8)


class Restorer:
    """The page's work: load models (one kept at a time), restore, degrade and score."""

    def __init__(self, cfg: DictConfig, folder: Path):
        self.cfg, self.folder = cfg, folder
        self.choices = {choice.label: choice for choice in model_choices(cfg)}
        self.loaded: tuple[str, torch.nn.Module, str, torch.device] | None = None

    def model(self, label: str):
        if self.loaded is None or self.loaded[0] != label:
            self.loaded = None  # the previous model's memory goes before the next loads
            choice = self.choices[label]
            config = predict_config([*choice.overrides, f"device={self.cfg.device}"])
            model, description, device = load_predictor(config)
            self.loaded = (label, model, description, device)
        return self.loaded[1:]

    def check_size(self, path: Path) -> None:
        height, width = image_size(path)
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if height * width * BYTES_PER_PIXEL > available:
            raise UserError(
                f"{path.name} is {width}x{height} pixels, more than the {available / 2**30:.1f} GiB of free memory "
                "can restore; crop or downscale it, or free memory"
            )

    def restore(self, path: str | None, label: str, mode: str, strength: float, ensemble: bool, progress):
        """-> (before, after) for the slider, the restored PNG, and a Markdown report."""
        if not path:
            raise UserError("drop an image first, or pick a sample photo")
        source = Path(path)
        self.check_size(source)
        photo = read_photo(source)
        model, description, device = self.model(label)
        options = restore_options_of({**OmegaConf.to_container(self.cfg, resolve=True), "ensemble": bool(ensemble)})
        lines = [f"**model**: {description}", f"**image**: {photo.rgb.shape[1]}x{photo.rgb.shape[0]}, {photo.bits}-bit"]
        clean = None
        if mode == CLEAN:
            degradation, what = task_degradation(self.choices[label].task, strength)
            clean = torch.from_numpy(to_float(photo.rgb).transpose(2, 0, 1))[None]  # (1, 3, H, W)
            degraded = degradation(clean, seed=0)[0].permute(1, 2, 0).numpy()
            # restored from the degraded photo as a saved file holds it: at the photo's depth
            photo = dataclasses.replace(photo, rgb=to_integers(degraded, photo.bits))
            lines.append(f"**degraded with**: {what} (seed 0)")
        x = torch.from_numpy(to_float(photo.rgb).transpose(2, 0, 1))[None]
        total, done = (
            forward_count(
                model, x, tile=options["tile"], tile_overlap=options["tile_overlap"], ensemble=options["ensemble"]
            ),
            [0],
        )

        def tick(*_):
            done[0] += 1
            progress((min(done[0], total), total), desc="restoring", unit="forwards")

        hook = model.register_forward_pre_hook(tick)
        start = time.perf_counter()
        try:
            restored = restore_photo(model, photo, options, device)
        finally:
            hook.remove()
        seconds = time.perf_counter() - start
        name = f"{source.stem}_restored.png"
        result = write_image(self.folder / "results" / f"{time.time_ns()}" / name, restored, bits=photo.bits)
        precision = precision_name(options["autocast"], device)
        lines.append(f"**time**: {seconds:.2f} s ({total} forward{'s' * (total > 1)}, {precision})")
        if clean is not None:
            target = clean
            before = score(torch.from_numpy(to_float(photo.rgb).transpose(2, 0, 1))[None], target)
            after = score(torch.from_numpy(restored.transpose(2, 0, 1))[None], target)
            table = [
                "| against the clean photo | PSNR (dB) | SSIM |",
                "|---|---:|---:|",
                f"| degraded | {before['psnr'].item():.2f} | {before['ssim'].item():.4f} |",
                f"| restored | {after['psnr'].item():.2f} | {after['ssim'].item():.4f} |",
            ]
        report = "\n\n".join(lines) + ("\n\n" + "\n".join(table) if clean is not None else "")
        return (shown(to_float(photo.rgb)), shown(restored)), str(result), report


RESTORE, CLEAN = "restore this photo", "try it on a clean photo (degrade, restore, score)"
CSS = ".pixels img { image-rendering: pixelated; }"  # zoomed in, pixels stay square


def write_samples(folder: Path) -> list[Path]:
    """The photos scikit-image ships (those ``data=demo`` trains and validates on) as PNG files."""
    paths = []
    for name in (*DEMO_SPLITS["val"], *DEMO_SPLITS["train"]):
        path = folder / "samples" / f"{name}.png"
        if not path.exists():
            write_image(path, to_float(np.asarray(SkimageSource(name).read())))
        paths.append(path)
    return paths


def build_app(cfg: DictConfig, folder: Path):
    """The Gradio page; ``folder`` receives the samples and results."""
    import gradio as gr

    restorer = Restorer(cfg, folder)
    labels = list(restorer.choices)

    progress_default = gr.Progress()  # Gradio fills in a live one for each call

    def run(path, label, mode, strength, ensemble, progress=progress_default):
        try:
            return restorer.restore(path, label, mode, strength, ensemble, progress)
        except (UserError, ImageReadError, FileExistsError) as error:
            raise gr.Error(one_line(error)) from None
        except (MemoryError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "memory" not in str(error).lower():
                raise
            raise gr.Error("this image is too large for the memory left; crop or downscale it") from None

    with gr.Blocks(title="restore: look at the results") as page:
        gr.Markdown("## restore: before and after\nDrop a photo (PNG, JPEG, TIFF; 16-bit PNGs stay 16-bit).")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="photo", file_types=["image"], type="filepath")
                gr.Examples([[str(path)] for path in write_samples(folder)], inputs=[upload], label="sample photos")
                model = gr.Dropdown(labels, value=labels[0], label="restore with")
                mode = gr.Radio([RESTORE, CLEAN], value=RESTORE, label="mode")
                strength = gr.Slider(0, 1, value=0.5, step=0.05, label="degradation strength (clean-photo mode)")
                ensemble = gr.Checkbox(False, label="x8 self-ensemble (8 times slower)")
                button = gr.Button("restore", variant="primary")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(
                    label="before / after (scroll to zoom, drag to pan)",
                    format="png",
                    type="numpy",
                    max_height=720,
                    elem_classes="pixels",
                    buttons=["fullscreen"],
                )
                report = gr.Markdown()
                result = gr.File(label="the restored image, at the input's bit depth")
        button.click(run, [upload, model, mode, strength, ensemble], [slider, result, report], api_name="restore")
    return page


def serve(cfg: DictConfig, *, block: bool = True):
    """Start the page on ``cfg.host``:``cfg.port``; returns the Gradio app (running in threads when not ``block``)."""
    folder = Path(tempfile.mkdtemp(prefix="restore-app-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # Gradio keeps uploads and served files in GRADIO_TEMP_DIR: the app's own folder
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_app(cfg, folder)
    page.queue(default_concurrency_limit=1)  # one restoration at a time: they share the cores
    page.launch(
        server_name=cfg.host,
        server_port=cfg.port,
        prevent_thread_lock=True,
        max_file_size=cfg.max_upload,
        quiet=True,
        css=CSS,
    )
    print(f"restore app: open http://{cfg.host}:{page.server_port} in a browser (Ctrl-C stops it)", flush=True)
    if block:
        page.block_thread()
    return page


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="app")
def main(cfg: DictConfig) -> None:
    # model=PRESET is a config group (conf/model): Hydra composes the preset's fields into
    # cfg.model, while the page hands the preset and its model.FIELD=VALUE overrides on to
    # restore.predict as they were typed.
    hydra_cfg = HydraConfig.get()
    with open_dict(cfg):
        cfg.model = hydra_cfg.runtime.choices.get("model")
        cfg.model_overrides = [o for o in hydra_cfg.overrides.task if o.startswith("model.")]
    with exit_on_user_error():
        serve(cfg)


if __name__ == "__main__":
    keep_freed_memory()
    main()
