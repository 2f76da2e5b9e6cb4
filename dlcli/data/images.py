"""Image datasets for classification: shapes (generated), CIFAR, MNIST, an image folder.

    data: {dataset: shapes, image_size: 64, batch_size: 128}
    data: {dataset: imagefolder, root: ../shared/datasets/images, image_size: 32, on_bad_file: skip}
    data: {dataset: imagefolder, root: ../shared/datasets/cifar10/cifar10-jpeg.tar.gz, image_size: 32}

Small datasets are decoded once into a uint8 tensor (`TensorImages`); an image folder too
large for memory streams through DataLoader workers (`StreamingImages`). An image folder given
as a .tar, .tar.gz, .tgz or .zip file is unpacked once into a cache folder and read from there
(archives.py). Pixels go to [0, 1] and then through the ImageNet mean/std, the normalization
torchvision's pretrained weights expect, for every dataset alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dlcli.data.archives import ARCHIVE_SUFFIXES, is_archive, unpacked_tree
from dlcli.data.download import offline
from dlcli.data.imagecheck import ReadableImages, UnreadableImage, handle_bad_files, read_image, scan
from dlcli.data.loaders import StreamingImages, TensorImages
from dlcli.data.synthetic import SHAPE_CLASSES, make_shapes
from dlcli.errors import DlError

TORCHVISION_DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# An image folder is decoded into memory when its uint8 pixels take less than this.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclass
class Split:
    """One split as uint8 images in memory, or as a dataset of PIL images to stream."""

    images: torch.Tensor | None = None  # (N, 3, S, S) uint8
    labels: torch.Tensor | None = None  # (N,) int64
    files: Any = None  # a Dataset yielding (PIL image, label) when streaming

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.files)


@dataclass
class ImageData:
    classes: list[str]
    splits: dict[str, Split]  # train, val and (when the data has one) test


def eval_transform(image_size: int):
    """Shorter side to image_size, centre crop, to a [0, 1] tensor (what `dl predict` does too)."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()])


def train_transform(image_size: int, augment: str, random_erase: float):
    """data.augment and data.random_erase for one streamed image: PIL -> [0, 1] tensor (data/augment.py)."""
    from dlcli.data.augment import pil_transform

    return pil_transform(augment, image_size, random_erase)


# --------------------------------------------------------------------------- datasets


def load_dataset(data: Any, seed: int) -> ImageData:
    """The splits named by the recipe's `data:` section."""
    if data.dataset == "shapes":
        check_generated_memory(data)
        splits = {
            name: Split(*make_shapes(count, data.image_size, seed, name))
            for name, count in (("train", data.train_size), ("val", data.val_size), ("test", data.test_size))
        }
        return ImageData(list(SHAPE_CLASSES), splits)
    if data.dataset in TORCHVISION_DATASETS:
        return _torchvision_dataset(data, seed)
    return _image_folder(data, seed)


def check_generated_memory(data: Any) -> None:
    """Refuse a shapes dataset that would take more than half of this machine's memory, before drawing it.

    Its splits are held as uint8 (N, 3, S, S): N x 3 x S^2 bytes. 10^6 images of 1024 px would ask
    for 3 TB, which numpy hands out lazily and the OOM killer then takes back mid-run.
    """
    count = data.train_size + data.val_size + data.test_size
    needed = count * 3 * data.image_size**2
    limit = physical_memory() // 2
    if needed > limit:
        raise DlError(
            f"The shapes dataset would take {needed / 1024**3:.1f} GiB in memory: {count:,} images "
            f"(data.train_size + data.val_size + data.test_size) x 3 channels x {data.image_size} x {data.image_size} px "
            f"at 1 byte, more than half of this machine's {physical_memory() / 1024**3:.1f} GiB. "
            "Lower data.image_size or the split sizes."
        )


def physical_memory() -> int:
    """Bytes of RAM (16 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Carve a validation split off train, the same way for the same seed."""
    n = len(split)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise DlError(f"data.val_fraction={fraction} leaves no training images out of {n}. Use a smaller fraction.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    if split.images is not None:
        return (
            Split(split.images[train_idx], split.labels[train_idx]),
            Split(split.images[val_idx], split.labels[val_idx]),
        )
    from torch.utils.data import Subset

    return Split(files=Subset(split.files, train_idx.tolist())), Split(files=Subset(split.files, val_idx.tolist()))


def _torchvision_dataset(data: Any, seed: int) -> ImageData:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[data.dataset])
    root = Path(data.root)
    try:
        train = cls(str(root), train=True, download=not offline())
        test = cls(str(root), train=False, download=not offline())
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DlError(
            f"{data.dataset} is not in {root} and cannot be downloaded here ({e}). Run the same recipe once "
            f"on a machine with internet (torchvision downloads it into data.root), then copy the "
            f"{cls.__name__} files it wrote into {root}, or set data.root to where they are."
        ) from None
    except OSError as e:
        raise DlError(f"Downloading {data.dataset} into {root} failed ({e}). Check the network or data.root.") from None
    splits = {"train": _to_split(train, data.image_size), "test": _to_split(test, data.image_size)}
    splits["train"], splits["val"] = hold_out(splits["train"], data.val_fraction, seed)
    return ImageData(list(train.classes), splits)


