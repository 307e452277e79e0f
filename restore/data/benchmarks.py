"""The one table of datasets: layout, pairing rule, splits and scoring protocol of each.

Every fact about a dataset lives here and nowhere else. A dataset's root is the
folder ``<data_root>/<Name>/`` holding the layout its official archive unpacks
to (``layout`` below); when the archive adds its own top folder (``GOPRO_Large/``,
``LOLdataset/``, ...) the root may hold that folder instead.

Splits use one vocabulary: ``train`` (what training reads), ``val`` (what
training validates on; held out of the official training data where the
dataset has no validation split of its own: whole groups such as GoPro scenes,
never the test set) and ``test`` (the numbers papers report). SOTS has
``indoor``/``outdoor``; SIDD's official "validation" blocks, which every paper
reports, are its ``test``; ``folder`` has ``all``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from restore.data.io import mat_variable_shape
from restore.data.layout import (
    DatasetError,
    FileSource,
    MatBlockSource,
    MatCropSource,
    Sample,
    SkimageSource,
    index_by_stem,
    list_images,
    pair_files,
    require_dir,
    require_file,
)
from restore.metrics import Protocol

Task = Literal["denoise", "deblur", "derain", "dehaze", "lowlight"]
Kind = Literal["paired", "clean", "input_only"]
Rule = Callable[[Path, str, Mapping[str, Any]], list[Sample]]


@dataclass(frozen=True)
class Holdout:
    """Validation held out of ``source`` (the official training split).

    Whole groups (scenes, ground-truth ids, ...) are held out so that near-identical
    frames never sit on both sides: of the sorted groups, ``round(fraction * n)``
    (at least one) evenly spaced ones, the i-th of k at position ``(2i + 1) * n // (2k)``.
    """

    fraction: float
    source: str = "train"

    def split(self, samples: list[Sample], where: str) -> tuple[list[Sample], list[Sample]]:
        groups = sorted({sample.group for sample in samples})
        if len(groups) < 2:
            raise DatasetError(
                f"{where}: {len(samples)} image(s) in {len(groups)} group(s); holding out validation "
                "needs at least two (add images, or validate on another dataset)"
            )
        count = max(1, round(self.fraction * len(groups)))
        held = {groups[(2 * i + 1) * len(groups) // (2 * count)] for i in range(count)}
        train = [sample for sample in samples if sample.group not in held]
        val = [sample for sample in samples if sample.group in held]
        return train, val


@dataclass(frozen=True)
class Benchmark:
    """One dataset: what it is for, how it is laid out and paired, how it is scored."""

    name: str
    task: Task
    kind: Kind  # paired (input + target), clean (targets; a degradation makes inputs), input_only
    official_splits: tuple[str, ...]
    protocol: Protocol  # the scoring of the paper that reports this benchmark
    layout: str  # the tree under the root, as the official archive unpacks
    download: str
    rule: Rule = field(repr=False)  # (root, official split, options) -> samples, paired by the dataset's naming
    test_splits: tuple[str, ...] = ("test",)
    holdout: Holdout | None = None
    options: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # allowed values, the first is the default
    counts: Mapping[str, int] = field(default_factory=dict)  # official number of samples per split
    gray: bool = False  # single-channel set: items carry three identical channels
    archive_dirs: tuple[str, ...] = ()  # a top folder the official archive adds under the root
    needs_root: bool = True

    @property
    def splits(self) -> tuple[str, ...]:
        splits = list(self.official_splits)
        if self.holdout is not None:
            splits += [name for name in ("train", "val") if name not in splits]
        return tuple(splits)

    @property
    def val_split(self) -> str | None:
        return "val" if "val" in self.splits else None

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(f"{self.name} has no option {', '.join(unknown)}; its options: {allowed}")
        resolved = {name: values[0] for name, values in self.options.items()}
        for name, value in options.items():
            if value not in self.options[name]:
                raise ValueError(f"{self.name}: {name}={value!r} is not one of {list(self.options[name])}")
            resolved[name] = value
        return resolved

    def samples(self, root: str | Path | None, split: str, **options: Any) -> list[Sample]:
        """The samples of one split, paired by the dataset's rule, in a fixed order."""
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; its splits: {', '.join(self.splits)}")
        resolved = self.resolve_options(options)
        root = self.resolve_root(root)
        if self.holdout is None or split not in ("train", "val"):
            return self.rule(root, split, resolved)
        train, val = self.holdout.split(self.rule(root, self.holdout.source, resolved), f"{self.name} at {root}")
        return val if split == "val" else train

    def resolve_root(self, root: str | Path | None) -> Path | None:
        if not self.needs_root:
            if root is not None:
                raise ValueError(f"{self.name} reads no files; leave its root empty (got {root})")
            return None
        if root is None:
            raise ValueError(f"{self.name} needs a root: the folder holding {self.layout.splitlines()[0]} ...")
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(
                f"{self.name} not found: {root} {'is a file' if root.exists() else 'does not exist'}.\n"
                f"Expected layout under it:\n{_indent(self.layout)}\n"
                f"Download: {self.download} (see data/README.md), then check it with "
                f"`python data/prepare.py {self.name} --root {root}`.\n"
                "To try everything without a download, use data=demo."
            )
        for archive_dir in self.archive_dirs:
            if (root / archive_dir).is_dir():
                return root / archive_dir
        return root


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# ---------------------------------------------------------------------------------------------
# Pairing rules. Each returns the samples of one official split, sorted by name.


