"""Cost of each spatial mixer at the ablation's matched parameter budget.

For every model preset of ``conf/experiment/ablation_mixer.yaml``, at the width
that experiment gives it: parameters, MACs of one 256x256 image (FlopCounterMode
FLOPs / 2, attention products included, counted on the meta device), and the
wall time of one training step's forward + backward on a CPU batch of the
experiment's patch size and batch size (median over ``--steps`` after one
warm-up step), as wall time and as process CPU time: on a shared machine the
wall time grows with the other jobs' load while one thread's CPU time barely
moves, so ``--threads 1`` gives comparable numbers anywhere. Prints a Markdown
table.

    python benchmarks/mixer_budget.py [--threads 1] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.progress import track
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from restore.models.loading import build_preset

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "conf" / "experiment" / "ablation_mixer.yaml"


def build(preset: str, features: int, device: str = "cpu") -> nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        return build_preset(preset, features=features)


def macs(preset: str, features: int, size: int = 256) -> int:
    """Multiply-accumulates of one forward on a size x size RGB image (shapes only, on meta)."""
    model = build(preset, features, "meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() // 2


def step_seconds(model: nn.Module, batch: int, patch: int, steps: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of forward + backward of a loss over every output, on CPU."""
    x = torch.rand(batch, 3, patch, patch)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter(), time.process_time()
        outputs = model(x)
        # An L1 over every stage and scale: the backward reaches every head, as the real loss does.
        sum(o.abs().mean() for stage in outputs for o in stage).backward()
        model.zero_grad(set_to_none=True)
        if i:  # the first step pays one-off allocations and kernel set-up
            times.append((time.perf_counter() - start[0], time.process_time() - start[1]))
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    experiment = OmegaConf.load(EXPERIMENT)
    widths = experiment.ablation.features
    batch, patch = experiment.data.batch_size, experiment.data.patch_size
    rows = []
    for preset in track(list(widths), description="measuring"):
        model = build(preset, widths[preset])
        params = sum(p.numel() for p in model.parameters())
        rows.append((preset, model.config.mixer, model.config.block, widths[preset], params))
        rows[-1] += (macs(preset, widths[preset]), *step_seconds(model, batch, patch, args.steps))

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nCPU, {args.threads} threads, torch {torch.__version__}, load average {load} (1/5/15 min)")
    print(f"step = forward + backward of a {batch} x 3 x {patch} x {patch} batch, median of {args.steps}\n")
    print("| model | mixer | block | features | parameters | GMACs @ 256x256 | wall s / step | CPU s / step |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for preset, mixer, block, features, params, mac, wall, cpu in rows:
        print(f"| {preset} | {mixer} | {block} | {features} | {params:,} | {mac / 1e9:.2f} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
