"""Miniature copies of each benchmark's official layout pair up correctly, by the dataset's own naming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.data import BENCHMARKS, build_dataset, get_benchmark
from restore.data.benchmarks import DEMO_SPLITS, Holdout
from restore.data.layout import DatasetError, Sample
from restore.metrics import Protocol
from tests.data import layouts
from tests.data.layouts import signature_ok
from tests.helpers import ROOT, shared_path

DESIGN_NAMES = (
    "GoPro HIDE RealBlur_J RealBlur_R SIDD DND Rain13k Rain100L Rain100H Test100 Test1200 Test2800 "
    "RESIDE_ITS SOTS LOL FiveK CBSD68 Kodak24 McMaster Urban100 Set12 BSD68 folder"
).split()


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def _assert_paired(dataset, count):
    items = _items(dataset)
    assert len(items) == count
    for item in items:
        assert item["input"].shape == item["target"].shape and item["input"].dtype == torch.float32
        assert signature_ok(item), f"{item['name']} is mispaired"
    return items


def test_the_table_has_every_dataset_design_names():
    assert set(DESIGN_NAMES) <= set(BENCHMARKS)
    for name, benchmark in BENCHMARKS.items():
        assert benchmark.name == name
        assert benchmark.task in ("denoise", "deblur", "derain", "dehaze", "lowlight")
        assert benchmark.kind in ("paired", "clean", "input_only")
        assert set(benchmark.test_splits) <= set(benchmark.splits)
        assert benchmark.layout and benchmark.download


def test_each_benchmark_is_scored_by_its_papers_protocol():
    expected = {
        "GoPro": Protocol("rgb", "matlab3d", "uint8"),
        "HIDE": Protocol("rgb", "matlab3d", "uint8"),
        "RealBlur_J": Protocol("rgb", "gaussian2d", "uint8", align="ecc"),
        "RealBlur_R": Protocol("rgb", "gaussian2d", "uint8", align="ecc"),
        "SIDD": Protocol("rgb", "matlab3d", "float"),
        "SOTS": Protocol("rgb", "gaussian2d", "uint8"),
        "LOL": Protocol("rgb", "gaussian2d", "uint8"),
        "PolyU": Protocol("rgb", "gaussian2d", "uint8"),
        "FiveK": Protocol("rgb", "gaussian2d", "uint8"),
        "CBSD68": Protocol("rgb", "gaussian2d", "uint8"),
        "Set12": Protocol("gray", "gaussian2d", "uint8"),
        "BSD68": Protocol("gray", "gaussian2d", "uint8"),
    }
    expected |= {
        name: Protocol("y", "gaussian2d", "uint8") for name in "Rain100L Rain100H Test100 Test1200 Test2800".split()
    }
    for name, protocol in expected.items():
        assert get_benchmark(name).protocol == protocol, name


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'GoProo'; known datasets: GoPro, HIDE, RealBlur_J"):
        get_benchmark("GoProo")
    assert get_benchmark("gopro") is BENCHMARKS["GoPro"]  # config files use lower case


def test_data_readme_documents_every_dataset_folder():
    readme = (ROOT / "data" / "README.md").read_text()
    for name in BENCHMARKS:
        if BENCHMARKS[name].needs_root and name != "folder":
            assert f"data/{name}/" in readme, name


def test_gopro_pairs_blur_with_sharp_per_scene_and_blur_kind_switches(tmp_path):
    root = layouts.gopro(tmp_path / "GoPro")
    test = _assert_paired(build_dataset("GoPro", root, "test"), 2)
    assert [item["name"] for item in test] == ["GOPR0384_11_00/000001", "GOPR0384_11_00/000002"]
    gamma = build_dataset("GoPro", root, "test", blur_kind="blur_gamma")[0]
    assert round(float(gamma["input"].mean() - gamma["target"].mean()) * 255) == layouts.OFFSET + 20
    with pytest.raises(ValueError, match=r"GoPro: blur_kind='gamma' is not one of \['blur', 'blur_gamma'\]"):
        build_dataset("GoPro", root, "test", blur_kind="gamma")


def test_gopro_validation_is_a_whole_held_out_training_scene(tmp_path):
    root = layouts.gopro(tmp_path / "GoPro")
    train = _assert_paired(build_dataset("GoPro", root, "train"), 4)
    val = _assert_paired(build_dataset("GoPro", root, "val"), 2)
    val_scenes = {item["name"].split("/")[0] for item in val}
    assert val_scenes == {"GOPR0374_11_00"}  # the middle one of three, by the documented rule
    assert not val_scenes & {item["name"].split("/")[0] for item in train}


def test_official_archive_top_folder_is_looked_through(tmp_path):
    layouts.gopro(tmp_path / "GoPro" / "GOPRO_Large")
    assert len(build_dataset("GoPro", tmp_path / "GoPro", "test")) == 2


def test_hide_pairs_both_test_folders_with_the_shared_gt_folder(tmp_path):
    root = layouts.hide(tmp_path / "HIDE")
    test = _assert_paired(build_dataset("HIDE", root, "test"), 3)
    assert {item["name"] for item in test} == {"1fromGOPR1011", "109fromGOPR1096.MP4", "110fromGOPR1087.MP4"}
    _assert_paired(build_dataset("HIDE", root, "train"), 3)
    assert [item["name"] for item in _items(build_dataset("HIDE", root, "val"))] == [
        "5fromGOPR1087.MP4"
    ]  # the middle of 3 videos


@pytest.mark.parametrize("variant", ["J", "R"])
def test_realblur_pairs_follow_its_list_files(tmp_path, variant):
    root = layouts.realblur(tmp_path / f"RealBlur_{variant}", variant)
    test = _assert_paired(build_dataset(f"RealBlur_{variant}", root, "test"), 2)
    assert [item["name"] for item in test] == ["scene230/blur_1", "scene230/blur_2"]
    assert len(build_dataset(f"RealBlur_{variant}", root, "train")) == 4  # one of three scenes held out


def test_sidd_medium_pairs_noisy_with_gt_and_blocks_come_from_the_mat_files(tmp_path):
    root = layouts.sidd(tmp_path / "SIDD")
    medium = _assert_paired(build_dataset("SIDD", root, "medium"), 6)
    assert medium[0]["name"] == "0001_001_S6_00100_00060_3200_L/0001_NOISY_SRGB_010"
    blocks = build_dataset("SIDD", root, "test")
    assert len(blocks) == 6 and blocks.names[:4] == ["00_00", "00_01", "00_02", "01_00"]
    for index, item in enumerate(_items(blocks)):  # block (i, j) holds the value 3 i + j
        assert item["input"].shape == (3, 8, 8)
        assert round(float(item["target"].mean()) * 255) == index
        assert signature_ok(item)


def test_sidd_training_needs_the_prepared_crops_and_says_how(tmp_path):
    root = layouts.sidd(tmp_path / "SIDD")
    with pytest.raises(ValueError, match=r"train_crops does not exist: .*`python data/prepare\.py SIDD --root"):
        build_dataset("SIDD", root, "train")


def test_dnd_reads_its_boxes_from_the_v73_mat_files(tmp_path):
    root = layouts.dnd(tmp_path / "DND")
    dataset = build_dataset("DND", root, "test")
    assert len(dataset) == 6 and dataset.names[:2] == ["0001_01", "0001_02"]
    item = dataset[4]  # image 2, box 2: MATLAB rows 2..5, columns 3..7 (1-based, inclusive)
    assert "target" not in item and item["input"].shape == (3, 4, 5)
    rows, cols = item["input"][0, :, 0], item["input"][1, 0, :]
    torch.testing.assert_close(rows, torch.tensor([1, 2, 3, 4]) / 100 + 0.2)
    torch.testing.assert_close(cols, torch.tensor([2, 3, 4, 5, 6]) / 100)


@pytest.mark.parametrize("name", ["Rain13k", "Rain100L", "Rain100H", "Test100", "Test1200", "Test2800"])
def test_rain_sets_pair_input_and_target_by_name_not_by_position(tmp_path, name):
    root = layouts.input_target(tmp_path / name)
    split = "train" if name == "Rain13k" else "test"
    items = _assert_paired(build_dataset(name, root, split), 3 if name == "Rain13k" else 4)
    assert all(item["name"] in {"1", "2", "10", "11"} for item in items)


def test_reside_its_pairs_every_hazy_version_with_its_clear_image(tmp_path):
    root = layouts.reside_its(tmp_path / "RESIDE_ITS")
    train = _assert_paired(build_dataset("RESIDE_ITS", root, "train"), 4)
    val = _assert_paired(build_dataset("RESIDE_ITS", root, "val"), 2)
    assert {item["name"] for item in val} == {"2_1_0.62", "2_2_1.41"}  # both hazy versions of clear image 2
    assert not {item["name"].split("_")[0] for item in train} & {"2"}


def test_reside_ots_reads_hazy_images_in_any_sub_folder(tmp_path):
    root = tmp_path / "RESIDE_OTS"
    for k, image_id in enumerate(("0001", "0002")):
        layouts.write_png(root / "clear" / "clear_images" / f"{image_id}.png", k)
        layouts.write_png(root / "hazy" / f"part{k + 1}" / f"{image_id}_0.8_0.04.png", k + layouts.OFFSET)
    _assert_paired(build_dataset("RESIDE_OTS", root, "train"), 1)
    _assert_paired(build_dataset("RESIDE_OTS", root, "val"), 1)


def test_sots_indoor_gt_is_cropped_to_the_hazy_size_around_its_centre(tmp_path):
    root = layouts.sots(tmp_path / "SOTS")
    indoor = _assert_paired(build_dataset("SOTS", root, "indoor"), 4)
    for item in indoor:  # the white border is gone: the target is the constant inside it
        assert item["target"].shape == (3, *layouts.SIZE) and item["target"].std() == 0
    _assert_paired(build_dataset("SOTS", root, "outdoor"), 2)


def test_lol_pairs_low_with_high_in_our485_and_eval15(tmp_path):
    root = layouts.lol(tmp_path / "LOL")
    _assert_paired(build_dataset("LOL", root, "test"), 2)
    assert len(build_dataset("LOL", root, "train")) + len(build_dataset("LOL", root, "val")) == 4


def test_polyu_pairs_each_real_shot_with_the_mean_of_its_scene():
    dataset = build_dataset("PolyU", shared_path("benchmarks", "PolyU"), "test")
    assert len(dataset) == 100
    item = dataset[0]
    assert item["name"] == "Canon5D2_5_160_3200_chair_11"
    assert item["input"].shape == item["target"].shape == (3, 512, 512)
    noise = (item["input"] - item["target"]) * 255
    assert 1 < noise.std() < 20  # real camera noise of a few levels on the 0-255 scale


def test_polyu_shot_without_its_mean_is_named(tmp_path):
    root = tmp_path / "PolyU"
    layouts.write_png(root / "sceneA_real.png", 10)
    layouts.write_png(root / "sceneA_mean.png", 12)
    layouts.write_png(root / "sceneB_real.png", 10)
    with pytest.raises(DatasetError, match=r"1 input\(s\) without a target, e.g. .*sceneB_real.png"):
        build_dataset("PolyU", root, "test")


def test_fivek_splits_by_image_number(tmp_path):
    root = layouts.fivek(tmp_path / "FiveK")
    assert build_dataset("FiveK", root, "test").names == ["a4541-DSC_0040-2"]
    train_and_val = build_dataset("FiveK", root, "train").names + build_dataset("FiveK", root, "val").names
    assert sorted(train_and_val) == ["a0001-jmac_DSC1459", "a0002-dgw_005", "a4500-kme_0204"]


def test_folder_pairs_matching_names_and_holds_out_validation(tmp_path):
    root = layouts.input_target(tmp_path / "mine")
    _assert_paired(build_dataset("folder", root, "all"), 4)
    train, val = build_dataset("folder", root, "train").names, build_dataset("folder", root, "val").names
    assert len(val) == 1 and sorted(train + val) == ["1", "10", "11", "2"]


def test_clean_set_noise_is_the_same_for_image_i_and_seed_every_time(tmp_path):
    root = layouts.clean_set(tmp_path / "Kodak24")
    spec = {"name": "gaussian_noise", "sigma": 25}
    first = build_dataset("Kodak24", root, "test", degradation=spec, seed=3)
    again = build_dataset("Kodak24", root, "test", degradation=spec, seed=3)
    for i in reversed(range(len(first))):  # another order: the same noise
        torch.testing.assert_close(first[i]["input"], again[i]["input"], rtol=0, atol=0)
    assert not torch.equal(
        first[0]["input"], build_dataset("Kodak24", root, "test", degradation=spec, seed=4)[0]["input"]
    )
    assert not torch.equal(first[0]["input"] - first[0]["target"], first[1]["input"] - first[1]["target"])


def test_gray_sets_get_gray_noise_on_three_identical_channels():
    folder = shared_path("benchmarks", "Set12")
    dataset = build_dataset("Set12", folder, "test", degradation={"name": "gaussian_noise", "sigma": 25})
    assert len(dataset) == 12
    item = dataset[0]
    for key in ("input", "target"):
        assert torch.equal(item[key][0], item[key][1]) and torch.equal(item[key][0], item[key][2])
    assert abs((item["input"] - item["target"]).std().item() * 255 - 25) < 1.25


def test_real_cbsd68_reads_all_68_images_with_seeded_noise():
    folder = shared_path("benchmarks", "CBSD68")
    dataset = build_dataset("CBSD68", folder, "test", degradation={"name": "gaussian_noise", "sigma": 15})
    assert len(dataset) == 68 and dataset.names[0] == "101085"
    item = dataset[0]
    assert sorted(item["target"].shape[1:]) == [321, 481]
    assert abs((item["input"] - item["target"]).std().item() * 255 - 15) < 0.75


def test_demo_split_is_fixed_and_uses_scikit_image_photos():
    train = build_dataset("demo", None, "train", degradation="gaussian_noise")
    val = build_dataset("demo", None, "val", degradation="gaussian_noise")
    assert train.names == list(DEMO_SPLITS["train"]) and val.names == ["chelsea", "coins"]
    assert {"astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"} <= set(train.names)
    assert val[1]["target"].shape == (3, 303, 384)  # coins, gray, expanded to RGB


def test_holdout_takes_evenly_spaced_whole_groups():
    samples = [Sample(f"{g}/{i}", None, None, group=f"g{g:02d}") for g in range(20) for i in range(3)]
    train, val = Holdout(fraction=0.1).split(samples, "test")
    assert sorted({s.group for s in val}) == ["g05", "g15"]
    assert len(val) == 6 and len(train) == 54 and not {s.group for s in val} & {s.group for s in train}


def test_max_images_keeps_evenly_spaced_items(tmp_path):
    root = layouts.clean_set(tmp_path / "Urban100", names=[f"img_{i:03d}" for i in range(10)], size=(4, 4))
    dataset = build_dataset("Urban100", root, "test", degradation="gaussian_noise", max_images=3)
    assert dataset.names == ["img_001", "img_005", "img_008"]


def test_input_only_items_have_no_target_key(tmp_path):
    item = build_dataset("DND", layouts.dnd(tmp_path / "DND"), "test")[0]
    assert set(item) == {"input", "name"}


def test_patches_and_flips_are_identical_on_input_and_target(tmp_path):
    root = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        target = rng.integers(0, 150, (20, 28, 3), dtype=np.uint8)
        (root / "input").mkdir(parents=True, exist_ok=True)
        (root / "target").mkdir(parents=True, exist_ok=True)
        import cv2

        cv2.imwrite(str(root / "target" / f"{name}.png"), target)
        cv2.imwrite(str(root / "input" / f"{name}.png"), target + 100)
    dataset = build_dataset("folder", root, "all", patch_size=8, augment=True, seed=1)
    crops = set()
    for i in range(2):
        item = dataset[i]
        assert item["input"].shape == (3, 8, 8)
        torch.testing.assert_close(item["input"] * 255, item["target"] * 255 + 100, atol=1e-3, rtol=0)
        crops.add(tuple(item["target"].flatten().tolist()))
    assert len(crops) == 2


def test_cached_training_items_equal_decoded_ones_and_the_cache_lives_outside_the_root(tmp_path):
    from restore.data.sampling import StreamKey

    root = layouts.gopro(tmp_path / "GoPro")
    before = layouts.tree_state(root)
    plain = build_dataset("GoPro", root, "train", patch_size=8, augment=True)
    cached = build_dataset("GoPro", root, "train", patch_size=8, augment=True, cache_dir=tmp_path / "cache")
    for _ in range(2):  # the first pass fills the cache, the second reads it
        for position in range(6):
            key = StreamKey(position % len(plain), position)
            assert torch.equal(plain[key]["input"], cached[key]["input"])
            assert torch.equal(plain[key]["target"], cached[key]["target"])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 8  # 4 pairs, decoded once each
    assert layouts.tree_state(root) == before


@pytest.mark.parametrize("name, gray", [("CBSD432", False), ("Train400", True)])
def test_clean_training_sets_hold_out_three_percent_by_name_and_have_no_test_split(tmp_path, name, gray):
    root = layouts.clean_set(tmp_path / name, names=[f"{i:03d}" for i in range(100)], size=(8, 8))
    benchmark = get_benchmark(name)
    assert benchmark.kind == "clean" and benchmark.gray is gray
    assert benchmark.splits == ("train", "val") and benchmark.test_splits == ()
    noise = {"name": "gaussian_noise", "sigma": 25}
    train = build_dataset(name, root, "train", degradation=noise, patch_size=4)
    val = build_dataset(name, root, "val", degradation=noise, seed=42)
    assert val.names == ["016", "050", "083"]  # 3 of 100, evenly spaced, the same every time
    assert len(train) == 97 and not set(train.names) & set(val.names)
    again = build_dataset(name, root, "val", degradation=noise, seed=42)
    torch.testing.assert_close(val[1]["input"], again[1]["input"], rtol=0, atol=0)


@pytest.mark.parametrize("name, count, held", [("CBSD432", 432, 13), ("Train400", 400, 12)])
def test_real_training_sets_are_disjoint_from_their_test_sets(name, count, held):
    folder = shared_path("benchmarks", name)
    test_set = {"CBSD432": "CBSD68", "Train400": "BSD68"}[name]
    train = build_dataset(name, folder, "train", degradation={"name": "gaussian_noise", "sigma": 25}, patch_size=64)
    val = build_dataset(name, folder, "val", degradation={"name": "gaussian_noise", "sigma": 25})
    assert len(train) + len(val) == count and len(val) == held
    test_names = {path.stem for path in shared_path("benchmarks", test_set).iterdir()}
    assert not test_names & (set(train.names) | set(val.names))
