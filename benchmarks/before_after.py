"""A before/after strip for the README: for a few images of a paired test set, the degraded input,
each model's output and the ground truth side by side, each panel labelled with its PSNR.

    python benchmarks/before_after.py LOL --data-root DATA --images 1 22 111 \\
        --model clahe=CLAHE --model weights/maxim1s_w32_lol.ckpt=ours --out docs/images/lol_strip.png

A ``--model`` is ``SOURCE=LABEL``: SOURCE a ``conf/model`` preset name or a ``.ckpt`` file.
Outputs go through ``restore.inference.restore_image`` in fp32, as ``evaluate.py`` restores them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from restore.data import build_dataset, get_benchmark  # noqa: E402
from restore.inference import restore_image, to_inference  # noqa: E402
from restore.metrics import score  # noqa: E402
from restore.models.loading import build_model, load_model, load_preset  # noqa: E402

LABEL_HEIGHT = 28


def model_of(source: str) -> torch.nn.Module:
    model = load_model(ckpt=source) if source.endswith(".ckpt") else build_model(load_preset(source))
    return to_inference(model, torch.device("cpu"))


def labelled(image: torch.Tensor, text: str, scale: float) -> np.ndarray:
    """(3, H, W) in [0, 1] -> 8-bit RGB, resized by ``scale``, with a white caption bar above it."""
    rgb = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if scale != 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    bar = np.full((LABEL_HEIGHT, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (6, LABEL_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, rgb])


def strip(
    dataset_name: str, root: Path, split: str, names: list[str], models: list[tuple[str, str]], scale: float
) -> np.ndarray:
    dataset = build_dataset(dataset_name, root, split)
    index = {item_name: i for i, item_name in enumerate(dataset.names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise SystemExit(
            f"{dataset_name} {split} has no image {', '.join(missing)} (it has {', '.join(dataset.names)})"
        )
    built = [(model_of(source), label) for source, label in models]
    rows = []
    for name in names:
        item = dataset[index[name]]
        degraded, target = item["input"][None], item["target"][None]
        panels = [labelled(degraded[0], f"{name}: input {score(degraded, target)['psnr'].item():.2f} dB", scale)]
        for model, label in built:
            with torch.no_grad():
                restored = restore_image(model, degraded)
            panels.append(labelled(restored[0], f"{label} {score(restored, target)['psnr'].item():.2f} dB", scale))
        panels.append(labelled(target[0], "ground truth", scale))
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a paired benchmark, e.g. LOL")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", nargs="+", required=True, help="image names (file stems) of that split")
    parser.add_argument("--model", action="append", required=True, help="SOURCE=LABEL (a preset or a .ckpt)")
    parser.add_argument("--scale", type=float, default=0.5, help="resize of each panel (its caption stays legible)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    models = [tuple(entry.split("=", 1)) if "=" in entry else (entry, Path(entry).stem) for entry in args.model]
    benchmark = get_benchmark(args.dataset)
    image = strip(benchmark.name, args.data_root / benchmark.name, args.split, args.images, models, args.scale)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another path (files are never overwritten)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
