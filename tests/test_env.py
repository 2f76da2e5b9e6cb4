"""`dl env`: versions, devices and threads, as tables or one JSON document."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable

import pytest
import torch
from typer.testing import Result

from dlcli import __version__, env


def test_env_json_reports_versions_devices_and_threads(cli: Callable[..., Result]) -> None:
    result = cli("env", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"versions", "optional", "devices", "cpu", "platform"}

    versions = report["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["dlcli"] == __version__
    assert versions["torch"] == torch.__version__
    assert {"torchvision", "numpy"} <= set(versions)
    assert set(report["optional"]) == set(env.OPTIONAL_PACKAGES) <= set(versions)
    assert all(v is None or isinstance(v, str) for v in versions.values())

    devices = report["devices"]
    assert set(devices) == {"cuda", "cuda_version", "cudnn_version", "mps", "auto"}
    assert len(devices["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for gpu in devices["cuda"]:
        assert set(gpu) == {"index", "name", "memory_gib", "capability"} and gpu["memory_gib"] > 0
    assert devices["auto"] in ("cuda", "mps", "cpu")

    cpu = report["cpu"]
    assert cpu["count"] == os.cpu_count()
    assert 1 <= cpu["usable"] <= cpu["count"]
    assert cpu["torch_threads"] == torch.get_num_threads()


def test_env_table_says_not_installed(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(env.OPTIONAL_PACKAGES, "dlcli-no-such-package", "export")
    report = json.loads(cli("env", "--json").stdout)
    assert report["versions"]["dlcli-no-such-package"] is None

    result = cli("env")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "dlcli-no-such-package" in line)
    assert "not installed" in row and "dlcli[export]" in row
    assert torch.__version__ in result.stdout
