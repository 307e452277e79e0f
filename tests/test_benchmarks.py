"""The benchmark scripts: what one configuration records, the derived rates,
the memory guard and the port script's refusal to run without the port."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.helpers import ROOT, run_command

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_model  # noqa: E402
import bench_port  # noqa: E402
from common import TensorMemory  # noqa: E402


def test_one_configuration_is_timed_counted_and_measured():
    spec = {
        "model": "maxim_1s",
        "size": 64,
        "mode": "forward",
        "device": "cpu",
        "variant": "fp32",
        "batch": 1,
        "checkpointing": False,
        "threads": 1,
        "repeats": 2,
    }
    threads = torch.get_num_threads()
    try:
        run = bench_model.measure(spec)  # meant for a child process: it sets the thread count
    finally:
        torch.set_num_threads(threads)
    assert len(run["seconds"]) == 2 and run["seconds_min"] <= run["seconds_median"]
    # MAXIM-1S: ~2.5 GMACs at 64^2, counted (the 1x1 convs of enlarging resizes run at low resolution)
    assert 2.0e9 < run["macs"] < 2.6e9
    # the resident-size peak means something in a fresh child process only (here earlier
    # tests' freed pages are reused or returned); the tensors' own peak does not depend on it
    assert run["peak_total_mib"] > 0
    assert 5 < run["tensor_peak_mib"] < 50  # measured: 10 MiB of activations at 64^2


def test_tensor_memory_counts_new_storages_until_freed_and_views_not_at_all():
    weight = torch.ones(1000)  # made before: not counted
    with TensorMemory() as memory:
        a = weight * 2  # 4000 bytes
        view = a[::2].t()  # no new storage
        b = torch.cat([a, a])  # 8000 bytes
        del a, view
        c = b + 1  # a was freed: 8000 + 8000 live
        del b, c
    assert memory.peak_bytes == 16_000
    assert memory.bytes == 0


def test_derived_rates_use_the_median_and_the_matmul_of_the_same_device():
    run = {"batch": 2, "size": 1000, "device": "cpu", "variant": "fp32", "macs": 4e9, "seconds_median": 2.0}
    run.update(peak_mib=100.0, tensor_peak_mib=60.0)
    derived = bench_model.derive(run, {"cpu": {"flops": 8e9}})
    assert derived["gflops"] == pytest.approx(4.0)  # 2 FLOPs per MAC over 2 s
    assert derived["fraction_of_matmul"] == pytest.approx(0.5)
    assert derived["seconds_per_megapixel"] == pytest.approx(1.0)  # 2 images of 1 MP
    assert derived["mib_per_megapixel"] == pytest.approx(50.0)
    assert derived["tensor_mib_per_megapixel"] == pytest.approx(30.0)
    assert derived["images_per_second"] == pytest.approx(1.0)


def test_a_configuration_that_would_not_fit_in_memory_is_skipped(monkeypatch):
    done = [{"model": "maxim_3s", "mode": "train", "device": "cpu", "variant": "fp32", "checkpointing": False}]
    done[0].update(size=256, peak_mib=10_000.0)
    spec = {**done[0], "size": 512}
    monkeypatch.setattr(bench_model, "available_memory_mib", lambda: 20_000.0)
    assert bench_model.predicted_overflow(spec, done) == "skipped: needs about 39.1 GiB, 19.5 GiB available"
    monkeypatch.setattr(bench_model, "available_memory_mib", lambda: 100_000.0)
    assert bench_model.predicted_overflow(spec, done) is None
    assert bench_model.predicted_overflow({**spec, "checkpointing": True}, done) is None  # nothing to judge from


def test_a_child_keeps_the_allocator_its_parent_chose(monkeypatch, capsys):
    # --malloc is not forwarded to children: choosing again would impose the default
    monkeypatch.setattr(bench_model, "use_allocator", lambda mode: pytest.fail(f"the child chose {mode}"))
    monkeypatch.setattr(bench_model, "measure", lambda spec: {"measured": spec["size"]})
    assert bench_model.main(["--child", '{"size": 64}']) == 0
    assert json.loads(capsys.readouterr().out) == {"measured": 64}


def test_bad_sizes_are_refused_with_the_option_named():
    with pytest.raises(SystemExit):
        bench_model.parse_args(["--sizes", "100"])
    with pytest.raises(SystemExit):
        bench_model.parse_args(["--models", "maxim_9s"])


def test_the_port_comparison_says_how_to_get_the_port_when_it_is_missing(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bench_port.parse_args([])
    assert exit_info.value.code == 2
    assert "--port-file is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_port.parse_args(["--port-file", str(tmp_path / "absent.py")])
    assert "does not exist" in capsys.readouterr().err
    wrong = tmp_path / "other.py"
    wrong.write_text("x = 1\n")
    with pytest.raises(SystemExit, match="no class MAXIM_dns_3s"):
        bench_port.load_port(wrong)


def test_the_cpu_paths_run_side_by_side_with_another_checkout(tmp_path):
    out = tmp_path / "paths.json"
    done = run_command(
        "benchmarks/bench_cpu_paths.py",
        *("--model", "maxim_1s", "--size", "64", "--variants", "plain,onednn", "--before", str(ROOT)),
        *("--train", "--train-features", "8", "--train-patch", "64", "--train-batch", "1"),
        *("--rounds", "2", "--repeats", "1", "--threads", "1", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {
        "plain",
        "onednn",
        "before: plain, as that checkout runs it",
        "training step, this checkout",
        "training step, before",
    }
    for row in rows.values():
        assert len(row["seconds"]) == 2 and row["median_seconds"] > 0


def test_the_cpu_paths_refuse_a_folder_that_is_no_checkout(tmp_path):
    done = run_command("benchmarks/bench_cpu_paths.py", "--before", str(tmp_path), "--out", str(tmp_path / "x.json"))
    assert done.returncode != 0
    assert f"--before {tmp_path}: not a checkout of this repository" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_learning_curve_joins_the_legs_of_a_resumed_run_in_step_order(tmp_path):
    import learning_curve

    header = "step,time/minutes,val/psnr,val/input_psnr,train/loss\n"
    for version, rows in {
        0: ["399,11.6,33.31,24.56,", "500,,,,0.02", "799,33.1,33.77,24.56,"],
        10: ["1599,59.3,33.90,24.56,", "2773,90.7,34.12,24.56,"],  # versions sort as numbers, not text
        2: ["1199,43.6,33.40,24.56,"],
    }.items():
        folder = tmp_path / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(header + "\n".join(rows) + "\n")
    points = learning_curve.read_legs(tmp_path)
    assert [(p["step"], p["leg"]) for p in points] == [(399, 0), (799, 0), (1199, 1), (1599, 2), (2773, 2)]
    assert points[-1]["minutes"] == 90.7 and points[-1]["psnr"] == 34.12
    learning_curve.plot(points, None, None, "two legs", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_the_learning_curve_of_a_run_without_validations_is_one_line(tmp_path):
    import learning_curve

    (tmp_path / "csv" / "version_0").mkdir(parents=True)
    (tmp_path / "csv" / "version_0" / "metrics.csv").write_text("step,train/loss\n1,0.5\n")
    with pytest.raises(SystemExit, match="no rows with both val/psnr and time/minutes in 1 log"):
        learning_curve.read_legs(tmp_path)
    with pytest.raises(SystemExit, match="no csv/version_"):
        learning_curve.read_legs(tmp_path / "elsewhere")
