"""The datamodule: configs compose, demo batches for every task, a seeded resumable stream, DDP sharding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue

from restore.data import DatasetError
from restore.data.datamodule import RestorationDataModule
from restore.data.sampling import StreamKey, TrainStreamSampler
from restore.metrics import Protocol
from tests.data import layouts
from tests.helpers import ROOT

TASK_DEGRADATIONS = {  # what the task configs (not part of this package) will set as `degradation`
    "denoise": "{name: gaussian_noise, sigma: 25}",
    "deblur": "{name: motion_blur, kernel_size: [5, 9]}",
    "derain": "{name: rain}",
    "dehaze": "{name: haze}",
    "lowlight": "{name: low_light}",
}


def compose_data(*overrides: str, data_root: Path | str = "data", degradation: str = TASK_DEGRADATIONS["denoise"]):
    """The data group composed by Hydra as a training config would, with top-level data_root and degradation."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(overrides=[f"+data_root={data_root}", f"+degradation={degradation}", *overrides]).data


def _batches(loader, count):
    iterator = iter(loader)
    return [next(iterator) for _ in range(count)]


@pytest.mark.parametrize("task", sorted(TASK_DEGRADATIONS))
def test_demo_yields_patch_batches_and_full_size_validation_for_every_task(task):
    config = compose_data("+data=demo", "data.patch_size=32", "data.batch_size=3", degradation=TASK_DEGRADATIONS[task])
    datamodule = instantiate(config)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input"].shape == batch["target"].shape == (3, 3, 32, 32) and len(batch["name"]) == 3
    assert not torch.equal(batch["input"], batch["target"])  # the task's degradation was applied
    (val_loader,) = datamodule.val_dataloader()
    val = [item for item in val_loader]
    assert [item["name"] for item in val] == [["chelsea"], ["coins"]]
    assert val[0]["input"].shape == (1, 3, 300, 451) and val[1]["target"].shape == (1, 3, 303, 384)
    assert datamodule.val_names == ["demo/val"] and datamodule.val_protocols == [Protocol("rgb", "gaussian2d", "uint8")]


def test_demo_validation_pairs_are_the_same_in_every_run():
    first, again = (instantiate(compose_data("+data=demo", "+seed=5")) for _ in range(2))
    other_seed = instantiate(compose_data("+data=demo", "+seed=6"))
    for datamodule in (first, again, other_seed):
        datamodule.setup("validate")
    assert first.seed == 5  # the run's top-level seed reaches the data
    item, same, other = (dm.val_datasets[0][0]["input"] for dm in (first, again, other_seed))
    assert torch.equal(item, same) and not torch.equal(item, other)


def test_training_stream_is_identical_for_any_number_of_workers():
    batches = {}
    for workers in (0, 2):
        datamodule = instantiate(compose_data("+data=demo", f"data.num_workers={workers}", "data.patch_size=16"))
        datamodule.setup("fit")
        batches[workers] = _batches(datamodule.train_dataloader(), 2)
    for plain, parallel in zip(batches[0], batches[2]):
        assert plain["name"] == parallel["name"]
        assert torch.equal(plain["input"], parallel["input"]) and torch.equal(plain["target"], parallel["target"])


def _stream(datamodule, epochs):
    """Every batch of the next ``epochs`` epochs, as Lightning iterates them (a new iterator per epoch)."""
    loader = datamodule.train_dataloader()
    return [batch for _ in range(epochs) for batch in loader]


def test_train_start_resumes_the_stream_exactly_where_it_stopped():
    config = compose_data("+data=demo", "data.patch_size=16", "data.batch_size=2")
    uninterrupted = instantiate(config)
    uninterrupted.setup("fit")
    assert len(uninterrupted.train_dataloader()) == 11 // 2  # batches per epoch: 11 demo photos
    full = _stream(uninterrupted, 3)
    resumed = instantiate(config)
    resumed.setup("fit")
    resumed.train_start = 7 * 2  # seven batches consumed: killed mid-way through the second epoch
    tail = _stream(resumed, 2)  # the rest of epoch 2, then epoch 3
    assert len(tail) == len(full) - 7
    for expected, got in zip(full[7:], tail):
        assert expected["name"] == got["name"] and torch.equal(expected["input"], got["input"])


