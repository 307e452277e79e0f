"""What the benchmark scripts share: the machine's facts, its measured matmul
throughput, the model presets and the timing loop.

The scripts run from the repository root (``python benchmarks/bench_model.py``);
they put the root on ``sys.path`` so ``restore`` imports without installing.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from restore.memory import LiveTensorBytes as TensorMemory  # noqa: E402,F401 - the benchmarks' name for it

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("maxim_1s", "maxim_2s", "maxim_3s")


# glibc serves blocks above its mmap threshold (32 MiB at most) with fresh mmap'ed
# pages, which the kernel faults in and zeroes, and unmaps them again on free. From
# about 512^2 on, most of MAXIM's activations are that large, so every op pays for
# fresh pages and the cost grows faster than the pixels (measured: 3.4M page faults,
# 7 s of kernel time in one 512^2 MAXIM-3S forward on 1 thread). Keeping freed memory
# in the heap avoids it, as the CUDA caching allocator does on GPU; jemalloc or
# tcmalloc (LD_PRELOAD) do the same.
RETAIN_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def add_machine_arguments(parser, repeats: int) -> None:
    """The options every benchmark script takes: threads, timed repeats, allocator, machine name."""
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed passes per configuration (after a warm-up)")
    parser.add_argument(
        "--malloc",
        choices=("retain", "default"),
        default="retain",
        help="retain: glibc keeps freed memory for reuse (GLIBC_TUNABLES, see common.py); default: glibc as is",
    )
    parser.add_argument("--name", help="machine name for the result files (default: the host name)")


def run_facts(name: str, args, argv: list[str] | None, load_before: list[float] | None) -> dict:
    """What every results file starts with: the machine, the command, the load and the allocator."""
    return {
        "machine": name,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]),
        **machine_facts(args.threads),
        "load_average": {"before": load_before, "after": load_average()},
        "malloc": {"mode": args.malloc, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES")},
    }


def use_allocator(mode: str) -> None:
    """Run this script under the allocator ``mode``: "retain" (glibc keeps freed
    memory, via GLIBC_TUNABLES) or "default" (glibc as configured). glibc reads
    its tunables at start-up, so this re-executes the script when they differ."""
    wanted = RETAIN_TUNABLES if mode == "retain" else None
    if os.environ.get("GLIBC_TUNABLES") == wanted or (wanted is None and "GLIBC_TUNABLES" not in os.environ):
        return
    env = dict(os.environ)
    if wanted is None:
        env.pop("GLIBC_TUNABLES")
    else:
        env["GLIBC_TUNABLES"] = wanted
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def machine_name(name: str | None) -> str:
    """``name`` or the host name, reduced to characters safe in a file name."""
    raw = name or socket.gethostname() or "machine"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "machine"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_facts(threads: int) -> dict:
    facts = {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_repeats(fn: Callable[[], object], repeats: int, device: str = "cpu") -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``, each synchronised on GPU."""
    seconds = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def matmul_throughput(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> dict:
    """The best of ``repeats`` n^3 matmuls, in FLOP/s (2 per multiply-add)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pool and library initialisation
    seconds = time_repeats(lambda: a @ b, repeats, device)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops": 2 * n**3 / min(seconds), "seconds": seconds}


def summary(seconds: list[float]) -> dict:
    return {"seconds": seconds, "seconds_min": min(seconds), "seconds_median": statistics.median(seconds)}


def write_results(name: str, kind: str, results: dict, path: Path | None = None) -> Path:
    """Write ``results`` to ``path``, by default ``benchmarks/results/<name>_<kind>.json``; return the path."""
    if path is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}_{kind}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path
