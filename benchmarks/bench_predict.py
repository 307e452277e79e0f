"""``python -m restore.predict`` as a user runs it: precision and allocator side by side.

One real photo (Kodak24 ``kodim01`` resized to ``--size``) with white Gaussian noise of sigma 25,
clipped and saved as an 8-bit PNG, is restored by the shipped denoiser in fresh processes,
one per variant and round, in turns (so the machine's drift hits every variant alike):

- ``--autocast``: ``fp32``, ``bf16`` and ``auto`` (what the CPU's flags choose);
- ``--malloc``: ``retain`` (the commands' default: glibc keeps freed memory) and ``default``
  (``RESTORE_MALLOC=default``: glibc as it is).

Per run: wall-clock, user and system CPU seconds, minor page faults and the peak resident size
of the child (``getrusage``), and the PSNR of the output against the clean photo. Writes
``benchmarks/results/<machine>_predict.json`` and prints a Markdown table of medians.

    python benchmarks/bench_predict.py --size 4000x3000 --autocast fp32 --malloc retain default
    python benchmarks/bench_predict.py --size 500x500 --autocast fp32 bf16 auto --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load_average, machine_name, run_facts, write_results  # noqa: E402

SHIPPED = ROOT / "weights" / "maxim1s_w32_cbsd432_sigma25.ckpt"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="500x500", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--autocast", nargs="+", default=["fp32", "bf16", "auto"], choices=("fp32", "bf16", "auto"))
    parser.add_argument("--malloc", nargs="+", default=["retain"], choices=("retain", "default"))
    parser.add_argument("--rounds", type=int, default=1, help="turns over all variants")
    parser.add_argument("--ckpt", type=Path, default=SHIPPED)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--threads", type=int, default=2, help="recorded only: predict uses torch's default")
    parser.add_argument("--name", help="machine name for the result file (default: the host name)")
    return parser.parse_args(argv)


def make_photo(data_root: Path, size: str, folder: Path) -> tuple[Path, np.ndarray]:
    width, height = (int(v) for v in size.lower().split("x"))
    clean = cv2.imread(str(data_root / "Kodak24" / "kodim01.png"))
    if clean is None:
        raise SystemExit(f"{data_root / 'Kodak24' / 'kodim01.png'} is missing: give --data-root")
    clean = cv2.resize(clean, (width, height), interpolation=cv2.INTER_CUBIC)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    path = folder / "input" / "photo.png"
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), noisy)
    return path, clean


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def run_once(photo: Path, clean: np.ndarray, ckpt: Path, autocast: str, malloc: str, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["RESTORE_MALLOC"] = malloc
    command = [
        sys.executable, "-m", "restore.predict", f"input={photo}", f"output={out}", f"ckpt={ckpt}",
        f"autocast={autocast}", "device=cpu",
    ]  # fmt: skip
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"predict failed:\n{log.read_text()[-3000:]}")
    restored = cv2.imread(str(out / "photo.png"))
    return {
        "autocast": autocast,
        "malloc": malloc,
        "precision": log.read_text().strip().splitlines()[-1].rsplit(" in ", 1)[-1],
        "wall_s": round(wall, 2),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "minor_faults": usage.ru_minflt,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "psnr": round(psnr(restored, clean), 4),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder:
        photo, clean = make_photo(args.data_root, args.size, Path(folder))
        for round_index in range(args.rounds):
            for malloc in args.malloc:
                for autocast in args.autocast:
                    out = Path(folder) / f"out-{round_index}-{malloc}-{autocast}"
                    runs.append(run_once(photo, clean, args.ckpt, autocast, malloc, out))
                    print(runs[-1], flush=True)
    name = machine_name(args.name)
    facts = run_facts(name, args, argv, load_before)
    facts["malloc"] = {"variants": args.malloc}
    path = write_results(name, "predict", {**facts, "size": args.size, "ckpt": str(args.ckpt), "runs": runs})
    print("\n| malloc | autocast | precision | wall s | user s | sys s | minor faults | peak RSS MiB | PSNR |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for malloc in args.malloc:
        for autocast in args.autocast:
            mine = [r for r in runs if r["malloc"] == malloc and r["autocast"] == autocast]
            keys = ("wall_s", "user_s", "sys_s", "minor_faults", "peak_rss_mib")
            median = {k: statistics.median(r[k] for r in mine) for k in keys}
            print(
                f"| {malloc} | {autocast} | {mine[0]['precision']} | {median['wall_s']:.1f} | {median['user_s']:.1f} "
                f"| {median['sys_s']:.1f} | {median['minor_faults']:.0f} | {median['peak_rss_mib']:.0f} "
                f"| {mine[0]['psnr']:.3f} |"
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