def test_every_epoch_is_a_new_permutation_of_the_images():
    sampler = TrainStreamSampler(10, 5, seed=0)
    epochs = [[key.image for key in sampler] for _ in range(3)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    positions = [key.position for key in TrainStreamSampler(10, 5, seed=0)]
    assert positions == list(range(10))


def test_patches_per_image_cuts_consecutive_crops_from_one_image():
    keys = list(TrainStreamSampler(5, 4, seed=1, patches_per_image=2))
    assert len(keys) == 8  # 5 images x 2 crops = 10 samples -> 2 whole batches of 4
    for first, second in zip(keys[::2], keys[1::2]):
        assert first.image == second.image and second.position == first.position + 1
    datamodule = instantiate(compose_data("+data=demo", "data.patch_size=16", "data.patches_per_image=2"))
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["name"][0] == batch["name"][1] and not torch.equal(batch["target"][0], batch["target"][1])


def test_channel_shuffle_reorders_the_colors_of_the_same_crop():
    def targets(shuffle):
        datamodule = instantiate(compose_data("+data=demo", "data.patch_size=16", f"data.channel_shuffle={shuffle}"))
        datamodule.setup("fit")
        return [datamodule.train_dataset[StreamKey(image=i % 4, position=i)]["target"] for i in range(12)]

    orders = set()
    for plain, shuffled in zip(targets("false"), targets("true")):
        order = [next(c for c in range(3) if torch.equal(shuffled[k], plain[c])) for k in range(3)]
        assert sorted(order) == [0, 1, 2]  # the same crop and flips, its channels reordered
        orders.add(tuple(order))
    assert len(orders) >= 3


def test_ranks_draw_disjoint_shards_of_the_stream():
    ranks = [TrainStreamSampler(9, 2, seed=3, rank=rank, world_size=2) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 9 images / 2 ranks -> 2 whole batches of 2 each
    keys = [[ranks[rank].key(i) for i in range(9)] for rank in range(2)]
    positions = [{key.position for key in rank_keys} for rank_keys in keys]
    assert not positions[0] & positions[1] and positions[0] | positions[1] == set(range(18))
    single = TrainStreamSampler(9, 2, seed=3)
    for rank in range(2):  # the same global stream, dealt out in turns
        for i, key in enumerate(keys[rank]):
            assert key == single.key(2 * i + rank)


def _distributed_worker(rank: int, world_size: int, init_file: str, data_root: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    datamodule = RestorationDataModule("folder", f"{data_root}/mine", patch_size=8, batch_size=2, num_workers=0)
    datamodule.setup("fit")
    # (name, weight): a rank with no held-out image of its own scores a stand-in with weight 0
    names = [
        (batch["name"][0], float(batch["weight"][0]) if "weight" in batch else 1.0)
        for loader in datamodule.val_dataloader()
        for batch in loader
    ]
    test_names = [batch["name"][0] for loader in datamodule.test_dataloader() for batch in loader]
    positions = [key.position for key in datamodule.train_dataloader().sampler]
    Path(out, f"{rank}.json").write_text(json.dumps({"val": names, "test": test_names, "positions": positions}))
    torch.distributed.destroy_process_group()


def test_under_ddp_every_image_is_validated_once_and_training_shards_are_disjoint(tmp_path):
    root = layouts.input_target(tmp_path / "mine", names=[f"{i:02d}" for i in range(23)])
    # fork: the workers inherit the imported modules (spawn would re-import torch and Lightning, ~10 s)
    args = (2, str(tmp_path / "init"), str(tmp_path), str(tmp_path))
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="fork")
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    all_names = sorted(path.stem for path in (root / "input").iterdir())
    assert sorted(results[0]["test"] + results[1]["test"]) == all_names  # 23 images: 12 + 11, no padding duplicate
    assert len(results[0]["test"]) == 12 and len(results[1]["test"]) == 11
    val = results[0]["val"] + results[1]["val"]
    assert len(results[0]["val"]) == len(results[1]["val"]) == 1  # Lightning wants a batch from every rank
    assert sorted(weight for _, weight in val) == [0.0, 1.0]  # the one held-out pair, counted once
    assert not set(results[0]["positions"]) & set(results[1]["positions"])


def test_multiple_test_sets_come_with_names_and_protocols_in_loader_order(tmp_path):
    names = ["Rain100L", "Rain100H", "Test100", "Test1200", "Test2800"]
    layouts.input_target(tmp_path / "Rain13k")
    for name in names:
        layouts.input_target(tmp_path / name, names=(name.lower(),))
    datamodule = instantiate(compose_data("+data=rain13k", "data.num_workers=0", data_root=tmp_path))
    assert datamodule.test_names == [f"{name}/test" for name in names]
    assert datamodule.test_protocols == [Protocol("y", "gaussian2d", "uint8")] * 5
    loaders = datamodule.test_dataloader()
    assert [next(iter(loader))["name"] for loader in loaders] == [[name.lower()] for name in names]
    assert datamodule.val_names == ["Rain13k/val"]


def test_gopro_config_reads_data_root_and_blur_kind(tmp_path):
    layouts.gopro(tmp_path / "GoPro")
    overrides = [
        "+data=gopro",
        "data.blur_kind=blur_gamma",
        "data.patch_size=8",
        "data.batch_size=2",
        "data.num_workers=0",
    ]
    datamodule = instantiate(compose_data(*overrides, data_root=tmp_path))
    assert datamodule.root == f"{tmp_path}/GoPro" and datamodule.options == {"blur_kind": "blur_gamma"}
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input"].shape == (2, 3, 8, 8)
    offset = (batch["input"] - batch["target"]).mean() * 255
    assert round(float(offset)) == layouts.OFFSET + 20  # the blur_gamma frames
    assert datamodule.val_names == ["GoPro/val"] and datamodule.test_names == ["GoPro/test"]


def test_folder_config_takes_its_root_from_the_command_line(tmp_path):
    layouts.input_target(tmp_path / "pairs")
    datamodule = instantiate(
        compose_data("+data=folder", f"data.root={tmp_path}/pairs", "data.patch_size=8", "data.num_workers=0")
    )
    datamodule.setup("fit")
    assert len(datamodule.train_dataset) == 3 and len(datamodule.val_datasets[0]) == 1
    with pytest.raises(MissingMandatoryValue, match="root"):
        instantiate(compose_data("+data=folder"))


def test_every_data_config_composes_and_instantiates(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for path in sorted((ROOT / "conf" / "data").glob("[!_]*.yaml")):
            overrides = [f"+data={path.stem}", f"+data_root={tmp_path}", "+degradation={name: haze}"]
            config = compose(overrides=overrides + (["data.root=x"] if path.stem == "folder" else []))
            datamodule = instantiate(config.data)
            assert isinstance(datamodule, RestorationDataModule), path.name
            assert datamodule.test_names or datamodule.benchmark.test_splits == (), path.name


def test_missing_dataset_says_where_to_put_it_and_that_demo_runs_without_it(tmp_path):
    datamodule = instantiate(compose_data("+data=gopro", data_root=tmp_path / "data"))
    with pytest.raises(DatasetError, match=r"(?s)GoPro not found: .*data/GoPro does not exist.*data=demo"):
        datamodule.setup("fit")


def test_test_only_dataset_refuses_to_train_with_a_clear_error(tmp_path):
    datamodule = instantiate(compose_data("+data=rain100l", data_root=tmp_path))
    with pytest.raises(ValueError, match=r"Rain100L is a test-only dataset .* e\.g\. data=demo"):
        datamodule.setup("fit")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 0}, r"data\.patch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, r"data\.batch_size must be an integer >= 1"),
        ({"num_workers": -1}, r"data\.num_workers must be an integer >= 0"),
        ({"val_max_images": 0}, r"data\.val_max_images must be a positive integer or null"),
        ({"channel_shuffle": "yes"}, r"data\.channel_shuffle must be true or false, got .yes."),
        ({"blurkind": "blur"}, r"GoPro has no option blurkind; its options: blur_kind"),
        ({"train_split": "training"}, r"data\.train_split='training': GoPro has splits train, test, val"),
        ({"val_sets": [{"split": "val", "sigma": 5}]}, r"data\.val_sets\[0\] has unknown key\(s\) sigma"),
        ({"val_sets": [{"name": "HIDE", "split": "test"}]}, r"data\.val_sets\[0\] \(HIDE\) needs a root"),
        ({"test_sets": [{"name": "GoPro"}]}, r"data\.test_sets\[0\] needs a split"),
    ],
)
def test_bad_config_values_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RestorationDataModule("GoPro", "data/GoPro", **kwargs)