def _same_names(
    root: Path,
    input_dir: str,
    target_dir: str,
    where: str,
    *,
    group: Callable[[str], str] = lambda name: name,
    keep: Callable[[str], bool] = lambda name: True,
) -> list[Sample]:
    """``input_dir/<name>.*`` pairs with ``target_dir/<name>.*`` (extensions may differ)."""
    inputs = index_by_stem(list_images(root / input_dir, f"{where} inputs"), root / input_dir)
    targets = index_by_stem(list_images(root / target_dir, f"{where} targets"), root / target_dir)
    inputs = {name: path for name, path in inputs.items() if keep(name)}
    targets = {name: path for name, path in targets.items() if keep(name)}
    pairs = pair_files(f"{where} ({root / input_dir} -> {root / target_dir})", inputs, targets)
    return [Sample(name, FileSource(inp), FileSource(tgt), group(name)) for name, inp, tgt in pairs]


def _input_target(name: str) -> Rule:
    def rule(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
        return _same_names(root, "input", "target", f"{name} {split}")

    return rule


def _gopro(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    blur = options["blur_kind"]
    split_dir = require_dir(root / split, f"GoPro's {split}/<scene>/{{blur,blur_gamma,sharp}}/ folders")
    scenes = sorted(path for path in split_dir.iterdir() if path.is_dir())
    if not scenes:
        raise DatasetError(f"{split_dir} holds no scene folders; expected {split}/<scene>/{{{blur},sharp}}/NNNNNN.png")
    inputs, targets = {}, {}
    for scene in scenes:
        inputs.update(index_by_stem(list_images(scene / blur, f"GoPro frames (blur_kind={blur})"), split_dir))
        targets.update(index_by_stem(list_images(scene / "sharp", "GoPro sharp frames"), split_dir))
    pairs = pair_files(
        f"GoPro {split} at {split_dir}", inputs, targets, lambda key: key.replace(f"/{blur}/", "/sharp/")
    )
    samples = []
    for key, inp, tgt in pairs:
        scene, _, frame = key.split("/")
        samples.append(Sample(f"{scene}/{frame}", FileSource(inp), FileSource(tgt), group=scene))
    return samples


def _hide(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    # GT/ holds the sharp images of both splits, so unused targets are expected.
    gt = index_by_stem(list_images(root / "GT", "HIDE sharp images"), root / "GT")
    blurred_dir = root / split
    blurred = index_by_stem(list_images(blurred_dir, f"HIDE {split} images", recursive=True), blurred_dir)
    pairs = pair_files(
        f"HIDE {split} ({blurred_dir} -> {root / 'GT'})",
        blurred,
        gt,
        lambda key: key.rsplit("/", 1)[-1],
        every_target_used=False,
    )
    samples = []
    for key, inp, tgt in pairs:
        name = key.rsplit("/", 1)[-1]
        video = re.search(r"from(.+)$", name)  # "12fromGOPR1096.MP4": frames of one video stay together
        samples.append(Sample(name, FileSource(inp), FileSource(tgt), group=video.group(1) if video else name))
    return samples


def _realblur(variant: str) -> Rule:
    def rule(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
        list_file = require_file(root / f"RealBlur_{variant}_{split}_list.txt", f"RealBlur-{variant}'s {split} list")
        samples, missing = [], []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DatasetError(f"{list_file}:{number}: expected '<gt path> <blur path>', got {line!r}")
            target, blurred = root / fields[0], root / fields[1]
            missing += [path for path in (blurred, target) if not path.is_file()]
            parts = Path(fields[1]).parts
            scene = parts[-3] if len(parts) >= 3 else ""
            name = f"{scene}/{Path(fields[1]).stem}"
            samples.append(Sample(name, FileSource(blurred), FileSource(target), group=scene))
        if missing:
            shown = ", ".join(str(path) for path in missing[:3])
            raise DatasetError(
                f"{list_file} lists {len(missing)} file(s) missing (or not files) under {root}, e.g. {shown}; "
                "extract RealBlur.tar.gz into this folder"
            )
        if not samples:
            raise DatasetError(f"{list_file} lists no images")
        return sorted(samples, key=lambda sample: sample.name)

    return rule


SIDD_TEST_FILES = (
    ("ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb"),
    ("ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb"),
)
SIDD_CROPS = "train_crops"  # written by `data/prepare.py SIDD` from SIDD-Medium


def _sidd(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    if split == "test":
        return _sidd_blocks(root)
    if split == "medium":
        data = next((path for path in (root / "SIDD_Medium_Srgb" / "Data", root / "Data") if path.is_dir()), None)
        if data is None:
            raise DatasetError(
                f"{root / 'SIDD_Medium_Srgb' / 'Data'} does not exist; extract SIDD_Medium_Srgb.zip here"
            )
        images = index_by_stem(list_images(data, "SIDD-Medium sRGB images", recursive=True), data)
        noisy = {key: path for key, path in images.items() if "_NOISY_SRGB_" in key}
        clean = {key: path for key, path in images.items() if "_GT_SRGB_" in key}
        pairs = pair_files(f"SIDD medium at {data}", noisy, clean, lambda key: key.replace("_NOISY_SRGB_", "_GT_SRGB_"))
        return [Sample(key, FileSource(inp), FileSource(tgt), group=key.split("_")[0]) for key, inp, tgt in pairs]
    # train: the crops prepare.py cut, named <scene folder>_<010|011>_<k>; the scene instance leads the name.
    if not (root / SIDD_CROPS).is_dir():
        raise DatasetError(
            f"{root / SIDD_CROPS} does not exist: SIDD trains on 512x512 crops of SIDD-Medium, cut once by "
            f"`python data/prepare.py SIDD --root {root}` (or train on the full images with train_split=medium)"
        )
    crops = root / SIDD_CROPS
    return _same_names(crops, "input", "target", "SIDD train crops", group=lambda name: name.split("_")[0])


def _sidd_blocks(root: Path) -> list[Sample]:
    (noisy_name, noisy_key), (clean_name, clean_key) = SIDD_TEST_FILES
    noisy, clean = _find_file(root, noisy_name), _find_file(root, clean_name)
    shape = mat_variable_shape(noisy, noisy_key)
    if len(shape) != 5 or shape[-1] != 3:
        raise DatasetError(f"{noisy}: {noisy_key} has shape {shape}; expected (images, blocks, H, W, 3)")
    if mat_variable_shape(clean, clean_key) != shape:
        raise DatasetError(f"{clean}: {clean_key} has shape {mat_variable_shape(clean, clean_key)}, {noisy} {shape}")
    return [
        Sample(
            f"{image:02d}_{block:02d}",
            MatBlockSource(noisy, noisy_key, (image, block)),
            MatBlockSource(clean, clean_key, (image, block)),
            group=f"{image:02d}",
        )
        for image in range(shape[0])
        for block in range(shape[1])
    ]


def _find_file(root: Path, name: str) -> Path:
    """``root/name`` or ``root/<one folder>/name`` (archives add a folder, e.g. SIDD_Validation_sRGB/)."""
    candidates = [root / name] + sorted(root.glob(f"*/{name}"))
    found = [path for path in candidates if path.exists()]
    if not found:
        raise DatasetError(f"{root / name} does not exist (nor in a folder under {root}); expected {name} there")
    return require_file(found[0], name)


def _dnd(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    import h5py  # info.mat is MATLAB v7.3 with cell references, which only h5py reads

    info_path = require_file(root / "info.mat", "DND's info.mat (the 20 boxes of each image)")
    try:
        with h5py.File(info_path, "r") as info_file:
            info = info_file["info"]
            references = info["boundingboxes"][0]  # a cell of 50 references
            boxes = [info_file[reference][()].T for reference in references]  # each (20, 4), 1-based inclusive
    except (OSError, KeyError) as error:
        raise DatasetError(
            f"{info_path} is not DND's info.mat (MATLAB v7.3 with info.boundingboxes): {error}"
        ) from None
    samples = []
    for number, image_boxes in enumerate(boxes, start=1):
        image = require_file(root / "images_srgb" / f"{number:04d}.mat", f"DND noisy sRGB image {number}")
        for index, (top, left, bottom, right) in enumerate(image_boxes.astype(int), start=1):
            box = (top - 1, bottom, left - 1, right)
            samples.append(
                Sample(f"{number:04d}_{index:02d}", MatCropSource(image, "InoisySRGB", box), None, f"{number:04d}")
            )
    return samples


def _reside(recursive: bool) -> Rule:
    """RESIDE: ``hazy/<id>_<...>.*`` -> ``clear/<id>.*`` (many hazy images per clear one)."""

    def rule(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
        return _hazy_to_clear(root / "hazy", root / "clear", f"RESIDE {split}", recursive=recursive)

    return rule


def _hazy_to_clear(
    hazy_dir: Path, clear_dir: Path, where: str, *, recursive: bool = False, crop_target: bool = False
) -> list[Sample]:
    hazy = index_by_stem(list_images(hazy_dir, f"{where} hazy images", recursive=recursive), hazy_dir, flat=True)
    clear = index_by_stem(list_images(clear_dir, f"{where} clear images", recursive=recursive), clear_dir, flat=True)
    pairs = pair_files(f"{where} ({hazy_dir} -> {clear_dir})", hazy, clear, lambda stem: stem.split("_")[0])
    return [
        Sample(stem, FileSource(inp), FileSource(tgt), group=stem.split("_")[0], crop_target=crop_target)
        for stem, inp, tgt in pairs
    ]


def _sots(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    # Indoor GT images are 640x480 with a 10-pixel border, hazy ones 620x460
    # (cddlyf/GCANet#2): the GT is cropped around its centre to the hazy size.
    return _hazy_to_clear(root / split / "hazy", root / split / "gt", f"SOTS {split}", crop_target=split == "indoor")


def _lol(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    folder = {"train": "our485", "test": "eval15"}[split]
    return _same_names(root / folder, "low", "high", f"LOL {folder}")


def _fivek_number(name: str) -> int:
    match = re.match(r"a(\d{4})", name)
    if not match:
        raise DatasetError(f"FiveK image {name!r}: names start with the image number a0001 ... a5000")
    return int(match.group(1))


def _fivek(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    # The common split: a0001-a4500 train, a4501-a5000 test.
    def keep(name: str) -> bool:
        return (_fivek_number(name) <= 4500) == (split == "train")

    return _same_names(root, "input", "expertC", f"FiveK {split}", keep=keep)


def _polyu(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    files = list_images(root, "PolyU's <scene>_real.JPG / <scene>_mean.JPG crops")
    inputs = {path.stem[: -len("_real")]: path for path in files if path.stem.endswith("_real")}
    targets = {path.stem[: -len("_mean")]: path for path in files if path.stem.endswith("_mean")}
    pairs = pair_files(f"PolyU at {root}", inputs, targets, expected="<scene>_real.JPG beside <scene>_mean.JPG")
    return [Sample(name, FileSource(inp), FileSource(tgt), group=name) for name, inp, tgt in pairs]


def _clean_folder(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    images = index_by_stem(list_images(root, f"the clean images of {root.name}"), root)
    return [Sample(name, None, FileSource(path), group=name) for name, path in images.items()]


def _folder(root: Path, split: str, options: Mapping[str, Any]) -> list[Sample]:
    return _same_names(root, "input", "target", "folder")


# scikit-image's bundled photos (no download). Gray ones are expanded to RGB.
DEMO_SPLITS = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "camera",
        "moon",
        "grass",
        "gravel",
        "brick",
    ),
    "val": ("chelsea", "coins"),
}


def _demo(root: Path | None, split: str, options: Mapping[str, Any]) -> list[Sample]:
    return [Sample(name, None, SkimageSource(name), group=name) for name in DEMO_SPLITS[split]]


# ---------------------------------------------------------------------------------------------
# Scoring protocols (restore.metrics.Protocol).

_GOPRO = Protocol(color="rgb", ssim="matlab3d", quantize="uint8")  # MPRNet/Restormer evaluate_GOPRO_HIDE.m
_REALBLUR = Protocol(color="rgb", ssim="gaussian2d", quantize="uint8", align="ecc")  # official evaluate_RealBlur.py
_SIDD = Protocol(color="rgb", ssim="matlab3d", quantize="float")  # evaluate_SIDD.m on float .mat outputs
_RAIN = Protocol(color="y", ssim="gaussian2d", quantize="uint8")  # evaluate_PSNR_SSIM.m: Y channel
# Unconfirmed: the MAXIM paper does not state its dehazing / enhancement scoring; RGB with
# per-channel Gaussian SSIM on saved 8-bit images is the common practice of those papers.
_RGB = Protocol(color="rgb", ssim="gaussian2d", quantize="uint8")
_GRAY = Protocol(color="gray", ssim="gaussian2d", quantize="uint8")


def _rain_test(name: str, count: int) -> Benchmark:
    return Benchmark(
        name=name,
        task="derain",
        kind="paired",
        official_splits=("test",),
        protocol=_RAIN,
        layout="input/<name>.(png|jpg)\ntarget/<name>.(png|jpg)   same names as input/",
        download="Rain13k test sets: links in swz30/Restormer Deraining/README.md (test.zip -> test/<set>/)",
        rule=_input_target(name),
        counts={"test": count},
    )


def _clean_set(name: str, count: int, download: str, *, gray: bool = False, training: bool = False) -> Benchmark:
    """Clean images directly in the folder; a degradation makes the noisy inputs.

    A test set's images are its ``test`` split. A training set (the Gaussian-denoising
    literature's CBSD432, Train400) has no validation split of its own: ``val`` holds out 3%
    of its images (every image is its own group), evenly spaced in name order, so checkpoints
    are selected on training-set images and never on a test set.
    """
    split = "train" if training else "test"
    return Benchmark(
        name=name,
        task="denoise",
        kind="clean",
        official_splits=(split,),
        protocol=_GRAY if gray else _RGB,
        layout="<name>.(png|tif|bmp|jpg)   the clean images, directly in the folder",
        download=download,
        rule=_clean_folder,
        test_splits=() if training else ("test",),
        holdout=Holdout(fraction=0.03) if training else None,
        counts={split: count},
        gray=gray,
    )


_FFDNET = "cszn/FFDNet testsets/<set> (GitHub), or KAIR's testsets"

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            name="GoPro",
            task="deblur",
            kind="paired",
            official_splits=("train", "test"),
            protocol=_GOPRO,
            layout="{train,test}/<scene>/blur/NNNNNN.png\n{train,test}/<scene>/blur_gamma/NNNNNN.png\n"
            "{train,test}/<scene>/sharp/NNNNNN.png",
            download="GOPRO_Large.zip from https://seungjunnah.github.io/Datasets/gopro",
            rule=_gopro,
            holdout=Holdout(fraction=0.05),  # 1 of 22 training scenes
            options={"blur_kind": ("blur", "blur_gamma")},
            counts={"train": 2103, "test": 1111},
            archive_dirs=("GOPRO_Large",),
        ),
        Benchmark(
            name="HIDE",
            task="deblur",
            kind="paired",
            official_splits=("train", "test"),
            protocol=_GOPRO,
            layout="train/<name>.png\ntest/{test-close-ups,test-long-shot}/<name>.png\n"
            "GT/<name>.png   sharp, both splits",
            download="HIDE_dataset from https://github.com/joanshen0508/HA_deblur",
            rule=_hide,
            holdout=Holdout(fraction=0.05),
            counts={"train": 6397, "test": 2025},
            archive_dirs=("HIDE_dataset",),
        ),
        *(
            Benchmark(
                name=f"RealBlur_{variant}",
                task="deblur",
                kind="paired",
                official_splits=("train", "test"),
                protocol=_REALBLUR,
                layout=f"RealBlur_{variant}_{{train,test}}_list.txt   lines '<gt path> <blur path>'\n"
                f"RealBlur-{variant}_*/scene<NNN>/{{blur,gt}}/{{blur,gt}}_<k>.png",
                download="RealBlur.tar.gz from http://cg.postech.ac.kr/research/realblur/",
                rule=_realblur(variant),
                holdout=Holdout(fraction=0.05),
                counts={"train": 3758, "test": 980},
                archive_dirs=("RealBlur",),
            )
            for variant in ("J", "R")
        ),
        Benchmark(
            name="SIDD",
            task="denoise",
            kind="paired",
            official_splits=("train", "medium", "test"),
            protocol=_SIDD,
            layout="SIDD_Medium_Srgb/Data/<scene>/<id>_{NOISY,GT}_SRGB_<010|011>.PNG\n"
            "ValidationNoisyBlocksSrgb.mat, ValidationGtBlocksSrgb.mat   (40, 32, 256, 256, 3) uint8\n"
            f"{SIDD_CROPS}/{{input,target}}/   written by data/prepare.py SIDD",
            download="SIDD-Medium sRGB and the sRGB validation .mat files from https://abdokamel.github.io/sidd/",
            rule=_sidd,
            holdout=Holdout(fraction=0.05),  # 8 of 160 scene instances
            counts={"medium": 320, "test": 1280},
        ),
        Benchmark(
            name="DND",
            task="denoise",
            kind="input_only",
            official_splits=("test",),
            protocol=_SIDD,  # scored by the DND server only; recorded for completeness
            layout="info.mat   (MATLAB v7.3: info.boundingboxes)\nimages_srgb/0001.mat ... 0050.mat   (InoisySRGB)",
            download="https://noise.visinf.tu-darmstadt.de/ (no public ground truth: submit results there)",
            rule=_dnd,
            counts={"test": 1000},
        ),
        Benchmark(
            name="Rain13k",
            task="derain",
            kind="paired",
            official_splits=("train",),
            protocol=_RAIN,
            test_splits=(),
            layout="input/<name>.(png|jpg)\ntarget/<name>.(png|jpg)   same names as input/",
            download="train.zip from the links in swz30/Restormer Deraining/README.md (train/Rain13K/)",
            rule=_input_target("Rain13k"),
            holdout=Holdout(fraction=0.01),
            counts={"train": 13712},
            archive_dirs=("train/Rain13K", "Rain13K"),
        ),
        _rain_test("Rain100L", 100),
        _rain_test("Rain100H", 100),
        _rain_test("Test100", 100),
        _rain_test("Test1200", 1200),
        _rain_test("Test2800", 2800),
        Benchmark(
            name="RESIDE_ITS",
            task="dehaze",
            kind="paired",
            official_splits=("train",),
            protocol=_RGB,
            test_splits=(),
            layout="hazy/<id>_<k>_<beta>.png\nclear/<id>.png",
            download="ITS (RESIDE-Standard) from https://sites.google.com/view/reside-dehaze-datasets",
            rule=_reside(recursive=False),
            holdout=Holdout(fraction=0.02),  # by clear image: its 10 hazy versions stay together
            counts={"train": 13990},
            archive_dirs=("ITS",),
        ),
        Benchmark(
            name="RESIDE_OTS",
            task="dehaze",
            kind="paired",
            official_splits=("train",),
            protocol=_RGB,
            test_splits=(),
            layout="hazy/**/<id>_<A>_<beta>.jpg   (any sub-folders, e.g. part1/ ... part4/)\nclear/**/<id>.jpg",
            download="OTS (RESIDE-beta) from https://sites.google.com/view/reside-dehaze-datasets",
            rule=_reside(recursive=True),
            holdout=Holdout(fraction=0.01),
            archive_dirs=("OTS",),
        ),
        Benchmark(
            name="SOTS",
            task="dehaze",
            kind="paired",
            official_splits=("indoor", "outdoor"),
            protocol=_RGB,
            test_splits=("indoor", "outdoor"),
            layout="indoor/hazy/<id>_<k>.png\nindoor/gt/<id>.png   640x480: cropped to the 620x460 hazy size\n"
            "outdoor/hazy/<id>_<A>_<beta>.(jpg|png)\noutdoor/gt/<id>.png",
            download="SOTS (RESIDE-Standard) from https://sites.google.com/view/reside-dehaze-datasets",
            rule=_sots,
            counts={"indoor": 500, "outdoor": 500},
            archive_dirs=("SOTS",),
        ),
        Benchmark(
            name="PolyU",
            task="denoise",
            kind="paired",
            official_splits=("test",),
            protocol=_RGB,
            layout="<scene>_real.JPG   noisy camera shot\n<scene>_mean.JPG   ground truth: the mean of ~500 shots",
            download="CroppedImages of csjunxu/PolyU-Real-World-Noisy-Images-Dataset (GitHub): 100 512x512 pairs",
            rule=_polyu,
            counts={"test": 100},
        ),
        Benchmark(
            name="LOL",
            task="lowlight",
            kind="paired",
            official_splits=("train", "test"),
            protocol=_RGB,
            layout="our485/{low,high}/<n>.png   train\neval15/{low,high}/<n>.png   test",
            download="LOLdataset.zip (LOL v1) from https://daooshee.github.io/BMVC2018website/",
            rule=_lol,
            holdout=Holdout(fraction=0.05),  # 24 of the 485 pairs, evenly spaced by name
            counts={"train": 485, "test": 15},
            archive_dirs=("LOLdataset",),
        ),
        Benchmark(
            name="FiveK",
            task="lowlight",
            kind="paired",
            official_splits=("train", "test"),
            protocol=_RGB,
            layout="input/a<NNNN>-<name>.(png|jpg|tif)\nexpertC/a<NNNN>-<name>.(png|jpg|tif)   same names; "
            "a0001-a4500 train, a4501-a5000 test",
            download="https://data.csail.mit.edu/graphics/fivek/ (expert C; data/prepare.py FiveK converts tiff16_c/)",
            rule=_fivek,
            holdout=Holdout(fraction=0.02),
            counts={"train": 4500, "test": 500},
        ),
        _clean_set("CBSD68", 68, _FFDNET),
        _clean_set("Kodak24", 24, _FFDNET),
        _clean_set("McMaster", 18, _FFDNET),
        _clean_set("Urban100", 100, "Urban100 HR images (jbhuang0604/SelfExSR), or KAIR's testsets"),
        _clean_set("Set12", 12, _FFDNET, gray=True),
        _clean_set("BSD68", 68, _FFDNET, gray=True),
        _clean_set("CBSD432", 432, "Magauiya/Extended_SURE Dataset/CBSD432 (BSDS500 minus CBSD68)", training=True),
        _clean_set("Train400", 400, "cszn/DnCNN TrainingCodes/.../data/Train400", gray=True, training=True),
        Benchmark(
            name="folder",
            task="denoise",  # any task: the pairs say what is restored
            kind="paired",
            official_splits=("all",),
            protocol=_RGB,
            test_splits=("all",),
            layout="input/<name>.*\ntarget/<name>.*   same names as input/",
            download="your own pairs",
            rule=_folder,
            holdout=Holdout(fraction=0.05, source="all"),
        ),
        Benchmark(
            name="demo",
            task="denoise",  # any task: the degradation says which
            kind="clean",
            official_splits=("train", "val"),
            protocol=_RGB,
            test_splits=("val",),
            layout="(none: scikit-image's bundled photos)",
            download="nothing to download",
            rule=_demo,
            needs_root=False,
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The table entry for ``name`` (case-insensitive), or a ValueError listing the known names."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    matches = [benchmark for key, benchmark in BENCHMARKS.items() if key.lower() == str(name).lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(BENCHMARKS)}")