def _to_split(dataset: Any, image_size: int) -> Split:
    """torchvision's in-memory arrays (N, H, W[, C]) to uint8 (N, 3, S, S)."""
    images = torch.as_tensor(dataset.data)
    images = images.unsqueeze(-1) if images.ndim == 3 else images  # greyscale: add a channel
    images = images.permute(0, 3, 1, 2).expand(-1, 3, -1, -1) if images.shape[-1] == 1 else images.permute(0, 3, 1, 2)
    if images.shape[-1] != image_size:
        images = torch.nn.functional.interpolate(images.float(), size=image_size, mode="bilinear", antialias=True)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return Split(images.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.long))


def _image_folder(data: Any, seed: int) -> ImageData:
    """ImageNet layout: root/train/<class>/*.jpg and root/val/ (or root/test/); root may be an archive of it."""
    from torchvision.datasets import ImageFolder

    given = Path(data.root)
    if given.is_file() and not is_archive(given):
        raise DlError(
            f"data.root={given} is a file, not an image folder or an archive of one ({', '.join(ARCHIVE_SUFFIXES)})."
        )
    root = unpacked_tree(given) if is_archive(given) else given  # then read as any folder is
    if not (root / "train").is_dir():
        where = f" (unpacked into {root})" if root != given else ""
        raise DlError(
            f"data.root={given}{where} has no train/ folder. An image folder needs root/train/<class>/<image> "
            "(and optionally root/val/ and root/test/ with the same class folders); an archive may hold it "
            "under one top folder."
        )
    folders = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    datasets = {}
    for name, folder in folders.items():
        try:  # ImageFolder lists the classes and the (path, label) samples; imagecheck reads the files
            datasets[name] = ImageFolder(str(folder))
        except (FileNotFoundError, RuntimeError) as e:
            raise DlError(f"{folder} is not an image folder: {e}") from None
    classes = datasets["train"].classes
    for name, ds in datasets.items():
        if ds.classes != classes:
            raise DlError(f"{folders[name]} has classes {ds.classes}, train/ has {classes}: they must match.")
    total_bytes = sum(len(ds) for ds in datasets.values()) * 3 * data.image_size**2
    in_memory = data.in_memory if data.in_memory != "auto" else total_bytes < IN_MEMORY_LIMIT_BYTES
    # Bad files (not images, truncated, decompression bombs) are found here, before the first step:
    # decoding finds them in memory; streamed, a header check does, and ReadableImages catches the rest.
    splits = {}
    for name, ds in datasets.items():
        if in_memory:
            splits[name] = _decode(ds.samples, data.image_size, data.on_bad_file, folders[name])
        else:
            splits[name] = Split(
                files=ReadableImages(scan(ds.samples, data.on_bad_file, folders[name]), data.on_bad_file)
            )
    if "val" not in splits:
        splits["train"], splits["val"] = hold_out(splits["train"], data.val_fraction, seed)
    return ImageData(classes, splits)


def _decode(samples: list[tuple[str, int]], image_size: int, on_bad_file: str, folder: Path) -> Split:
    """Decode every image once, as the eval transform sizes it, into one uint8 tensor.

    Threads overlap well here: Pillow releases the GIL while it decodes and resizes. A file that
    fails stops the load or is skipped (data.on_bad_file), after all are tried, so that the
    error names the first bad file in folder order and a skip warning counts them all.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> torch.Tensor | str:
        try:
            return pil_to_uint8(sized_for_eval(read_image(Path(path)), image_size))
        except UnreadableImage as e:
            return e.reason

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(one, [path for path, _ in samples], chunksize=64))
    handle_bad_files(
        [(s[0], d) for s, d in zip(samples, decoded) if isinstance(d, str)], len(samples), on_bad_file, folder
    )
    kept = [(d, label) for d, (_, label) in zip(decoded, samples) if not isinstance(d, str)]
    return Split(torch.stack([d for d, _ in kept]), torch.tensor([label for _, label in kept], dtype=torch.long))


def sized_for_eval(image: Image.Image, image_size: int) -> Image.Image:
    """Shorter side to image_size, then the centre square: eval_transform without ToTensor."""
    from torchvision.transforms import functional as TF

    return TF.center_crop(TF.resize(image, image_size), image_size)


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8, the same pixels ToTensor would give times 255."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------- loaders


def make_loader(split: Split, data: Any, seed: int, runtime: Any, train: bool):
    """The batch iterator for a split: in memory when it is decoded, else streamed by workers."""
    batch_size = data.batch_size if train else data.eval_batch_size or data.batch_size
    common = dict(
        train=train,
        seed=seed,
        device=runtime.device,
        channels_last=runtime.channels_last,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    if split.images is not None:
        from dlcli.data.augment import batch_augment

        augment = batch_augment(data.augment, data.image_size, data.random_erase) if train else None
        return TensorImages(split.images, split.labels, batch_size, augment=augment, **common)
    if train:
        transform = train_transform(data.image_size, data.augment, data.random_erase)
    else:
        transform = eval_transform(data.image_size)
    return StreamingImages(split.files, transform, batch_size, num_workers=data.num_workers, **common)
