"""CPU float32 inference paths side by side, and a training step, optionally against another checkout.

Variants of one preset's forward pass (batch 1, no autograd):

- ``plain``: the model as built, eager PyTorch ops;
- ``onednn``: after ``restore.models.fast.for_cpu_inference`` (what predict and
  evaluate run on CPU);
- ``compile``: ``torch.compile`` of the plain model (its compile time is reported
  apart; inductor emits the same oneDNN kernels itself);
- ``before``: the plain model of the checkout given by ``--before DIR`` (for
  example ``git worktree add /tmp/before <commit>``), as that code runs it.

``--train`` adds a training step (forward, the paper's loss, backward, Adam) at
``--train-patch`` x ``--train-batch`` for this checkout and, with ``--before``,
the other one. Each measurement runs in a fresh process, in turns over
``--rounds`` rounds so that the machine's drift hits every variant alike;
the headline is the median over all timed passes. Writes
``benchmarks/results/<machine>_cpu_paths.json`` and prints a Markdown table.

    python benchmarks/bench_cpu_paths.py --model maxim_3s --size 256 --before /tmp/before --train
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = ("plain", "onednn", "compile", "before")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="maxim_3s", help="preset (conf/model/*.yaml)")
    parser.add_argument("--size", type=int, default=256, help="square input size for inference")
    parser.add_argument(
        "--variants", default="plain,onednn,compile", help=f"comma-separated, of {', '.join(INFERENCE)}"
    )
    parser.add_argument("--before", type=Path, help="another checkout of this repository to measure beside this one")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of turns over the variants")
    parser.add_argument("--train", action="store_true", help="also time a training step of each checkout")
    parser.add_argument("--train-model", default="maxim_1s", help="preset for the training step")
    parser.add_argument("--train-features", type=int, default=32, help="model.features for the training step")
    parser.add_argument("--train-patch", type=int, default=64)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per process (after a warm-up)")
    parser.add_argument("--malloc", choices=("retain", "default"), default="retain", help="as in bench_model.py")
    parser.add_argument("--name", help="machine name for the result files (default: the host name)")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/<name>_cpu_paths.json)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TREE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(kind: str, tree: str, args: argparse.Namespace) -> dict:
    """Runs in a fresh process with ``tree`` first on sys.path (``common`` is not imported
    here: it imports this checkout's ``restore``); returns its timings."""
    sys.path.insert(0, tree)
    import torch

    from restore.models.loading import build_preset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if kind.startswith("train"):
        from restore.losses import MultiStageLoss

        model = build_preset(args.train_model, features=args.train_features).train()
        loss_fn, optimizer = MultiStageLoss(), torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(args.train_batch, 3, args.train_patch, args.train_patch)
        target = torch.rand_like(x)

        def run():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), target)[0].backward()
            optimizer.step()

    else:
        model = build_preset(args.model).eval()
        if kind == "onednn":
            from restore.models.fast import for_cpu_inference

            for_cpu_inference(model)
        x = torch.rand(1, 3, args.size, args.size)
        forward = torch.compile(model) if kind == "compile" else model

        def run():
            with torch.no_grad():
                forward(x)

    start = time.perf_counter()
    run()  # warm-up (the compilation, for compile)
    warmup = time.perf_counter() - start
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return {"warmup_seconds": warmup, "seconds": seconds}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return
    from common import load_average, machine_name, run_facts, use_allocator, write_results

    use_allocator(args.malloc)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(INFERENCE))
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(INFERENCE)})")
    if args.before is not None:
        if not (args.before / "restore" / "models").is_dir():
            sys.exit(f"--before {args.before}: not a checkout of this repository (no restore/models there)")
        variants = [*variants, "before"] if "before" not in variants else variants
    elif "before" in variants:
        sys.exit("--variants before needs --before DIR")
    jobs = [(v, str(args.before if v == "before" else ROOT)) for v in variants if v != "compile"]
    if args.train:
        jobs += [("train", str(ROOT))] + ([("train_before", str(args.before))] if args.before else [])
    load_before = load_average()
    passthrough = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("model", "size", "threads", "repeats", "train_model", "train_features", "train_patch", "train_batch")
    ]
    timings: dict[tuple[str, str], list[dict]] = {job: [] for job in jobs}
    # compile pays minutes per process: one process, all its passes, before the turns.
    if "compile" in variants:
        timings[("compile", str(ROOT))] = [
            _run(("compile", str(ROOT)), [*passthrough, f"--repeats={args.rounds * args.repeats}"])
        ]
    for round_ in range(args.rounds):
        for job in jobs if round_ % 2 == 0 else reversed(jobs):  # neither goes first every time
            timings[job].append(_run(job, passthrough))
            print(f"round {round_ + 1}/{args.rounds} {job[0]} ({job[1]}): {timings[job][-1]['seconds']}", flush=True)
    rows = []
    for (kind, tree), runs in timings.items():
        seconds = [s for run in runs for s in run["seconds"]]
        rows.append(
            {
                "variant": _label(kind),
                "tree": tree,
                "median_seconds": statistics.median(seconds),
                "seconds": seconds,
                "warmup_seconds": [run["warmup_seconds"] for run in runs],
            }
        )
    name = machine_name(args.name)
    out = {**run_facts(name, args, argv, load_before), "rows": rows}
    path = write_results(name, "cpu_paths", out, args.out)
    print(
        f"\n{args.model} {args.size}x{args.size} fp32 inference; training {args.train_model} "
        f"w{args.train_features} {args.train_patch}x{args.train_patch} x{args.train_batch}\n"
    )
    print("| variant | median s | passes |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['median_seconds']:.3f} | {len(row['seconds'])} |")
    print(f"\nwritten: {path}")


def _label(kind: str) -> str:
    return {
        "before": "before: plain, as that checkout runs it",
        "train": "training step, this checkout",
        "train_before": "training step, before",
    }.get(kind, kind)


def _run(job: tuple[str, str], passthrough: list[str]) -> dict:
    kind, tree = job
    command = [sys.executable, __file__, "--child", kind, tree, *passthrough]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        sys.exit(f"{kind} ({tree}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
