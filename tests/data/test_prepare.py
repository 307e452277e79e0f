"""data/prepare.py: the check report, SIDD crops and FiveK expert C PNGs, never touching the originals."""

from __future__ import annotations

import io
import runpy
import sys

import cv2
import numpy as np
import pytest
from rich.console import Console

from restore.data import build_dataset, read_image
from restore.data.prepare import crop_positions, cut_sidd_crops, main, prepare, prophoto_to_srgb
from tests.data import layouts
from tests.data.layouts import signature_ok
from tests.helpers import ROOT


def _report(name, root, **kwargs) -> tuple[bool, str]:
    buffer = io.StringIO()
    ok = prepare(name, root, console=Console(file=buffer, width=300), **kwargs)
    return ok, buffer.getvalue()


def test_report_on_a_good_dataset_lists_every_split_against_the_official_counts(tmp_path):
    ok, report = _report("GoPro", layouts.gopro(tmp_path / "GoPro"))
    assert not ok  # a miniature copy does not have the official 2103 / 1111 pairs
    assert "4 samples, the official release has 2103" in report and "2 samples, the official release has 1111" in report
    assert "RGB, SSIM-3D, uint8" in report
    ok, report = _report("Rain100L", layouts.input_target(tmp_path / "Rain100L"))
    assert "4 samples, the official release has 100" in report


def test_report_names_unreadable_files_and_size_mismatches(tmp_path):
    root = layouts.input_target(tmp_path / "mine")
    (root / "input" / "2.png").write_bytes(b"\x89PNG broken")
    layouts.write_png(root / "target" / "10.png", 3, size=(8, 8))
    ok, report = _report("folder", root)
    assert not ok
    assert f"{root / 'input' / '2.png'} cannot be decoded" in report
    assert f"{root / 'input' / '10.png'} is 24x16 but its target {root / 'target' / '10.png'} is 8x8" in report
    assert "Fix the problems above" in report
    ok, quick = _report("folder", root, decode=False)  # --quick: sizes from the headers, no decoding
    assert f"{root / 'input' / '10.png'} is 24x16 but its target" in quick


def test_report_accepts_the_documented_sots_indoor_border(tmp_path):
    ok, report = _report("SOTS", layouts.sots(tmp_path / "SOTS"))
    assert "is 24x16 but its target" not in report and "indoor" in report


def test_crop_positions_cover_the_image_up_to_its_edge():
    assert crop_positions(1000, 512, 384) == [0, 384, 488]
    assert crop_positions(896, 512, 384) == [0, 384]
    assert crop_positions(300, 512, 384) == [0]


def test_sidd_crops_are_cut_once_paired_and_the_originals_untouched(tmp_path):
    root = layouts.sidd(tmp_path / "SIDD")
    before = layouts.tree_state(root)
    written = cut_sidd_crops(root, crop=16, stride=12)
    assert written == 6 * 3 * 5  # 6 pairs of 40x56: rows 0, 12, 24 x columns 0, 12, 24, 36, 40
    assert {path: state for path, state in layouts.tree_state(root).items() if path in before} == before
    train = build_dataset("SIDD", root, "train")
    val = build_dataset("SIDD", root, "val")
    assert len(train) + len(val) == 90 and {name.split("_")[0] for name in val.names} == {"0002"}
    for dataset in (train, val):
        for i in range(0, len(dataset), 7):
            item = dataset[i]
            assert item["input"].shape == (3, 16, 16) and signature_ok(item)
    assert cut_sidd_crops(root, crop=16, stride=12) == 0  # a second run (or a resumed one) writes nothing


def test_fivek_expert_c_tiffs_become_srgb_pngs(tmp_path):
    root = layouts.fivek(tmp_path / "FiveK")
    (root / "expertC" / "a0001-jmac_DSC1459.png").unlink()
    levels = np.array([0, 0.02, 0.25, 0.5, 1.0])  # ProPhoto code values of a gray ramp
    ramp = np.repeat(np.repeat(np.round(levels * 65535).astype(np.uint16)[None, :, None], 3, axis=2), 4, axis=0)
    (root / "tiff16_c").mkdir()
    cv2.imwrite(str(root / "tiff16_c" / "a0001-jmac_DSC1459.tif"), ramp)
    _report("FiveK", root)
    converted = read_image(root / "expertC" / "a0001-jmac_DSC1459.png")[0, :, 0]
    # Independently: ROMM decoding (linear below 1/32 of the code range: v / 16, else v ** 1.8),
    # the same neutral in sRGB, then sRGB encoding. Gray stays gray; white stays white.
    linear = np.where(levels < 1 / 32, levels / 16, levels**1.8)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(converted, srgb, atol=1.5 / 255)
    assert (root / "tiff16_c" / "a0001-jmac_DSC1459.tif").exists()


def test_prophoto_green_primary_lands_outside_srgb_and_is_clipped():
    green = prophoto_to_srgb(np.array([[[0.0, 1.0, 0.0]]], np.float32))[0, 0]
    assert green[1] > 0.999 and green[0] == 0.0 and green[2] == 0.0  # ROMM green is far more saturated than sRGB's


def test_cli_exit_codes_and_missing_root_message(tmp_path, capsys):
    assert main(["CBSD68", "--root", str(layouts.clean_set(tmp_path / "CBSD68")), "--quick"]) == 1  # 3 of 68 images
    with pytest.raises(SystemExit) as stopped:
        main(["Kodak24", "--root", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2
    assert "Kodak24 not found" in capsys.readouterr().err


def test_data_prepare_script_runs_as_a_script(tmp_path, monkeypatch, capsys):
    folder = layouts.input_target(tmp_path / "pairs")
    monkeypatch.setattr(sys, "argv", ["data/prepare.py", "folder", "--root", str(folder), "--quick"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository root first
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(ROOT / "data" / "prepare.py"), run_name="__main__")
    assert exit_status.value.code == 0
    assert "Ready." in capsys.readouterr().out
