"""Miniature copies of each benchmark's official layout, a few tiny images each.

Every pair carries a signature: the target is filled with a value k and its
input with k + OFFSET, so a test can tell a correct pairing from a mispairing
without trusting any file name.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

OFFSET = 100
SIZE = (16, 24)  # height, width


def write_png(path: Path, value: int, size: tuple[int, int] = SIZE, *, border: int = 0) -> Path:
    """A constant 8-bit RGB image (a ``border``-pixel frame of 255 around it when asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((*size, 3), 255 if border else value, np.uint8)
    if border:
        image[border:-border, border:-border] = value
    assert cv2.imwrite(str(path), image), path
    return path


def write_pair(input_path: Path, target_path: Path, k: int, size: tuple[int, int] = SIZE) -> None:
    write_png(target_path, k, size)
    write_png(input_path, k + OFFSET, size)


def signature_ok(item) -> bool:
    """The input of this item was written for this target."""
    return round(float(item["input"].mean()) * 255) == round(float(item["target"].mean()) * 255) + OFFSET


def gopro(root: Path) -> Path:
    """3 training scenes x 2 frames, 1 test scene x 2 frames; blur_gamma inputs are k + OFFSET + 20."""
    k = 0
    for split, scenes in (
        ("train", ("GOPR0372_07_00", "GOPR0374_11_00", "GOPR0378_13_00")),
        ("test", ("GOPR0384_11_00",)),
    ):
        for scene in scenes:
            for frame in ("000001", "000002"):
                write_pair(
                    root / split / scene / "blur" / f"{frame}.png", root / split / scene / "sharp" / f"{frame}.png", k
                )
                write_png(root / split / scene / "blur_gamma" / f"{frame}.png", k + OFFSET + 20)
                k += 1
    return root


def hide(root: Path) -> Path:
    names = {
        "train": ["1fromGOPR0950.png", "2fromGOPR0950.png", "1fromGOPR1096.MP4.png", "5fromGOPR1087.MP4.png"],
        "test/test-close-ups": ["1fromGOPR1011.png"],
        "test/test-long-shot": ["109fromGOPR1096.MP4.png", "110fromGOPR1087.MP4.png"],
    }
    k = 0
    for folder, files in names.items():
        for name in files:
            write_pair(root / folder / name, root / "GT" / name, k)
            k += 1
    return root


def realblur(root: Path, variant: str = "J") -> Path:
    top = f"RealBlur-{variant}_ECC_IMCORR_centroid_itensity_ref"
    k = 0
    for split, scenes in (("train", ("scene001", "scene002", "scene003")), ("test", ("scene230",))):
        lines = []
        for scene in scenes:
            for index in (1, 2):
                gt, blur = f"{top}/{scene}/gt/gt_{index}.png", f"{top}/{scene}/blur/blur_{index}.png"
                write_pair(root / blur, root / gt, k)
                lines.append(f"{gt} {blur}")
                k += 1
        (root / f"RealBlur_{variant}_{split}_list.txt").write_text("\n".join(lines) + "\n")
    return root


SIDD_SCENES = ("0001_001_S6_00100_00060_3200_L", "0002_001_S6_00100_00020_3200_N", "0003_002_GP_00100_00100_5500_N")


def sidd(root: Path, blocks: tuple[int, int] = (2, 3), block_size: int = 8, medium_size=(40, 56)) -> Path:
    """SIDD-Medium with 3 scene instances x 2 pairs, and the validation .mat files in the official key format."""
    import scipy.io

    k = 0
    for scene in SIDD_SCENES:
        for suffix in ("010", "011"):
            folder = root / "SIDD_Medium_Srgb" / "Data" / scene
            number = scene.split("_")[0]
            write_pair(
                folder / f"{number}_NOISY_SRGB_{suffix}.PNG", folder / f"{number}_GT_SRGB_{suffix}.PNG", k, medium_size
            )
            k += 1
    n_images, n_blocks = blocks
    values = np.arange(n_images * n_blocks, dtype=np.uint8).reshape(n_images, n_blocks, 1, 1, 1)
    clean = np.broadcast_to(values, (n_images, n_blocks, block_size, block_size, 3)).copy()
    scipy.io.savemat(root / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})
    scipy.io.savemat(root / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": clean + OFFSET})
    return root


def dnd(root: Path, n_images: int = 2, boxes_per_image: int = 3, size=(20, 30)) -> Path:
    """DND's MATLAB v7.3 files: info.mat (a cell of (4, boxes) arrays, as h5py sees them) and images_srgb/*.mat."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    (root / "images_srgb").mkdir()
    with h5py.File(root / "info.mat", "w") as info_file:
        references = []
        for number in range(1, n_images + 1):
            # MATLAB rows: [top, left, bottom, right], 1-based inclusive; HDF5 stores them transposed.
            boxes = np.array([[1 + i, 2 + i, 4 + i, 6 + i] for i in range(boxes_per_image)], dtype=np.float64)
            references.append(info_file.create_dataset(f"#refs#/{number}", data=boxes.T).ref)
            image = np.zeros((*size, 3), np.float32)
            image[:, :, 0] = np.arange(size[0])[:, None] / 100 + number / 10  # row index + image number
            image[:, :, 1] = np.arange(size[1])[None, :] / 100  # column index
            with h5py.File(root / "images_srgb" / f"{number:04d}.mat", "w") as image_file:
                image_file.create_dataset("InoisySRGB", data=image.T)
        info = info_file.create_group("info")
        info.create_dataset("boundingboxes", data=np.array([references], dtype=h5py.ref_dtype))
    return root


def input_target(root: Path, names=("1", "2", "10", "11")) -> Path:
    """Rain13k and its test sets, folder: input/ and target/ (names chosen so positional and name order differ)."""
    for k, name in enumerate(names):
        write_pair(root / "input" / f"{name}.png", root / "target" / f"{name}.png", k)
    return root


def reside_its(root: Path) -> Path:
    for k, gt_id in enumerate(("1", "2", "3")):
        write_png(root / "clear" / f"{gt_id}.png", k)
        for index, beta in ((1, "0.62"), (2, "1.41")):
            write_png(root / "hazy" / f"{gt_id}_{index}_{beta}.png", k + OFFSET)
    return root


def sots(root: Path, border: int = 2) -> Path:
    """Indoor GTs carry a white border (the real 640x480 vs 620x460 case); outdoor hazy are JPEG-named PNGs."""
    for k, gt_id in enumerate(("1400", "1401")):
        size = (SIZE[0] + 2 * border, SIZE[1] + 2 * border)
        write_png(root / "indoor" / "gt" / f"{gt_id}.png", k, size, border=border)
        for index in (1, 10):
            write_png(root / "indoor" / "hazy" / f"{gt_id}_{index}.png", k + OFFSET)
    for k, gt_id in enumerate(("0001", "0002")):
        write_png(root / "outdoor" / "gt" / f"{gt_id}.png", k + 10)
        write_png(root / "outdoor" / "hazy" / f"{gt_id}_0.8_0.2.png", k + 10 + OFFSET)
    return root


def lol(root: Path) -> Path:
    for k, name in enumerate(("2", "5", "11", "100")):
        write_pair(root / "our485" / "low" / f"{name}.png", root / "our485" / "high" / f"{name}.png", k)
    for k, name in enumerate(("1", "22"), start=50):
        write_pair(root / "eval15" / "low" / f"{name}.png", root / "eval15" / "high" / f"{name}.png", k)
    return root


def polyu(root: Path, scenes=("Canon5D2_bag", "Nikon800_desk")) -> Path:
    """PolyU's crops: <scene>_real (one noisy shot) beside <scene>_mean (the mean of many)."""
    for k, scene in enumerate(scenes):
        write_pair(root / f"{scene}_real.png", root / f"{scene}_mean.png", k)
    return root


def fivek(root: Path) -> Path:
    for k, name in enumerate(("a0001-jmac_DSC1459", "a0002-dgw_005", "a4500-kme_0204", "a4541-DSC_0040-2")):
        write_pair(root / "input" / f"{name}.png", root / "expertC" / f"{name}.png", k)
    return root


def clean_set(root: Path, names=("kodim01", "kodim02", "kodim03"), size=SIZE) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(root / f"{name}.png"), rng.integers(60, 200, (*size, 3), dtype=np.uint8))
    return root


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time: equal before and after = nothing written."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(root.rglob("*"))}
