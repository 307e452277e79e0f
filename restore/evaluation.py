"""Benchmark suites: restore every test set of a task that is on disk and score it as its paper did.

``python evaluate.py`` (Hydra, ``conf/evaluate.yaml``) calls :func:`evaluate`:

1. :func:`plan_suite` turns ``conf/suite/<task>.yaml`` into rows: one per test split of each set
   (``SOTS indoor``, ``SOTS outdoor``), one per noise level for the synthetic Gaussian sets
   (``CBSD68 σ25``); it keeps the rows ``datasets=`` picks and lists sets whose folder
   ``<data_root>/<Name>`` does not exist as skipped;
2. the model named by ``ckpt=``, ``weights=`` or ``model=`` is loaded;
3. :func:`score_set` restores each image through ``restore.inference.restore_image`` and scores
   it under the set's protocol (``restore.data.benchmarks``); a row holds the means over images;
4. a suite with ``average: true`` gets an ``average`` row, the mean of its per-set means, when
   every one of its sets was scored (a partial average would not be the papers' number).

Everything that can be refused is refused before the first image is restored: config values,
the results file, the model, and the pairing of every dataset found.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.utils.data import DataLoader, Dataset

from restore.cli import model_from_config, restore_options_of, wide_console
from restore.data.benchmarks import get_benchmark
from restore.data.datamodule import DatasetSpec
from restore.data.io import write_image
from restore.data.paired import RestorationDataset
from restore.errors import ConfigError
from restore.inference import pick_device, precision_name, restore_image, to_inference
from restore.metrics import score
from restore.report import (
    AVERAGE,
    ImageScore,
    Report,
    Row,
    Skipped,
    check_results_path,
    log_report,
    print_report,
    write_per_image,
    write_results,
)

SIGMA = "σ"


@dataclass(frozen=True)
class Plan:
    sets: list[DatasetSpec]  # present on disk and picked, in the suite's order
    skipped: list[Skipped]
    average_of: list[str]  # the row labels whose mean is the average row; empty: no average row


def plan_suite(
    suite: Mapping[str, Any],
    data_root: str | Path,
    datasets: Sequence[str] | str | None = None,
    sigma: float | Sequence[float] | None = None,
) -> Plan:
    """The rows of ``suite`` (a ``conf/suite/*.yaml``) under ``data_root``, restricted to ``datasets``
    (set names or row labels, case-insensitive) and, for clean-image sets, to the noise levels ``sigma``."""
    suite_name = suite["name"]
    names = [get_benchmark(name).name for name in suite["sets"]]
    clean = [name for name in names if get_benchmark(name).kind == "clean"]
    sigmas = _sigmas(suite, sigma, clean)
    rows: list[DatasetSpec] = []
    for name in names:
        benchmark = get_benchmark(name)
        if benchmark.kind == "input_only":
            raise ConfigError(f"suite {suite_name}: {name} has no public targets and cannot be scored here")
        root = Path(data_root) / name
        splits = benchmark.test_splits
        for split in splits:
            if benchmark.kind == "clean":
                rows += [_noisy(name, split, root, level) for level in sigmas]
            else:
                rows.append(DatasetSpec(name, split, root, label=name if len(splits) == 1 else f"{name} {split}"))
    average_of = [row.label for row in rows] if suite.get("average", False) else []
    picked = _pick(rows, datasets, suite_name, names)
    present = [row for row in picked if row.root.exists()]
    skipped = {row.name: Skipped(row.name, str(row.root)) for row in picked if not row.root.exists()}
    return Plan(present, list(skipped.values()), average_of)


def _sigmas(suite: Mapping[str, Any], sigma, clean: list[str]) -> list[float]:
    if sigma is None:
        if clean and not suite.get("sigmas"):
            raise ConfigError(
                f"suite {suite['name']}: {', '.join(clean)} need noise levels: give sigmas: [...] or sigma="
            )
        sigma = suite.get("sigmas", [])
    elif not clean:
        raise ConfigError(f"sigma={sigma} sets the noise of synthetic Gaussian sets; suite={suite['name']} has none")
    levels = list(sigma) if isinstance(sigma, (list, tuple, ListConfig)) else [sigma]
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level <= 255:
            raise ConfigError(f"sigma={sigma}: noise levels are numbers in (0, 255] on the 0-255 scale, e.g. sigma=25")
    return [float(level) for level in levels]


def _noisy(name: str, split: str, root: Path, sigma: float) -> DatasetSpec:
    # Unclipped Gaussian noise, as the synthetic denoising literature adds it.
    noise = {"name": "gaussian_noise", "sigma": sigma}
    return DatasetSpec(name, split, root, degradation=noise, label=f"{name} {SIGMA}{sigma:g}")


def _pick(rows: list[DatasetSpec], datasets, suite_name: str, names: list[str]) -> list[DatasetSpec]:
    if datasets is None:
        return rows
    wanted = [datasets] if isinstance(datasets, str) else list(datasets)
    picked = set()
    for entry in wanted:
        key = str(entry).lower()
        matches = [row.label for row in rows if key in (row.name.lower(), row.label.lower())]
        if not matches:
            labels = [row.label for row in rows if row.label != row.name and get_benchmark(row.name).kind != "clean"]
            also = f" (or one split: {', '.join(labels)})" if labels else ""
            raise ConfigError(
                f"datasets={list(wanted)}: {entry!r} is not in suite={suite_name}; its datasets: "
                f"{', '.join(names)}{also}"
            )
        picked.update(matches)
    return [row for row in rows if row.label in picked]


# ---------------------------------------------------------------------------------------------
# Running


def score_set(
    model: nn.Module,
    evalset: DatasetSpec,
    dataset: RestorationDataset,
    *,
    device: torch.device,
    restore_options: Mapping[str, Any],
    image_dir: Path | None = None,
    save_bits: int = 8,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> tuple[Row, list[ImageScore]]:
    """Restore and score every image of one set: its row (means over images) and per-image scores.

    ``seconds`` is the wall time for the set: reading, restoring, scoring and saving.
    """
    protocol = evalset.protocol
    gray = dataset.benchmark.gray
    task = progress.add_task(evalset.label, total=len(dataset)) if progress is not None else None
    scores: list[ImageScore] = []
    start = time.perf_counter()
    if getattr(model, "needs_noise_level", False) and evalset.sigma is not None:
        model.sigma = evalset.sigma  # a synthetic set's own level; real noise keeps the one given
    in_workers = getattr(model, "restores_in_workers", False) and num_workers > 0
    source = RestoredInWorkers(dataset, model, restore_options) if in_workers else dataset
    loader = DataLoader(source, batch_size=1, num_workers=num_workers)  # full-size images of different sizes
    for item in loader:
        name = item["name"][0]
        if in_workers:
            restored = item["restored"].to(device)
        else:
            restored = restore_image(model, item["input"].to(device), **restore_options)  # (1, C, H, W)
        try:
            values = score(restored, item["target"].to(device), protocol)
        except ValueError as err:
            raise ConfigError(f"{evalset.label}, image {name}: cannot score it ({err})") from None
        scores.append(ImageScore(evalset.label, name, float(values["psnr"][0]), float(values["ssim"][0])))
        if image_dir is not None:
            image = restored[0].mean(dim=0) if gray else restored[0]  # gray sets are saved as 1-channel PNGs
            write_image(image_dir / evalset.folder / f"{name}.png", image, bits=save_bits)
        if task is not None:
            progress.advance(task)
    seconds = time.perf_counter() - start
    row = Row(
        dataset=evalset.label,
        images=len(scores),
        psnr=statistics.fmean(s.psnr for s in scores),
        ssim=statistics.fmean(s.ssim for s in scores),
        protocol=protocol.describe(),
        seconds=round(seconds, 3),
    )
    return row, scores


def progress_bars(console: Console | None = None) -> Progress:
    """One bar per set: images done, time spent and time left (BM3D takes minutes per set)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console)


class RestoredInWorkers(Dataset):
    """The items of ``dataset`` with ``"restored"`` added, restored in the loader's worker processes.

    For CPU models that restore one image at a time and use one core each (BM3D): with
    ``num_workers`` workers, that many images are restored at once.
    """

    def __init__(self, dataset: RestorationDataset, model: nn.Module, restore_options: Mapping[str, Any]):
        self.dataset, self.model, self.restore_options = dataset, model, dict(restore_options)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["restored"] = restore_image(self.model, item["input"][None], **self.restore_options)[0]
        return item


def check_noise_levels(model: nn.Module, description: str, sets: Sequence[DatasetSpec]) -> None:
    """A model told the noise level (BM3D) restores real noise only at a level it is given."""
    unknown = [evalset.label for evalset in sets if evalset.sigma is None]
    if getattr(model, "needs_noise_level", False) and unknown and getattr(model, "sigma", None) is None:
        raise ConfigError(
            f"{description} denoises with a known Gaussian noise level, and {', '.join(unknown)} "
            "has real noise of unknown level; pick the Gaussian sets, e.g. datasets=[CBSD68,Kodak24], "
            "or give the level to assume, e.g. model.sigma=10"
        )


def average_row(rows: list[Row], average_of: list[str]) -> tuple[Row | None, str | None]:
    """The mean of the per-set means over ``average_of``, or None and the reason when one is missing."""
    if not average_of:
        return None, None
    by_label = {row.dataset: row for row in rows}
    missing = [label for label in average_of if label not in by_label]
    if missing:
        return None, (
            f"no {AVERAGE} row: it is the mean over all of {', '.join(average_of)}, "
            f"and {', '.join(missing)} {'was' if len(missing) == 1 else 'were'} not scored"
        )
    members = [by_label[label] for label in average_of]
    protocols = sorted({row.protocol for row in members})
    row = Row(
        dataset=AVERAGE,
        images=sum(row.images for row in members),
        psnr=statistics.fmean(row.psnr for row in members),
        ssim=statistics.fmean(row.ssim for row in members),
        protocol=f"{' / '.join(protocols)}; mean of {len(members)} set means",
        seconds=round(sum(row.seconds for row in members), 3),
    )
    return row, None


# ---------------------------------------------------------------------------------------------
# The command


def _check_count(cfg: Mapping[str, Any], key: str, minimum: int) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value}: give an integer >= {minimum}")
    return value


def evaluate(cfg: DictConfig, console: Console | None = None) -> Report:
    """Run ``python evaluate.py``: score the suite, print the table, write the results.

    Writes ``results.json`` and ``per_image.csv`` into ``paths.output_dir`` (the Hydra run dir),
    the ``results=`` file when given, the restored images when ``save_images=true``, and sends
    the table to ``logger`` when one is configured. Returns the report.
    """
    console = console or wide_console()
    restore_options = restore_options_of(cfg)
    seed, num_workers = _check_count(cfg, "seed", 0), _check_count(cfg, "num_workers", 0)
    if cfg.save_bits not in (8, 16):
        raise ConfigError(f"save_bits={cfg.save_bits}: give 8 or 16")
    results = check_results_path(cfg.results) if cfg.results is not None else None
    output_dir = Path(cfg.paths.output_dir)
    for record in (output_dir / "results.json", output_dir / "per_image.csv"):
        if record.exists():
            raise FileExistsError(
                f"{record} exists: the run dir holds an earlier evaluation; choose another hydra.run.dir"
            )
    image_dir = output_dir / "images" if cfg.save_images else None
    if image_dir is not None and image_dir.exists() and any(image_dir.iterdir()):
        raise FileExistsError(f"{image_dir} holds images already; choose another paths.output_dir")
    model, description = model_from_config(cfg)
    device = pick_device(cfg.device)
    suite = OmegaConf.to_container(cfg.suite, resolve=True)
    plan = plan_suite(suite, cfg.data_root, cfg.datasets, cfg.sigma)
    if not plan.sets:
        looked = ", ".join(skip.path for skip in plan.skipped)
        raise ConfigError(
            f"nothing to evaluate: no dataset of suite={suite['name']} under data_root={cfg.data_root} "
            f"(looked for {looked}); put datasets there (data/README.md) or set data_root=DIR"
        )
    check_noise_levels(model, description, plan.sets)
    model = to_inference(model, device)
    datasets = [evalset.build(seed) for evalset in plan.sets]  # pairs every set before any work
    logger = _make_logger(cfg)

    # every row of a run is computed in the same precision: the table's title says which
    precision = precision_name(restore_options["autocast"], device)
    report = Report(suite=suite["name"], model=f"{description}, in {precision}", skipped=plan.skipped)
    report.config = OmegaConf.to_container(cfg, resolve=True)
    with progress_bars(console) as progress:
        for evalset, dataset in zip(plan.sets, datasets):
            row, scores = score_set(
                model,
                evalset,
                dataset,
                device=device,
                restore_options=restore_options,
                image_dir=image_dir,
                save_bits=cfg.save_bits,
                num_workers=num_workers,
                progress=progress,
            )
            report.rows.append(row)
            report.images += scores
    average, note = average_row(report.rows, plan.average_of)
    if average is not None:
        report.rows.append(average)
    if note is not None:
        report.notes.append(note)

    print_report(report, console)
    written = [write_results(report, output_dir / "results.json")]
    written.append(write_per_image(report, output_dir / "per_image.csv"))
    if results is not None:
        written.append(write_results(report, results))
    console.print("wrote " + ", ".join(str(path) for path in written))
    if logger is not None:
        log_report(report, logger)
    return report


def _make_logger(cfg: DictConfig):
    """The configured Lightning logger, its run started now: a login or setup problem shows
    before the evaluation, not after it."""
    if cfg.get("logger") is None:
        return None
    import hydra

    logger = hydra.utils.instantiate(cfg.logger)
    _ = logger.experiment
    return logger
