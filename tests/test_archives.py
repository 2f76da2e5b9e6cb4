"""An image folder given as an archive (.tar, .tar.gz, .zip): it trains as the folder does, is unpacked
once (the cache is reused), and hostile or broken archives are exit 2 with nothing written.

    dl train resnet --set data.dataset=imagefolder --set data.root=images.tar.gz
"""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image

from dlcli.data import archives
from dlcli.data.images import load_dataset
from dlcli.tasks.classify_config import ImageDataConfig

from conftest import assert_exit_2, train_image_folder

# `dl train resnet` on an archive (conftest.train_image_folder), two steps
train = partial(train_image_folder, max_steps=2)


def image_tree(root: Path) -> Path:
    """root/{train,test}/{blue,red}/ with 4 noisy 16x16 PNGs each."""
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for name, rgb in (("blue", (30, 30, 220)), ("red", (220, 30, 30))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                noise = torch.randint(-20, 21, (16, 16, 3), generator=gen)
                pixels = (torch.tensor(rgb) + noise).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root


def pack(tree: Path, archive: Path, top: str = "", extra: Callable | None = None) -> Path:
    """tree's files into archive (.tar, .tar.gz or .zip, by its name), under the folder `top`;
    `extra(archive_object)` adds members after them."""
    files = sorted(tree.rglob("*"))
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as z:
            for f in files:
                z.write(f, f"{top}{f.relative_to(tree)}")
            if extra:
                extra(z)
    else:
        with tarfile.open(archive, "w:gz" if archive.name.endswith(".gz") else "w") as tar:
            for f in files:
                tar.add(f, f"{top}{f.relative_to(tree)}", recursive=False)
            if extra:
                extra(tar)
    return archive


def data_config(root: Path, **overrides) -> ImageDataConfig:
    return ImageDataConfig(dataset="imagefolder", root=str(root), image_size=16, val_fraction=0.25, **overrides)


def cache_entries(tmp_path: Path) -> list[Path]:
    """Everything under the test's cache folder (conftest points XDG_CACHE_HOME at tmp_path/cache)."""
    return sorted((tmp_path / "cache").rglob("*"))


FORMATS = [
    pytest.param("images.tar", "", [], id="tar"),
    pytest.param("images.tar.gz", "images/", [], id="tar.gz-under-a-top-folder"),
    pytest.param("images.zip", "images/", ["data.in_memory=false", "data.num_workers=0"], id="zip-streamed"),
]


@pytest.mark.parametrize(("name", "top", "loading"), FORMATS)
def test_an_archive_trains(cli, tmp_path, name, top, loading):
    archive = pack(image_tree(tmp_path / "images"), tmp_path / name, top)
    result = train(cli, archive, *loading)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and set(summary["metrics"]) == {"val", "test"}
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["extra"]["classes"] == ["blue", "red"]


@pytest.mark.parametrize(("name", "top", "loading"), FORMATS)
def test_an_archive_loads_the_same_splits_as_its_folder(tmp_path, name, top, loading):
    tree = image_tree(tmp_path / "images")
    archive = pack(tree, tmp_path / name, top)
    folder, packed = load_dataset(data_config(tree), seed=0), load_dataset(data_config(archive), seed=0)
    assert packed.classes == folder.classes == ["blue", "red"]
    assert set(packed.splits) == set(folder.splits) == {"train", "val", "test"}
    for split in folder.splits:
        assert torch.equal(packed.splits[split].labels, folder.splits[split].labels), split
        assert torch.equal(packed.splits[split].images, folder.splits[split].images), split


def test_a_second_run_reuses_the_unpacked_tree(tmp_path, monkeypatch):
    tree = image_tree(tmp_path / "images")
    archive = pack(tree, tmp_path / "images.tar.gz", "images/")
    first = load_dataset(data_config(archive), seed=0)
    unpacked = [p for p in (tmp_path / "cache" / "dlcli" / "archives").iterdir()]
    assert len(unpacked) == 1 and (unpacked[0] / "tree" / "images" / "train" / "red" / "0.png").is_file()
    assert json.loads((unpacked[0] / "meta.json").read_text())["sha256"] == archives.sha256_file(archive)

    def no_second_unpacking(*args):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(archives, "_extract", no_second_unpacking)
    again = load_dataset(data_config(archive), seed=0)
    assert torch.equal(again.splits["train"].images, first.splits["train"].images)
    # another archive (other bytes) gets a tree of its own
    (tree / "train" / "red" / "3.png").unlink()
    pack(tree, archive, "images/")
    with pytest.raises(AssertionError, match="unpacked again"):
        load_dataset(data_config(archive), seed=0)


def test_bad_images_in_an_archive_are_handled_as_in_a_folder(cli, tmp_path):
    tree = image_tree(tmp_path / "images")
    (tree / "train" / "red" / "notes.jpg").write_text("not an image, despite its name\n")
    archive = pack(tree, tmp_path / "images.tar", "images/")
    assert_exit_2(train(cli, archive, "data.on_bad_file=stop"), "notes.jpg", "data.on_bad_file=skip")
    data = load_dataset(data_config(archive), seed=0)  # skip, the default: the 8 readable train images
    assert len(data.splits["train"]) + len(data.splits["val"]) == 8


# --------------------------------------------------------------------------- hostile and broken archives


def _tar_member(name: str, **fields) -> Callable:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        for key, value in fields.items():
            setattr(info, key, value)
        data = b"\xff\xd8 not really a JPEG" if info.isreg() else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def _zip_member(name: str, data: bytes = b"\xff\xd8 not really a JPEG", mode: int = 0) -> Callable:
    def add(z: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        z.writestr(info, data)

    return add


def _unsafe_cases(tmp_path: Path) -> dict[str, tuple[str, Callable, str]]:
    """id -> (archive name, the member adder, what the message says)."""
    outside = str(tmp_path / "outside.jpg")
    return {
        "tar-dotdot": ("x.tar", _tar_member("../outside.jpg"), "'..'"),
        "tar-absolute": ("x.tar", _tar_member(outside), "absolute path"),
        "tar-symlink-out": ("x.tar", _tar_member("images/train/red/p.jpg", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "symlink to /etc/passwd"),
        "tar-symlink-up": ("x.tar.gz", _tar_member("images/train/red/p.jpg", type=tarfile.SYMTYPE, linkname="../../../../x"), "symlink"),
        "tar-hardlink-out": ("x.tar", _tar_member("images/train/red/h.jpg", type=tarfile.LNKTYPE, linkname="../outside.jpg"), "hard link"),
        "tar-device": ("x.tar", _tar_member("images/train/red/dev.jpg", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "device file"),
        "zip-dotdot": ("x.zip", _zip_member("../outside.jpg"), "'..'"),
        "zip-absolute": ("x.zip", _zip_member(outside), "absolute path"),
        "zip-symlink": ("x.zip", _zip_member("images/train/red/p.jpg", b"/etc/passwd", stat.S_IFLNK | 0o777), "symlink"),
    }  # fmt: skip


UNSAFE = [
    "tar-dotdot",
    "tar-absolute",
    "tar-symlink-out",
    "tar-symlink-up",
    "tar-hardlink-out",
    "tar-device",
    "zip-dotdot",
    "zip-absolute",
    "zip-symlink",
]


@pytest.mark.parametrize("case", UNSAFE)
def test_a_member_escaping_the_tree_is_refused_before_anything_is_written(cli, tmp_path, case):
    name, member, says = _unsafe_cases(tmp_path)[case]
    tree = image_tree(tmp_path / "images")
    archive = pack(tree, tmp_path / name, "images/", extra=member)  # the good files come first
    err = assert_exit_2(train(cli, archive), str(archive), says, "nothing was unpacked")
    assert "Refused" in err
    assert cache_entries(tmp_path) == []
    assert not (tmp_path / "outside.jpg").exists()
    assert not (tmp_path / "run").exists()


def _cut_at_last_header(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        return tar.getmembers()[-1].offset  # tarfile alone would read the rest as a shorter archive


TRUNCATIONS = {
    "tar-half": ("images.tar", lambda archive, size: size // 2),
    "tar-at-a-header": ("images.tar", lambda archive, size: _cut_at_last_header(archive)),
    "tar.gz-half": ("images.tar.gz", lambda archive, size: size // 2),
    "tar.gz-without-its-trailer": ("images.tar.gz", lambda archive, size: size - 8),
    "zip-half": ("images.zip", lambda archive, size: size // 2),
    "zip-without-its-end": ("images.zip", lambda archive, size: size - 10),
}


@pytest.mark.parametrize("case", list(TRUNCATIONS))
def test_a_truncated_archive_is_exit_2_naming_it(cli, tmp_path, case):
    name, cut = TRUNCATIONS[case]
    archive = pack(image_tree(tmp_path / "images"), tmp_path / name, "images/")
    whole = archive.read_bytes()
    archive.write_bytes(whole[: cut(archive, len(whole))])
    assert_exit_2(train(cli, archive), str(archive), "truncated")
    assert [p for p in cache_entries(tmp_path) if p.is_file()] == []


def test_a_file_that_is_not_an_archive(cli, tmp_path):
    fake = tmp_path / "images.tar.gz"
    fake.write_text("not an archive\n")
    assert_exit_2(train(cli, fake), str(fake), "truncated, corrupt or not")
    other = tmp_path / "images.rar"
    other.write_bytes(b"Rar!")
    assert_exit_2(train(cli, other), str(other), ".zip")


def test_an_archive_without_train_folder(cli, tmp_path):
    tree = image_tree(tmp_path / "images")
    archive = pack(tree / "test", tmp_path / "images.zip", "images/")
    assert_exit_2(train(cli, archive), str(archive), "train/", "unpacked into")
