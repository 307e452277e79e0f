"""MAXIM-3S here against a straightforward PyTorch port, side by side.

The port is vztu/maxim-pytorch's ``MAXIM_dns_3s`` (``maxim_pytorch/maxim_torch.py``):
a line-by-line translation of the official Flax model that uses einops
rearranges, a hand-written LayerNorm and NCHW/NHWC permutes around every
block. It is never vendored: fetch the repository yourself and pass the file,

    git clone https://github.com/vztu/maxim-pytorch /tmp/maxim-pytorch
    python benchmarks/bench_port.py --port-file /tmp/maxim-pytorch/maxim_pytorch/maxim_torch.py

Both models are built in ONE process with random weights (speed does not
depend on their values), run on the same input with the same thread count,
and timed in alternating order (port, ours, ours, port, ...) so that a change
in machine load hits both alike. Their multiply-adds are counted with
FlopCounterMode to show they do the same arithmetic. The ratio reported is
port time / our time, on the medians. Results go to
``benchmarks/results/<machine>_port.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import torch
from common import (
    RESULTS,
    add_machine_arguments,
    load_average,
    machine_name,
    run_facts,
    summary,
    time_repeats,
    use_allocator,
)
from rich.progress import Progress
from torch.utils.flop_counter import FlopCounterMode

from restore.models.loading import build_preset

PORT_CLASS = "MAXIM_dns_3s"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--port-file", type=Path, help="path to vztu/maxim-pytorch's maxim_pytorch/maxim_torch.py")
    parser.add_argument("--sizes", default="128,256", help="comma-separated square sizes (multiples of 64)")
    add_machine_arguments(parser, repeats=5)
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the .json goes")
    args = parser.parse_args(argv)
    if args.port_file is None:
        parser.error(
            "--port-file is required: the straightforward port is not part of this repository. Fetch it with\n"
            "  git clone https://github.com/vztu/maxim-pytorch /tmp/maxim-pytorch\n"
            "and pass --port-file /tmp/maxim-pytorch/maxim_pytorch/maxim_torch.py"
        )
    if not args.port_file.is_file():
        parser.error(f"--port-file: {args.port_file} does not exist (expected maxim_pytorch/maxim_torch.py)")
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error("--sizes: expected comma-separated integers")
    if not args.sizes or any(s <= 0 or s % 64 for s in args.sizes):
        parser.error("--sizes: sizes must be positive multiples of 64")
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be at least 1")
    return args


def load_port(path: Path) -> torch.nn.Module:
    """Import the port's file as a module and build its ``MAXIM_dns_3s``."""
    spec = importlib.util.spec_from_file_location("maxim_port", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        raise SystemExit(f"{path}: the port needs '{error.name}' (pip install {error.name})") from error
    except SyntaxError as error:
        raise SystemExit(f"{path}: not a Python file ({error})") from error
    if not hasattr(module, PORT_CLASS):
        raise SystemExit(f"{path}: no class {PORT_CLASS} (expected vztu/maxim-pytorch's maxim_pytorch/maxim_torch.py)")
    return getattr(module, PORT_CLASS)()


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def main(argv=None) -> int:
    args = parse_args(argv)
    use_allocator(args.malloc)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"port": load_port(args.port_file).eval(), "ours": build_preset("maxim_3s").eval()}
    parameters = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    load_before = load_average()
    rows = []
    with Progress() as progress:
        task = progress.add_task("sizes", total=len(args.sizes))
        for size in args.sizes:
            progress.update(task, description=f"{size}^2")
            x = torch.rand(1, 3, size, size)
            macs = {k: count_macs(m, x) for k, m in models.items()}  # also the warm-up pass
            seconds = {k: [] for k in models}
            for r in range(args.repeats):
                for key in ("port", "ours") if r % 2 == 0 else ("ours", "port"):
                    with torch.no_grad():
                        seconds[key] += time_repeats(lambda key=key, x=x: models[key](x), 1)
            rows.append(
                {
                    "size": size,
                    "macs": macs,
                    "port": summary(seconds["port"]),
                    "ours": summary(seconds["ours"]),
                    "ratio_median": statistics.median(seconds["port"]) / statistics.median(seconds["ours"]),
                    "ratio_min": min(seconds["port"]) / min(seconds["ours"]),
                }
            )
            progress.advance(task)

    name = machine_name(args.name)
    results = {
        **run_facts(name, args, argv, load_before),
        "port": f"vztu/maxim-pytorch {PORT_CLASS} ({args.port_file.name})",
        "parameters": parameters,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{name}_port.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{results['cpu']}, {args.threads} threads, fp32, batch 1, forward; load {load_before} -> {load_average()}")
    print("| size | port GMACs | ours GMACs | port s (median) | ours s (median) | speed-up (median) | speed-up (min) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['size']}² | {row['macs']['port'] / 1e9:.1f} | {row['macs']['ours'] / 1e9:.1f} | "
            f"{row['port']['seconds_median']:.2f} | {row['ours']['seconds_median']:.2f} | "
            f"{row['ratio_median']:.2f}x | {row['ratio_min']:.2f}x |"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