def test_stream_keys_and_plain_indices_give_deterministic_items():
    datamodule = RestorationDataModule("demo", degradation={"name": "haze"}, patch_size=16)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    key = StreamKey(image=3, position=41)
    assert torch.equal(dataset[key]["input"], dataset[key]["input"])
    assert not torch.equal(dataset[key]["target"], dataset[StreamKey(3, 42)]["target"])


def test_a_lightning_trainer_fits_and_validates_on_it_without_its_own_sampler():
    import lightning as L
    from torch.nn import functional as F

    class Identityish(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["name"])
            return F.l1_loss(self.net(batch["input"]), batch["target"])

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("val_l1", F.l1_loss(self.net(batch["input"]), batch["target"]), batch_size=1)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters())

    datamodule = instantiate(compose_data("+data=demo", "data.patch_size=32", "data.batch_size=2"))
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        val_check_interval=3,
    )
    model = Identityish()
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3 and "val_l1" in trainer.callback_metrics
    expected = [
        b["name"]
        for b in _stream(instantiate(compose_data("+data=demo", "data.patch_size=32", "data.batch_size=2")), 1)
    ]
    assert model.seen == expected[:3]  # the seeded stream, batch for batch


def test_a_dataset_spec_reads_its_noise_level_from_its_degradation_in_any_mapping():
    from omegaconf import OmegaConf

    from restore.data.datamodule import DatasetSpec

    noise = {"name": "gaussian_noise", "sigma": 25}
    row = DatasetSpec("CBSD68", "test", None, degradation=noise, label="CBSD68 σ25")
    assert row.sigma == 25 and row.folder == "CBSD68_sigma25"
    assert DatasetSpec("CBSD68", "test", None, degradation=OmegaConf.create(noise)).sigma == 25
    blur = {"name": "gaussian_blur", "sigma": 2.0}
    assert DatasetSpec("demo", "val", None, degradation=blur).sigma is None
    assert DatasetSpec("GoPro", "test", None, label="SOTS indoor").folder == "SOTS_indoor"
