"""Bad input gets one clear error naming the path or key and what was expected; nothing is ever written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from restore.data import DatasetError, ImageReadError, build_dataset, build_degradation
from tests.data import layouts


def test_missing_root_says_what_to_put_where_and_how_to_run_without_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        build_dataset("GoPro", tmp_path / "GoPro", "train")
    message = str(error.value)
    assert f"GoPro not found: {tmp_path / 'GoPro'} does not exist" in message
    assert "{train,test}/<scene>/blur/NNNNNN.png" in message  # the expected layout
    assert "seungjunnah.github.io" in message and "data/README.md" in message
    assert "data=demo" in message


def test_missing_split_folder_names_it(tmp_path):
    root = layouts.gopro(tmp_path / "GoPro")
    shutil.rmtree(root / "test")
    with pytest.raises(DatasetError, match=rf"{root / 'test'} does not exist; expected GoPro's test/<scene>/"):
        build_dataset("GoPro", root, "test")


def test_unknown_split_lists_the_splits(tmp_path):
    with pytest.raises(ValueError, match=r"SOTS has no split 'test'; its splits: indoor, outdoor"):
        build_dataset("SOTS", tmp_path, "test")


def test_empty_folder_names_it(tmp_path):
    (tmp_path / "Rain100L" / "input").mkdir(parents=True)
    (tmp_path / "Rain100L" / "target").mkdir()
    with pytest.raises(
        DatasetError, match=rf"{tmp_path / 'Rain100L' / 'input'} holds no image files; expected Rain100L"
    ):
        build_dataset("Rain100L", tmp_path / "Rain100L", "test")


def test_empty_clean_set_names_it(tmp_path):
    (tmp_path / "CBSD68").mkdir()
    with pytest.raises(DatasetError, match=r"CBSD68 holds no image files; expected the clean images of CBSD68"):
        build_dataset("CBSD68", tmp_path / "CBSD68", "test", degradation="gaussian_noise")


def test_input_without_target_is_named(tmp_path):
    root = layouts.input_target(tmp_path / "Rain100H")
    (root / "target" / "10.png").unlink()
    with pytest.raises(DatasetError) as error:
        build_dataset("Rain100H", root, "test")
    message = str(error.value)
    assert "1 input(s) without a target, e.g. " + str(root / "input" / "10.png") in message
    assert "never by order" in message and "without an input" not in message


def test_target_without_input_is_named(tmp_path):
    root = layouts.gopro(tmp_path / "GoPro")
    (root / "test" / "GOPR0384_11_00" / "blur" / "000002.png").unlink()
    with pytest.raises(DatasetError, match=r"1 target\(s\) without an input, e.g. .*GOPR0384_11_00/sharp/000002\.png"):
        build_dataset("GoPro", root, "test")


def test_hazy_image_without_its_gt_is_named(tmp_path):
    root = layouts.sots(tmp_path / "SOTS")
    layouts.write_png(root / "outdoor" / "hazy" / "0099_0.8_0.2.png", 5)
    with pytest.raises(DatasetError, match=r"1 input\(s\) without a target, e.g. .*0099_0\.8_0\.2\.png"):
        build_dataset("SOTS", root, "outdoor")


def test_the_same_name_twice_is_refused_not_silently_dropped(tmp_path):
    root = layouts.reside_its(tmp_path / "RESIDE_OTS")
    layouts.write_png(root / "hazy" / "part2" / "1_1_0.62.png", 7)  # also in hazy/ itself
    with pytest.raises(DatasetError, match=r"1_1_0\.62\.png and .*part2/1_1_0\.62\.png have the same name"):
        build_dataset("RESIDE_OTS", root, "train")


def test_pair_of_different_sizes_names_both_files(tmp_path):
    root = layouts.input_target(tmp_path / "mine")
    layouts.write_png(root / "target" / "2.png", 1, size=(10, 12))
    dataset = build_dataset("folder", root, "all")
    with pytest.raises(DatasetError) as error:
        dataset[dataset.names.index("2")]
    assert f"{root / 'input' / '2.png'} is 24x16 but its target {root / 'target' / '2.png'} is 12x10" in str(
        error.value
    )


def test_sots_outdoor_gets_no_size_exception(tmp_path):
    root = layouts.sots(tmp_path / "SOTS")
    layouts.write_png(root / "outdoor" / "gt" / "0001.png", 10, size=(20, 28))
    with pytest.raises(DatasetError, match=r"0001_0\.8_0\.2\.png is 24x16 but its target .*0001\.png is 28x20"):
        build_dataset("SOTS", root, "outdoor")[0]


def test_truncated_png_in_a_dataset_names_the_file(tmp_path):
    root = layouts.input_target(tmp_path / "Test100")
    path = root / "input" / "11.png"
    path.write_bytes(path.read_bytes()[:40])
    dataset = build_dataset("Test100", root, "test")
    with pytest.raises(ImageReadError, match=rf"{path} cannot be decoded"):
        dataset[dataset.names.index("11")]


def test_zero_byte_file_in_a_dataset_names_the_file(tmp_path):
    root = layouts.lol(tmp_path / "LOL")
    path = root / "eval15" / "high" / "22.png"
    path.write_bytes(b"")
    dataset = build_dataset("LOL", root, "test")
    with pytest.raises(ImageReadError, match=rf"{path} is empty \(0 bytes\)"):
        dataset[dataset.names.index("22")]


def test_directory_where_an_image_should_be_is_named(tmp_path):
    root = layouts.input_target(tmp_path / "Test1200")
    (root / "target" / "1.png").unlink()
    (root / "target" / "1.png").mkdir()
    with pytest.raises(DatasetError, match=rf"{root / 'target' / '1.png'} is a directory; expected an image file"):
        build_dataset("Test1200", root, "test")


def test_file_where_the_root_should_be_is_named(tmp_path):
    (tmp_path / "LOL").write_text("not a folder")
    with pytest.raises(DatasetError, match=rf"LOL not found: {tmp_path / 'LOL'} is a file"):
        build_dataset("LOL", tmp_path / "LOL", "test")


def test_list_file_naming_a_missing_image_is_reported(tmp_path):
    root = layouts.realblur(tmp_path / "RealBlur_J")
    (root / "RealBlur-J_ECC_IMCORR_centroid_itensity_ref" / "scene230" / "gt" / "gt_2.png").unlink()
    with pytest.raises(
        DatasetError, match=r"RealBlur_J_test_list\.txt lists 1 file\(s\) missing .*scene230/gt/gt_2\.png"
    ):
        build_dataset("RealBlur_J", root, "test")


def test_patch_size_larger_than_an_image_names_the_image(tmp_path):
    root = layouts.input_target(tmp_path / "mine")
    dataset = build_dataset("folder", root, "all", patch_size=20)
    with pytest.raises(DatasetError, match=r"input/1\.png is 24x16, smaller than patch_size=20; lower patch_size"):
        dataset[0]


def test_sidd_mat_file_with_the_wrong_variable_is_named(tmp_path):
    import scipy.io

    root = layouts.sidd(tmp_path / "SIDD")
    scipy.io.savemat(root / "ValidationGtBlocksSrgb.mat", {"SomethingElse": np.zeros((2, 3, 8, 8, 3), np.uint8)})
    with pytest.raises(ImageReadError, match=r"ValidationGtBlocksSrgb\.mat has no variable 'ValidationGtBlocksSrgb'"):
        build_dataset("SIDD", root, "test")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "Nope", "root": "x", "split": "test"}, r"unknown dataset 'Nope'; known datasets: GoPro"),
        ({"name": "demo", "root": None, "split": "val", "degradation": "fog"}, r"unknown degradation 'fog'; known"),
        ({"name": "demo", "root": None, "split": "val"}, r"demo holds clean images only: name a degradation"),
        ({"name": "GoPro", "root": "x", "split": "test", "degradation": "gaussian_noise"}, r"GoPro has real degraded"),
        (
            {"name": "GoPro", "root": "x", "split": "test", "blurkind": "blur"},
            r"GoPro has no option blurkind; its options: blur_kind",
        ),
        (
            {"name": "demo", "root": "x", "split": "val", "degradation": "haze"},
            r"demo reads no files; leave its root empty",
        ),
        (
            {"name": "demo", "root": None, "split": "val", "degradation": "haze", "patch_size": 0},
            r"patch_size must be a positive",
        ),
        (
            {"name": "demo", "root": None, "split": "val", "degradation": "haze", "seed": -1},
            r"seed must be a non-negative",
        ),
    ],
)
def test_bad_arguments_get_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(**kwargs)


def test_reading_never_writes_or_moves_anything_under_a_dataset_root(tmp_path):
    roots = {
        "GoPro": layouts.gopro(tmp_path / "GoPro"),
        "SIDD": layouts.sidd(tmp_path / "SIDD"),
        "SOTS": layouts.sots(tmp_path / "SOTS"),
        "LOL": layouts.lol(tmp_path / "LOL"),
    }
    before = layouts.tree_state(tmp_path)
    for name, root in roots.items():
        for split in ("train", "val", "test", "medium", "indoor", "outdoor"):
            try:
                dataset = build_dataset(name, root, split, patch_size=4, augment=True)
            except ValueError:
                continue  # a split this dataset lacks (or SIDD crops not prepared)
            for i in range(len(dataset)):
                dataset[i]
    assert layouts.tree_state(tmp_path) == before


def test_degradation_without_a_spec_name_is_refused():
    with pytest.raises(ValueError, match=r"known degradations: gaussian_noise"):
        build_degradation({"sigma": 25})
