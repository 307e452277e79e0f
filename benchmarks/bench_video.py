"""Video throughput against the same frames as PNG files, through python -m restore.predict.

The same frames (a moving window over a real photo, with Gaussian noise of sigma 25) are
written once as a folder of PNGs and once as a lossless video (FFV1 in Matroska, and H.264 in
MP4); each path is then restored with the same model, in turns (png, video, png, video, ...),
so the machine's load hits both alike. The ratio is video seconds / PNG seconds per frame
(median over the turns): 1.0 means decoding and encoding cost the video path nothing more.

    python benchmarks/bench_video.py                      # the shipped denoiser, 16 frames of 256x256
    python benchmarks/bench_video.py --frames 32 --size 384
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from common import RESULTS, ROOT, add_machine_arguments, load_average, machine_name, run_facts  # noqa: I001
from rich.console import Console

from restore.data.io import write_image
from restore.data.layout import SkimageSource
from restore.predict import predict
from tests.helpers import compose_config

SHIPPED = ROOT / "weights" / "maxim1s_w32_cbsd432_sigma25.ckpt"


def make_frames(count: int, size: int) -> list[np.ndarray]:
    """``count`` noisy ``size`` x ``size`` crops sliding across the astronaut photo."""
    photo = SkimageSource("astronaut").read()  # 512x512
    rng = np.random.default_rng(0)
    frames = []
    for index in range(count):
        offset = index * (photo.shape[1] - size) // max(1, count - 1)
        crop = photo[:size, offset : offset + size].astype(np.float64)
        frames.append(np.clip(crop + rng.normal(0, 25, crop.shape), 0, 255).round().astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def timed_predict(source: Path, output: Path, model: list[str]) -> float:
    shutil.rmtree(output, ignore_errors=True)
    cfg = compose_config("predict", f"input={source}", f"output={output}", "device=cpu", "tile=null", *model)
    start = time.perf_counter()
    predict(cfg, console=Console(file=io.StringIO()))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_machine_arguments(parser, repeats=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ckpt", default=str(SHIPPED), help="the model (a Lightning checkpoint)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = load_average()
    model = [f"ckpt={args.ckpt}"]
    frames = make_frames(args.frames, args.size)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        work = Path(tmp)
        for index, frame in enumerate(frames):
            write_image(work / "png" / f"{index:04d}.png", frame.astype(np.float32) / 255)
        sources = {"png": work / "png"}
        for name, codec, pix_fmt, suffix in (("ffv1", "ffv1", "bgr0", ".mkv"), ("h264", "libx264", "yuv420p", ".mp4")):
            sources[name] = work / name / f"clip{suffix}"
            sources[name].parent.mkdir()
            write_video(sources[name], frames, codec, pix_fmt)
        timed_predict(sources["png"], work / "warm-up", model)  # loads and first-touches the model
        seconds = {name: [] for name in sources}
        for _ in range(args.repeats):
            for name, source in sources.items():
                seconds[name].append(timed_predict(source, work / f"out-{name}", model))
                print(f"{name}: {seconds[name][-1]:.2f} s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        **run_facts(machine_name(args.name), args, argv, load_before),
        "model": str(Path(args.ckpt).relative_to(ROOT)) if Path(args.ckpt).is_relative_to(ROOT) else args.ckpt,
        "frames": args.frames,
        "size": args.size,
        "seconds": seconds,
        "median_seconds": medians,
        "frames_per_second": {name: args.frames / value for name, value in medians.items()},
        "ratio_to_png": {name: medians[name] / medians["png"] for name in ("ffv1", "h264")},
    }
    out = RESULTS / f"video_throughput_{result['machine']}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("ffv1", "h264"):
        ratio = result["ratio_to_png"][name]
        print(f"{name}: {medians[name]:.2f} s against {medians['png']:.2f} s as PNG files: ratio {ratio:.3f}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
