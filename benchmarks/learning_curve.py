"""A training run's learning curve: hold-out PSNR against wall-clock minutes, with a baseline beside it.

Reads what ``train.py`` wrote into its run directory: the CSV logger's ``metrics.csv``
(``val/psnr`` and ``time/minutes``, logged at every validation by ``restore.callbacks.WallClock``)
and ``.hydra/config.yaml``. From that config it rebuilds the run's own validation set, the
same hold-out images (with the same seeded degradation for clean-image sets), and scores a
classical baseline on it (``--baseline PRESET``, a ``conf/model`` preset: ``bm3d``, told the
true sigma and restored in ``--workers`` processes, or a low-light one such as
``histogram_equalization``, or a trained model's ``.ckpt``; the score is kept in
``<PRESET>_holdout.json`` next to the plot and reused when present), so the horizontal line is
the baseline on exactly the images the curve was measured on. ``--ckpt FILE`` adds the final
checkpoint's score on the same images in fp32 (kept in ``ckpt_holdout.json``): the validations
during training ran under the run's own precision (bf16 autocast for the denoising recipe).

    python benchmarks/learning_curve.py RUN --out docs/results/run/curve.png --baseline bm3d --ckpt weights/model.ckpt
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import hydra
import matplotlib
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from restore.cli import restore_options_of  # noqa: E402
from restore.evaluation import progress_bars, score_set  # noqa: E402
from restore.models.loading import build_model, load_model, load_preset  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(metrics_csv: Path) -> list[dict]:
    """The validation rows of a CSV log: step, minutes, PSNR of the output and of the noisy input."""
    points = []
    with metrics_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("val/psnr") and row.get("time/minutes"):
                points.append(
                    {
                        "step": int(row["step"]),
                        "minutes": float(row["time/minutes"]),
                        "psnr": float(row["val/psnr"]),
                        "input_psnr": float(row["val/input_psnr"]),
                    }
                )
    return points


def holdout_score(run_dir: Path, model: torch.nn.Module, workers: int) -> dict:
    """A model's mean PSNR/SSIM on the run's first validation set, rebuilt from the run's config
    (the same images, the same seeded degradation), scored through the evaluation's own path in fp32."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("validate")
    spec, dataset = datamodule.val_specs[0], datamodule.val_datasets[0]
    if getattr(model, "needs_noise_level", False) and spec.sigma is None:
        raise SystemExit(f"{spec.label}: the run's degradation is not Gaussian noise, whose sigma this baseline needs")
    with progress_bars() as progress:
        row, _ = score_set(
            model.eval(),
            spec,
            dataset,
            device=torch.device("cpu"),
            restore_options=restore_options_of({}),
            num_workers=workers,
            progress=progress,
        )
    result = {"set": spec.label, "images": row.images, "psnr": row.psnr, "ssim": row.ssim}
    return result if spec.sigma is None else {**result, "sigma": spec.sigma}  # a level or a [low, high] range


def read_legs(run_dir: Path) -> list[dict]:
    """Every validation of a run, in step order, each with the ``leg`` (0, 1, ...) that logged it.

    A resumed run logs into a new ``csv/version_N``: one curve over every leg (its minutes
    continue across legs when the run has a time budget)."""
    logs = sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not logs:
        raise SystemExit(f"{run_dir}: no csv/version_*/metrics.csv (train with logger=csv)")
    points = [{**point, "leg": leg} for leg, log in enumerate(logs) for point in read_curve(log)]
    if not points:
        raise SystemExit(f"{run_dir}: no rows with both val/psnr and time/minutes in {len(logs)} log(s)")
    return sorted(points, key=lambda point: point["step"])


def cached_score(path: Path, compute) -> dict:
    """The score kept in ``path``, computed (and kept) when the file is absent."""
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def plot(points: list[dict], baseline: dict | None, final: dict | None, title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    minutes = [p["minutes"] for p in points]
    legs = sorted({p["leg"] for p in points})
    for leg in legs:  # a resumed run: each leg in its own colour, so the resume shows
        shown = [p for p in points if p["leg"] == leg]
        label = "MAXIM (this run), hold-out PSNR" + (f", leg {leg + 1}" if len(legs) > 1 else "")
        ax.plot([p["minutes"] for p in shown], [p["psnr"] for p in shown], marker="o", label=label)
    if final is not None:
        ax.plot(
            [minutes[-1]],
            [final["psnr"]],
            marker="*",
            markersize=14,
            linestyle="none",
            color="tab:green",
            label=f"{final['label']}, fp32: {final['psnr']:.2f} dB",
        )
    if baseline is not None:
        label = f"{baseline['label']}, same images: {baseline['psnr']:.2f} dB"
        ax.axhline(baseline["psnr"], color="tab:red", linestyle="--", label=label)
    ax.axhline(
        points[0]["input_psnr"], color="gray", linestyle=":", label=f"degraded input: {points[0]['input_psnr']:.2f} dB"
    )
    ax.set_xlabel("wall-clock minutes since the start of training")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a train.py run directory (holds .hydra/ and csv/)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument(
        "--baseline", help="a conf/model preset (bm3d, clahe, ...) or a .ckpt, scored on the same hold-out images"
    )
    parser.add_argument("--baseline-label", help="the baseline's name in the legend (default: the preset's)")
    parser.add_argument("--workers", type=int, default=2, help="processes restoring with a baseline such as BM3D")
    parser.add_argument("--ckpt", type=Path, help="also score this checkpoint on the hold-out in fp32 (a star)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for --ckpt")
    parser.add_argument("--title", default="Hold-out PSNR while training")
    args = parser.parse_args(argv)
    points = read_legs(args.run_dir)
    baseline = final = None
    if args.baseline:
        checkpoint = Path(args.baseline)
        if checkpoint.suffix == ".ckpt":  # another trained model, e.g. the one this run started from
            model, name = load_model(ckpt=checkpoint), checkpoint.stem
        else:
            model, name = build_model(load_preset(args.baseline)), args.baseline
        workers = args.workers if getattr(model, "restores_in_workers", False) else 0
        torch.set_num_threads(1 if workers else args.threads)  # BM3D: one image per worker process
        baseline = cached_score(
            args.out.with_name(f"{name}_holdout.json"), lambda: holdout_score(args.run_dir, model, workers)
        )
        baseline["label"] = args.baseline_label or name
    if args.ckpt is not None:
        torch.set_num_threads(args.threads)
        final = cached_score(
            args.out.with_name("ckpt_holdout.json"),
            lambda: {**holdout_score(args.run_dir, load_model(ckpt=args.ckpt), 0), "label": args.ckpt.name},
        )
    plot(points, baseline, final, args.title, args.out)
    last = points[-1]
    print(f"{len(points)} validations; last: step {last['step']}, {last['minutes']:.1f} min, {last['psnr']:.2f} dB")
    for name, result in ((args.baseline, baseline), (args.ckpt, final)):
        if result is not None:
            print(f"{name} on the same {result['images']} hold-out images: {result['psnr']:.2f} dB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
