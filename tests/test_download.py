"""Tests for dlcli.data.download: cache hits, sha256 checks, offline errors, hub weights.

No test touches the network: DL_OFFLINE is set for every test, and the one
download test uses a file:// URL with DL_OFFLINE switched off.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from dlcli.data import download
from dlcli.data.download import fetch, hub_weights_path, load_torchvision_state_dict, offline
from dlcli.errors import DlError

URL = "https://example.invalid/files/data.bin"
PAYLOAD = b"some bytes to download\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _offline_and_private_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DL_OFFLINE", "1")
    # torch.hub.get_dir() re-reads TORCH_HOME on each call unless set_dir() was used;
    # reset that override so the hub cache is this test's tmp folder, never ~/.cache.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False)])
def test_offline_reads_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("DL_OFFLINE", value)
    assert offline() is expected


def test_hub_dir_follows_torch_home(tmp_path: Path) -> None:
    assert Path(torch.hub.get_dir()) == tmp_path / "torch_home" / "hub"


# --- fetch ---------------------------------------------------------------------


def test_fetch_offline_missing_names_url_and_dest(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(DlError) as info:
        fetch(URL, dest, what="the test data")
    msg = str(info.value)
    assert "the test data" in msg
    assert URL in msg
    assert str(dest) in msg
    assert not dest.exists()


def test_fetch_existing_with_correct_sha_returns_it(tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    assert fetch(URL, dest, PAYLOAD_SHA, what="data") == dest
    assert fetch(URL, dest, PAYLOAD_SHA[:8], what="data") == dest  # prefix is enough
    assert fetch(URL, dest, what="data") == dest  # no hash: trusted as is


def test_fetch_existing_with_wrong_sha_is_corrupt(tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    with pytest.raises(DlError, match="corrupt") as info:
        fetch(URL, dest, "0" * 64, what="data")
    assert str(dest) in str(info.value)
    assert dest.exists()  # we never delete a user's file; the message says to


def test_fetch_rejects_meaningless_hash(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        fetch(URL, tmp_path / "x", "", what="data")


def test_fetch_file_url_downloads_and_verifies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, set_umask) -> None:
    monkeypatch.setenv("DL_OFFLINE", "0")
    set_umask(0o027)
    src = tmp_path / "src" / "data.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "cache" / "sub" / "data.bin"
    assert fetch(src.as_uri(), dest, PAYLOAD_SHA, what="data") == dest
    assert dest.read_bytes() == PAYLOAD
    assert os.listdir(dest.parent) == ["data.bin"]  # no temp file left
    assert dest.stat().st_mode & 0o777 == 0o640  # the umask's mode, as open() gives


def test_fetch_file_url_bad_hash_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DL_OFFLINE", "0")
    src = tmp_path / "data.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(DlError, match="sha256"):
        fetch(src.as_uri(), dest, "deadbeef", what="data")
    assert not dest.exists()
    assert os.listdir(dest.parent) == []


def test_fetch_failed_download_names_url_and_dest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DL_OFFLINE", "0")
    url = (tmp_path / "does-not-exist.bin").as_uri()
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(DlError) as info:
        fetch(url, dest, what="data")
    assert url in str(info.value) and str(dest) in str(info.value)
    assert os.listdir(dest.parent) == []


# --- torchvision weights ---------------------------------------------------------


def _resnet18_file() -> Path:
    path = hub_weights_path(download.torchvision_weights("resnet18"))
    assert path.name == "resnet18-f37072fd.pth"
    assert path.parent == _checkpoints()
    return path


def test_load_state_dict_from_hand_placed_file_warns_and_loads() -> None:
    import torchvision

    state = torchvision.models.resnet18().state_dict()
    path = _resnet18_file()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    with pytest.warns(UserWarning, match="differs from torchvision"):
        loaded = load_torchvision_state_dict("resnet18")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_load_state_dict_absent_offline_names_file_and_folder() -> None:
    path = _resnet18_file()
    with pytest.raises(DlError) as info:
        load_torchvision_state_dict("resnet18")
    msg = str(info.value)
    assert path.name in msg
    assert str(path.parent) in msg
    assert "ResNet18_Weights" in msg


def test_load_state_dict_corrupt_file(recwarn: pytest.WarningsRecorder) -> None:
    path = _resnet18_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DlError, match="cannot read") as info:
        load_torchvision_state_dict("resnet18")
    assert str(path) in str(info.value)


def test_load_state_dict_not_a_dict_of_tensors(recwarn: pytest.WarningsRecorder) -> None:
    path = _resnet18_file()
    path.parent.mkdir(parents=True)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(DlError, match="not a state_dict"):
        load_torchvision_state_dict("resnet18")


def test_unknown_arch_lists_choices() -> None:
    with pytest.raises(DlError) as info:
        load_torchvision_state_dict("resnet_nope")
    msg = str(info.value)
    assert "resnet_nope" in msg
    assert "resnet18" in msg and "vit_b_16" in msg


def test_detection_model_is_not_a_classification_arch() -> None:
    with pytest.raises(DlError, match="choose one of"):
        download.torchvision_weights("fasterrcnn_resnet50_fpn")
