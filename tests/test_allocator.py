"""The commands keep freed memory for reuse: fewer page faults for the same work, and a switch to turn it off."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2

from restore.data.layout import SkimageSource
from tests.helpers import ROOT

REUSE = """
import resource, torch
from restore.allocator import keep_freed_memory
print(keep_freed_memory())
from restore.models.loading import build_preset
model, image = build_preset("maxim_1s", features=8).eval(), torch.rand(1, 3, 256, 256)
with torch.no_grad():
    model(image)  # the first forward grows the heap to the forward's peak
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        model(image)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_python(code: str, mode: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RESTORE_MALLOC", "GLIBC_TUNABLES")}
    if mode is not None:
        env["RESTORE_MALLOC"] = mode
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    retained, retained_faults = run_python(REUSE, None)
    default, default_faults = run_python(REUSE, "default")
    assert (retained, default) == ("True", "False")
    # the same four forwards: glibc as it is maps and zeroes fresh pages for the large tensors of each
    assert int(default_faults) > 4000
    assert int(retained_faults) < 0.3 * int(default_faults)


def test_a_bad_switch_value_is_one_line():
    env = {**os.environ, "RESTORE_MALLOC": "jemalloc"}
    done = subprocess.run(
        [sys.executable, "-c", "from restore.allocator import keep_freed_memory; keep_freed_memory()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "RESTORE_MALLOC='jemalloc': give retain (the default) or default" in done.stderr


def child_faults(command: list[str], mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["RESTORE_MALLOC"] = mode
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before


def test_predict_starts_with_the_allocator_that_reuses_memory(tmp_path):
    def photo(height: int, width: int) -> Path:
        path = tmp_path / f"astronaut_{height}x{width}.png"
        cv2.imwrite(str(path), cv2.cvtColor(SkimageSource("astronaut").read()[:height, :width], cv2.COLOR_RGB2BGR))
        return path

    def faults(path: Path, mode: str) -> int:
        command = [
            sys.executable,
            "-m",
            "restore.predict",
            f"input={path}",
            "model=maxim_1s",
            "model.features=8",
            "tile=128",
            "tile_overlap=16",
            "device=cpu",
            "autocast=fp32",  # the allocator is measured, not the precision auto would pick here
            f"output={tmp_path / mode / path.stem}",
        ]
        return child_faults(command, mode)

    # start-up (imports, the model) faults about as much either way and differs between machines:
    # what a one-tile photo costs is taken off, leaving the faults of the 11 further tiles
    one_tile, twelve_tiles = photo(64, 64), photo(256, 384)
    retained = faults(twelve_tiles, "retain") - faults(one_tile, "retain")
    default = faults(twelve_tiles, "default") - faults(one_tile, "default")
    assert retained < 0.5 * default, (retained, default)
