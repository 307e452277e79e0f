"""Speed, memory and scaling of MAXIM-1S/2S/3S.

For each model and square size: the forward pass (inference, no autograd)
and the forward+backward pass (a training step without the optimizer) per
image, their peak memory, and the multiply-adds they perform, counted with
``torch.utils.flop_counter.FlopCounterMode`` in the same run (on the meta
device, see ``count_macs``). The machine's own fp32 matmul throughput (best 2048^3 matmul) is measured
in the same run, and each configuration is reported as a fraction of it.

Every configuration runs in a fresh subprocess, so its peak memory is its
own. On CPU that is the peak resident set size (``ru_maxrss``, everything
torch allocated, as the OS saw it) minus the resident size just before the
first pass (interpreter, libraries, weights and input): the memory the pass
itself needed, as the machine has to provide it. Alongside, the peak of the
bytes its tensors held (``common.TensorMemory``, counted during the warm-up
pass): the same without the allocator's free lists and fragmentation. On CUDA
both are ``torch.cuda.max_memory_allocated`` above the memory allocated
before the first pass. Times are wall-clock per pass
(``torch.cuda.synchronize()`` around each on GPU), the headline being the
median of ``--repeats``.

CPU: fp32, batch 1, ``--threads`` threads. Where CUDA is available the GPU
is also measured in fp32, bf16 autocast, channels_last and bf16 autocast +
torch.compile (batch ``--gpu-batch``), against the GPU's bf16 (and fp32)
matmul throughput, plus MAXIM-3S training throughput at 256^2 in images/s.

Writes ``benchmarks/results/<machine>.json`` and ``<machine>.png`` (time and
memory per megapixel against resolution) and prints a Markdown table;
``--report FILE.json`` redraws the plot and the table from a saved run.

    python benchmarks/bench_model.py                      # the default run, ~20 min on 2 cores
    python benchmarks/bench_model.py --models maxim_3s --sizes 256 --backward-sizes 256 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from common import (
    MODELS,
    RESULTS,
    TensorMemory,
    add_machine_arguments,
    load_average,
    machine_name,
    matmul_throughput,
    run_facts,
    summary,
    time_repeats,
    use_allocator,
)
from rich.progress import Progress

from restore.models.fast import for_cpu_inference
from restore.models.loading import build_preset

GPU_VARIANTS = ("fp32", "bf16", "channels_last", "bf16_compile")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated presets (conf/model/*.yaml)")
    parser.add_argument("--sizes", default="128,256,512,1024", help="forward sizes (square, multiples of 64)")
    parser.add_argument(
        "--backward-sizes",
        default="128,256,512",
        help="forward+backward sizes; configurations predicted not to fit in free RAM are skipped and say so",
    )
    parser.add_argument(
        "--checkpointing-models",
        default="maxim_2s,maxim_3s",
        help="models whose forward+backward is measured again with activation_checkpointing=True",
    )
    parser.add_argument("--checkpointing-sizes", default="256,512", help="sizes of those checkpointed runs")
    add_machine_arguments(parser, repeats=3)
    parser.add_argument("--gpu-batch", type=int, default=8, help="batch size of the GPU configurations")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU configurations even if CUDA is available")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the .json and .png go")
    parser.add_argument("--report", type=Path, help="only redraw the plot and table of a saved results .json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one configuration, run in a subprocess
    args = parser.parse_args(argv)
    for option in ("models", "checkpointing_models"):
        for name in filter(None, getattr(args, option).split(",")):
            if name not in MODELS:
                parser.error(f"--{option.replace('_', '-')}: unknown model '{name}' (choose from {', '.join(MODELS)})")
    for option in ("sizes", "backward_sizes", "checkpointing_sizes"):
        try:
            sizes = [int(s) for s in getattr(args, option).split(",") if s]
        except ValueError:
            parser.error(f"--{option.replace('_', '-')}: expected comma-separated integers")
        if any(s <= 0 or s % 64 for s in sizes):
            parser.error(
                f"--{option.replace('_', '-')}: sizes must be positive multiples of 64 (MAXIM's size multiple)"
            )
        setattr(args, option, sizes)
    if args.threads < 1 or args.repeats < 1 or args.gpu_batch < 1:
        parser.error("--threads, --repeats and --gpu-batch must be at least 1")
    return args


# ---------------------------------------------------------------- one configuration (child process)


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_pass(model: torch.nn.Module, x: torch.Tensor, train: bool, autocast=None) -> None:
    """One forward (inference) or forward+backward (every stage and scale supervised, as in training)."""
    with autocast or contextlib.nullcontext(), torch.set_grad_enabled(train):
        outputs = model(x)
    if train:
        sum(o.float().square().mean() for stage in outputs for o in stage).backward()


def count_macs(spec: dict) -> int:
    """Multiply-adds of one pass, counted by FlopCounterMode on the meta device.

    The same model code runs on shapes only, so counting costs neither time nor
    memory and cannot disturb the peak measured afterwards (counting a real
    checkpointed pass inflated its memory). On CPU the fused oneDNN kernels
    count exactly like the ATen ops the meta pass uses
    (tests/models/test_fast_paths.py); precision and layout do not change it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    train = spec["mode"] == "train"
    with torch.device("meta"):
        model = build_preset(spec["model"], activation_checkpointing=spec["checkpointing"]).train(train)
        x = torch.rand(spec["batch"], 3, spec["size"], spec["size"])
    counter = FlopCounterMode(display=False)
    with counter:
        run_pass(model, x, train)
    return counter.get_total_flops() // 2


