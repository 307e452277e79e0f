"""The results of an evaluation and every place they go: console, JSON / CSV / Markdown, loggers.

One table, always the same columns: dataset, images, PSNR, SSIM, protocol, seconds. The JSON
holds ``{"rows": [...], "skipped": [...], "config": {...}}``; each row is
``{"dataset", "images", "psnr", "ssim", "protocol", "seconds"}`` (PSNR and SSIM are means over
the set's images; a PSNR of infinity, identical images, is written as null).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = ("dataset", "images", "psnr", "ssim", "protocol", "seconds")
RESULT_FORMATS = (".json", ".csv", ".md")
AVERAGE = "average"


@dataclass(frozen=True)
class Row:
    """One line of the table: a dataset's means over its images, or the suite's average."""

    dataset: str
    images: int
    psnr: float
    ssim: float
    protocol: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {key: _finite_or_none(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ImageScore:
    dataset: str
    image: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Skipped:
    """A dataset of the suite that is not on disk, and where it was looked for."""

    dataset: str
    path: str


@dataclass
class Report:
    suite: str
    model: str  # what was evaluated, e.g. "ckpt=last.ckpt"
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    images: list[ImageScore] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. why there is no average row
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": [row.as_dict() for row in self.rows],
            "skipped": [asdict(skip) for skip in self.skipped],
            "config": self.config,
        }


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ---------------------------------------------------------------------------------------------
# Console


def print_report(report: Report, console: Console) -> None:
    table = Table(title=f"suite={report.suite} · {report.model}", title_justify="left")
    table.add_column("dataset")
    table.add_column("images", justify="right")
    table.add_column("PSNR", justify="right")
    table.add_column("SSIM", justify="right")
    table.add_column("protocol")
    table.add_column("seconds", justify="right")
    for row in report.rows:
        style = "bold" if row.dataset == AVERAGE else None
        cells = (row.dataset, str(row.images), f"{row.psnr:.3f}", f"{row.ssim:.4f}", row.protocol, f"{row.seconds:.1f}")
        table.add_row(*cells, style=style)
    console.print(table)
    for skip in report.skipped:
        console.print(f"skipped {skip.dataset}: {skip.path} does not exist (see data/README.md for its layout)")
    for note in report.notes:
        console.print(note)


# ---------------------------------------------------------------------------------------------
# Files


def check_results_path(path: str | Path) -> Path:
    """The ``results=`` file: a known extension and no existing file, checked before any work."""
    path = Path(path)
    if path.suffix.lower() not in RESULT_FORMATS:
        raise ValueError(f"results={path}: the format comes from the extension; use .json, .csv or .md")
    if path.exists():
        raise FileExistsError(f"results={path} exists; choose another file (results are never overwritten)")
    return path


def write_results(report: Report, path: str | Path) -> Path:
    """The table as JSON, CSV or Markdown (by extension), into a file that must not exist yet."""
    path = check_results_path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(report.as_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    elif suffix == ".csv":
        text = _csv([row.as_dict() for row in report.rows], COLUMNS)
    else:
        text = _markdown(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", newline="") as file:  # "x": never replaces a file
        file.write(text)
    return path


def write_per_image(report: Report, path: str | Path) -> Path:
    """Every image's PSNR and SSIM: ``dataset, image, psnr, ssim``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", newline="") as file:
        file.write(_csv([asdict(score) for score in report.images], ("dataset", "image", "psnr", "ssim")))
    return path


def _csv(records: list[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _markdown(report: Report) -> str:
    lines = [
        f"suite={report.suite} · {report.model}",
        "",
        "| dataset | images | PSNR | SSIM | protocol | seconds |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in report.rows:
        lines.append(
            f"| {row.dataset} | {row.images} | {row.psnr:.2f} | {row.ssim:.4f} | {row.protocol} | {row.seconds:.1f} |"
        )
    if report.skipped:
        lines.append("")
        lines += [f"- skipped {skip.dataset}: {skip.path} does not exist" for skip in report.skipped]
    if report.notes:
        lines += ["", *report.notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Loggers


def log_report(report: Report, logger) -> None:
    """Send the table to a Lightning logger: a table where the logger has them (wandb: a
    ``wandb.Table`` under ``evaluate/<suite>``, and the per-image scores under
    ``evaluate/<suite>/images``), and each row's PSNR/SSIM as metrics."""
    key = f"evaluate/{report.suite}"
    metrics = {}
    for row in report.rows:
        metrics[f"{key}/{row.dataset}/psnr"] = row.psnr
        metrics[f"{key}/{row.dataset}/ssim"] = row.ssim
    logger.log_metrics(metrics)
    if hasattr(logger, "log_table"):
        rows = [[getattr(row, column) for column in COLUMNS] for row in report.rows]
        logger.log_table(key=key, columns=list(COLUMNS), data=rows)
        images = [[s.dataset, s.image, s.psnr, s.ssim] for s in report.images]
        logger.log_table(key=f"{key}/images", columns=["dataset", "image", "psnr", "ssim"], data=images)
    logger.finalize("success")
    finish = getattr(getattr(logger, "experiment", None), "finish", None)  # wandb: close the run
    if callable(finish):
        finish()
