"""Training-step speed of one recipe under the CPU speed-ups, measured side by side.

One training step is what ``RestorationModule`` does per batch: forward, the
multi-stage Charbonnier + FFT loss, backward and an Adam step. Each variant
(fp32; bf16 autocast; channels_last; torch.compile; compile + bf16) gets its
own copy of the same model and batch; after one uncounted warm-up step each
(compilation happens there), the variants are timed in turns, ``--repeats``
rounds, so a change in the machine's load hits all of them alike. Reported:
the median seconds per step and each variant's speed relative to fp32.

    python benchmarks/bench_train_step.py --model maxim_1s --features 16 --patch 64 --batch 8
    python benchmarks/bench_train_step.py --variants fp32,bf16 --repeats 20

Writes ``benchmarks/results/<machine>_train_step.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
from common import add_machine_arguments, load_average, machine_name, run_facts, use_allocator, write_results

from restore.losses import MultiStageLoss
from restore.models.loading import build_preset

VARIANTS = {
    # name: (autocast dtype or None, channels_last, compile)
    "fp32": (None, False, False),
    "bf16": (torch.bfloat16, False, False),
    "channels_last": (None, True, False),
    "compile": (None, False, True),
    "compile_bf16": (torch.bfloat16, False, True),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="maxim_1s", help="preset (conf/model/*.yaml)")
    parser.add_argument("--features", type=int, default=16, help="model.features")
    parser.add_argument("--patch", type=int, default=64, help="square training patch size")
    parser.add_argument("--batch", type=int, default=8, help="patches per step")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    add_machine_arguments(parser, repeats=10)
    return parser.parse_args(argv)


class Step:
    """One variant's model, optimiser and step function."""

    def __init__(self, model: torch.nn.Module, variant: str):
        dtype, channels_last, compiled = VARIANTS[variant]
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.forward = torch.compile(self.model) if compiled else self.model
        self.autocast = dtype
        self.channels_last = channels_last
        self.loss = MultiStageLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        context = torch.autocast("cpu", dtype=self.autocast) if self.autocast is not None else contextlib.nullcontext()
        with context:
            outputs = self.forward(x)
        loss, _ = self.loss(outputs, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def main(argv=None) -> int:
    args = parse_args(argv)
    use_allocator(args.malloc)
    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    load_before = load_average()
    torch.manual_seed(0)
    base = build_preset(args.model, features=args.features)
    target = torch.rand(args.batch, 3, args.patch, args.patch)
    x = (target + 25 / 255 * torch.randn_like(target)).clamp(0, 1)
    steps = {}
    warmup = {}
    for variant in variants:
        steps[variant] = Step(copy.deepcopy(base), variant)
        start = time.perf_counter()
        steps[variant](x, target)
        warmup[variant] = time.perf_counter() - start
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            start = time.perf_counter()
            steps[variant](x, target)
            seconds[variant].append(time.perf_counter() - start)
    reference = statistics.median(seconds[variants[0]])
    rows = []
    for variant in variants:
        median = statistics.median(seconds[variant])
        rows.append(
            {
                "variant": variant,
                "seconds_median": median,
                "steps_per_s": 1 / median,
                f"speed_vs_{variants[0]}": reference / median,
                "warmup_seconds": warmup[variant],
                "seconds": seconds[variant],
            }
        )
    name = machine_name(args.name)
    results = {
        **run_facts(name, args, argv, load_before),
        "recipe": {"model": args.model, "features": args.features, "patch": args.patch, "batch": args.batch},
        "rows": rows,
    }
    out = write_results(name, "train_step", results)
    print(
        f"{results['cpu']}, {args.threads} threads; {args.model} features={args.features}, "
        f"{args.batch}x{args.patch}^2 patches, {args.repeats} rounds"
    )
    print(f"| variant | s/step (median) | steps/s | vs {variants[0]} | first step (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['seconds_median']:.3f} | {row['steps_per_s']:.2f} | "
            f"{row[f'speed_vs_{variants[0]}']:.2f}x | {row['warmup_seconds']:.1f} |"
        )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