def measure(spec: dict) -> dict:
    """Time, count and measure one configuration; runs in its own process."""
    torch.set_num_threads(spec["threads"])
    device, variant, train = spec["device"], spec["variant"], spec["mode"] == "train"
    macs = count_macs(spec)
    torch.manual_seed(0)
    model = build_preset(spec["model"], activation_checkpointing=spec["checkpointing"]).to(device).train(train)
    if device == "cpu" and not train:
        for_cpu_inference(model)  # what predict and evaluate run on the CPU
    x = torch.rand(spec["batch"], 3, spec["size"], spec["size"], device=device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    runner = torch.compile(model) if variant.endswith("compile") else model
    autocast = torch.autocast(device, dtype=torch.bfloat16) if variant.startswith("bf16") else None

    def step():
        run_pass(runner, x, train, autocast)
        model.zero_grad(set_to_none=True)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()  # warm-up: thread pools, kernels, compilation
    else:
        before = current_rss_bytes()
        with TensorMemory() as tensors:
            step()  # warm-up (thread pools, oneDNN kernels) that also counts the tensors' bytes
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = time_repeats(step, spec["repeats"], device)
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    if device == "cuda":
        peak_total = torch.cuda.max_memory_allocated()
        spec = {
            **spec,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        }
        tensor_peak = peak_total - before  # the caching allocator's count is the tensors'
    else:
        peak_total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        tensor_peak = tensors.peak_bytes
    return {
        **spec,
        **summary(seconds),
        "macs": macs,
        "peak_mib": (peak_total - before) / 2**20,
        "tensor_peak_mib": tensor_peak / 2**20,
        "peak_total_mib": peak_total / 2**20,
        # page faults and kernel time of the timed passes: the cost of fresh pages
        "minor_faults": usage_after.ru_minflt - usage_before.ru_minflt,
        "system_seconds": usage_after.ru_stime - usage_before.ru_stime,
    }


def run_in_subprocess(spec: dict) -> dict:
    """``measure(spec)`` in a fresh interpreter; failures are recorded, not raised."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode < 0:
        reason = f"killed by signal {-done.returncode} (out of memory?)"
    else:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {**spec, "error": reason}


# ---------------------------------------------------------------- the run


def predicted_overflow(spec: dict, done: list[dict]) -> str | None:
    """Why ``spec`` would not fit in the free CPU memory, judged from the same
    configuration at a smaller size (memory grows with pixels), or None.

    Running it anyway would let the kernel's OOM killer pick a victim on a
    machine that may be shared.
    """
    if spec["device"] != "cpu":
        return None
    same = [
        r
        for r in done
        if "error" not in r and all(r[k] == spec[k] for k in ("model", "mode", "device", "variant", "checkpointing"))
    ]
    if not same:
        return None
    largest = max(same, key=lambda r: r["size"])
    needed_mib = largest["peak_mib"] * (spec["size"] / largest["size"]) ** 2
    available_mib = available_memory_mib()
    if available_mib is None or needed_mib < 0.85 * available_mib:
        return None
    return f"skipped: needs about {needed_mib / 1024:.1f} GiB, {available_mib / 1024:.1f} GiB available"


def available_memory_mib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def configurations(args: argparse.Namespace) -> list[dict]:
    models = args.models.split(",")
    passes = (("forward", args.sizes), ("train", args.backward_sizes))

    def spec(model, size, mode, device="cpu", variant="fp32", batch=1, checkpointing=False) -> dict:
        return {
            "model": model,
            "size": size,
            "mode": mode,
            "device": device,
            "variant": variant,
            "batch": batch,
            "checkpointing": checkpointing,
            "threads": args.threads,
            "repeats": args.repeats,
        }

    specs = [spec(model, size, mode) for mode, sizes in passes for size in sizes for model in models]
    specs += [
        spec(model, size, "train", checkpointing=True)
        for size in args.checkpointing_sizes
        for model in filter(None, args.checkpointing_models.split(","))
    ]
    if torch.cuda.is_available() and not args.no_gpu:
        for variant in GPU_VARIANTS:
            # Compiling takes minutes per configuration: MAXIM-3S only (docs/performance.md, the GPU target).
            chosen = [m for m in models if m == "maxim_3s"] if variant.endswith("compile") else models
            specs += [
                spec(model, size, mode, "cuda", variant, args.gpu_batch)
                for mode, sizes in passes
                for size in sizes
                for model in chosen
            ]
    return specs


def derive(run: dict, matmul: dict) -> dict:
    """Per-image rates, per-megapixel costs and the fraction of the matmul roofline."""
    if "error" in run:
        return run
    megapixels = run["batch"] * run["size"] ** 2 / 1e6
    seconds = run["seconds_median"]
    reference = matmul[run["device"] + ("_bf16" if run["variant"].startswith("bf16") else "")]
    flops = 2 * run["macs"] / seconds
    return {
        **run,
        "gmacs_per_image": run["macs"] / run["batch"] / 1e9,
        "seconds_per_image": seconds / run["batch"],
        "images_per_second": run["batch"] / seconds,
        "seconds_per_megapixel": seconds / megapixels,
        "mib_per_megapixel": run["peak_mib"] / megapixels,
        "tensor_mib_per_megapixel": run["tensor_peak_mib"] / megapixels,
        "gflops": flops / 1e9,
        "fraction_of_matmul": flops / reference["flops"],
    }


def measure_matmul(threads: int) -> dict:
    torch.set_num_threads(threads)
    matmul = {"cpu": matmul_throughput("cpu", torch.float32, 2048)}
    if torch.cuda.is_available():
        matmul["cuda"] = matmul_throughput("cuda", torch.float32, 8192)
        matmul["cuda_bf16"] = matmul_throughput("cuda", torch.bfloat16, 8192)
    return matmul


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        # The parent's allocator setting is in the environment it passes down; choosing
        # again here would impose this parser's default (--malloc is not forwarded).
        print(json.dumps(measure(json.loads(args.child))))
        return 0
    use_allocator(args.malloc)
    if args.report:
        if not args.report.is_file():
            raise SystemExit(f"--report: {args.report} does not exist (pass a .json written by this script)")
        results = json.loads(args.report.read_text())
        plot(results, args.report.with_suffix(".png"))
        print(markdown_table(results))
        return 0

    name = machine_name(args.name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    matmul_before = measure_matmul(args.threads)
    specs = configurations(args)
    runs = []
    with Progress() as progress:
        task = progress.add_task("configurations", total=len(specs))
        for spec in specs:
            label = f"{spec['model']} {spec['size']}^2 {spec['mode']} {spec['device']} {spec['variant']}"
            progress.update(task, description=label + (" +ckpt" if spec["checkpointing"] else ""))
            too_big = predicted_overflow(spec, runs)
            runs.append({**spec, "error": too_big} if too_big else run_in_subprocess(spec))
            progress.advance(task)
    matmul_after = measure_matmul(args.threads)
    # The best of the two measurements: the fractions are then conservative.
    matmul = {k: max(matmul_before[k], matmul_after[k], key=lambda m: m["flops"]) for k in matmul_before}
    results = {
        **run_facts(name, args, argv, load_before),
        "matmul": matmul,
        "matmul_runs": {"before": matmul_before, "after": matmul_after},
        "runs": [derive(run, matmul) for run in runs],
    }
    path = args.out_dir / f"{name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, path.with_suffix(".png"))
    print(markdown_table(results))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


# ---------------------------------------------------------------- reporting


def markdown_table(results: dict) -> str:
    gflops = results["matmul"]["cpu"]["flops"] / 1e9
    lines = [
        f"{results['cpu']}, {results['threads']} threads, torch {results['torch']}; "
        f"fp32 matmul {gflops:.0f} GFLOP/s; load average {results['load_average']['before']} -> "
        f"{results['load_average']['after']}",
        "",
        "| model | size | pass | device / variant | batch | GMACs/image | s/image (median) | s/MP | "
        "peak MiB | MiB/MP | tensor MiB | GFLOP/s | of matmul |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        what = "fwd+bwd" if run["mode"] == "train" else "fwd"
        if run.get("checkpointing"):
            what += " (ckpt)"
        head = f"| {run['model']} | {run['size']}² | {what} | {run['device']} {run['variant']} | {run['batch']} |"
        if "error" in run:
            lines.append(f"{head} failed: {run['error']} ||||||||")
            continue
        cells = [
            f"{run['gmacs_per_image']:.1f}",
            f"{run['seconds_per_image']:.3f}",
            f"{run['seconds_per_megapixel']:.2f}",
            f"{run['peak_mib']:.0f}",
            f"{run['mib_per_megapixel']:.0f}",
            f"{run['tensor_peak_mib']:.0f}",
            f"{run['gflops']:.1f}",
            f"{run['fraction_of_matmul']:.0%}",
        ]
        lines.append(f"{head} {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_memory) = plt.subplots(1, 2, figsize=(13, 4.2))
    series = {}
    for run in results["runs"]:
        if "error" in run or run["device"] != "cpu":
            continue
        label = run["model"].replace("maxim_", "MAXIM-").upper()
        if run["mode"] == "forward":
            label += " fwd"
        else:
            label += " fwd+bwd ckpt" if run.get("checkpointing") else " fwd+bwd"
        series.setdefault(label, []).append(run)
    for label, runs in sorted(series.items()):
        runs.sort(key=lambda r: r["size"])
        sizes = [r["size"] for r in runs]
        style = "-o" if "fwd+bwd" not in label else ("--s" if "ckpt" not in label else ":^")
        ax_time.plot(sizes, [r["seconds_per_megapixel"] for r in runs], style, label=label)
        ax_memory.plot(sizes, [r["mib_per_megapixel"] for r in runs], style, label=label)
    sizes = sorted({r["size"] for runs in series.values() for r in runs})
    for ax, title in ((ax_time, "time per megapixel (s, median)"), (ax_memory, "peak memory per megapixel (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("image side (pixels, square)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_memory.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))  # outside: no line hidden
    threads = f"{results['threads']} thread" + ("s" if results["threads"] > 1 else "")
    malloc = results.get("malloc", {}).get("mode", "default")
    fig.suptitle(f"MAXIM on {results['cpu']}, {threads}, fp32, batch 1, malloc: {malloc}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
