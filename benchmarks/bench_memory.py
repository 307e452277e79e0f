"""Peak resident memory of a training step per preset, against ``restore.memory``'s estimate.

Each configuration runs in a fresh subprocess: build the preset (as
``RestorationModule`` does), take the pre-flight estimate as training does,
then two real training steps (forward, multi-stage loss, backward, Adam;
the second with Adam's moments alive, the steady state) and report the
process's peak resident size (``ru_maxrss``). A watchdog samples the child's
resident size and kills it above ``--limit-gb`` (default 18), so the
machine's OOM killer never has to; such rows read "killed above 18 GB".

``--attention reference`` runs the attention mixers with the implementation
before ``ChunkedAttention`` (SDPA with the bias as a float mask, whose math
path keeps every T x T matrix), ``checkpoint`` with that SDPA call under
``torch.utils.checkpoint``; the default is the library's own.

    python benchmarks/bench_memory.py --features 8 --patch 256 --batch 8
    python benchmarks/bench_memory.py --models maxim_2s_attention --attention reference,chunked

Writes ``benchmarks/results/<machine>_memory.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from common import RESULTS, ROOT, load_average, machine_name, run_facts

PRESETS = ("maxim_1s", "maxim_2s", "maxim_3s", "maxim_2s_attention", "maxim_2s_mixing", "maxvit_unet_2s")
ATTENTION_PRESETS = {"maxim_2s_attention", "maxim_2s_mixing", "maxvit_unet_2s"}
IMPLEMENTATIONS = ("chunked", "reference", "checkpoint")
GIB = 2**30


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(PRESETS), help="comma-separated presets (conf/model/*.yaml)")
    parser.add_argument("--features", type=int, help="model.features (default: the preset's)")
    parser.add_argument("--patch", type=int, default=256, help="square training patch (conf/task/denoise.yaml: 256)")
    parser.add_argument("--batch", type=int, default=8, help="patches per step (conf/task/denoise.yaml: 8)")
    parser.add_argument(
        "--attention",
        default="chunked",
        help=f"comma-separated attention implementations for the attention presets, of {', '.join(IMPLEMENTATIONS)}",
    )
    parser.add_argument("--checkpointing", action="store_true", help="model.activation_checkpointing=true")
    parser.add_argument(
        "--limit-gb", type=float, default=18.0, help="kill a measurement whose resident size passes this"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--name", help="machine name for the result file (default: the host name)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- the measured process
def use_attention(implementation: str) -> None:
    """Swap the attention core for the one the row measures."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    from restore.models.mixers import attention

    def sdpa(q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    if implementation == "reference":
        attention.windowed_attention = sdpa
    elif implementation == "checkpoint":
        attention.windowed_attention = lambda *args: checkpoint(sdpa, *args, use_reentrant=False)


def worker(spec: dict) -> dict:
    import torch
    from omegaconf import OmegaConf

    from restore.memory import estimate_step_memory
    from restore.models.loading import load_preset
    from restore.module import RestorationModule

    torch.set_num_threads(spec["threads"])
    use_attention(spec["attention"])
    overrides = {"activation_checkpointing": spec["checkpointing"]}
    if spec["features"]:
        overrides["features"] = spec["features"]
    model_cfg = OmegaConf.merge(load_preset(spec["model"]), overrides)
    torch.manual_seed(0)
    module = RestorationModule(model=model_cfg)
    started = time.perf_counter()
    estimate = estimate_step_memory(module, spec["batch"], spec["patch"])
    estimate_seconds = time.perf_counter() - started
    rss_before = resident_bytes()
    optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-4)
    x = torch.rand(spec["batch"], 3, spec["patch"], spec["patch"])
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        loss, _ = module.loss(module.model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return {
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_step_bytes": rss_before,
        "estimate_bytes": estimate.needed,
        "estimate_seconds": estimate_seconds,
        "step_seconds": seconds,
        "parameters": sum(p.numel() for p in module.model.parameters()),
    }


def resident_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- the watchdog
def measure(spec: dict, limit_bytes: float) -> dict:
    """Run ``spec`` in a fresh process; kill it if its resident size passes ``limit_bytes``."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # glibc as train.py gets it
    child = subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    highest = 0
    while child.poll() is None:
        try:
            highest = max(highest, resident_bytes(child.pid))
        except OSError:
            pass
        if highest > limit_bytes:
            child.kill()
            child.wait()
            return {"killed": True, "sampled_rss_bytes": highest}
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit {child.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def row_text(spec: dict, result: dict, limit_gb: float) -> str:
    head = f"| {spec['model']} | {spec['attention'] if spec['model'] in ATTENTION_PRESETS else '-'} | "
    head += f"{spec['features'] or 'preset'} | {spec['patch']}x{spec['patch']}x{spec['batch']} | "
    if result.get("killed"):
        return head + f"killed above {limit_gb:g} GB | | | |"
    if "error" in result:
        return head + f"error: {result['error']} | | | |"
    peak, estimate = result["peak_rss_bytes"], result["estimate_bytes"]
    return (
        head + f"{peak / GIB:.2f} | {estimate / GIB:.2f} | {estimate / peak:.2f} | "
        f"{min(result['step_seconds']):.1f} s (estimate {result['estimate_seconds']:.1f} s) |"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    load_before = load_average()
    rows = []
    print("| preset | attention | features | patch x batch | peak RSS GiB | estimate GiB | estimate/peak | step |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        implementations = args.attention.split(",") if model in ATTENTION_PRESETS else ["chunked"]
        for implementation in implementations:
            spec = dict(
                model=model,
                attention=implementation,
                features=args.features,
                patch=args.patch,
                batch=args.batch,
                checkpointing=args.checkpointing,
                threads=args.threads,
            )
            result = measure(spec, args.limit_gb * 1e9)
            rows.append({**spec, **result})
            print(row_text(spec, result, args.limit_gb), flush=True)
    name = machine_name(args.name)
    path = RESULTS / f"{name}_memory.json"
    previous = json.loads(path.read_text())["rows"] if path.is_file() else []
    keep = [r for r in previous if not any(_same(r, new) for new in rows)]
    facts = run_facts(name, argparse.Namespace(threads=args.threads, malloc="default"), argv, load_before)
    path.write_text(json.dumps({**facts, "rows": keep + rows}, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _same(a: dict, b: dict) -> bool:
    keys = ("model", "attention", "features", "patch", "batch", "checkpointing")
    return all(a.get(k) == b.get(k) for k in keys)


if __name__ == "__main__":
    sys.exit(main())
