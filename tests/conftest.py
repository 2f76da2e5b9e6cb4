"""Shared test fixtures: an offline, private environment for every test, and a CLI runner.

Every test runs
  * offline (DL_OFFLINE=1), so nothing can touch the network;
  * with its own torch hub cache (TORCH_HOME in the test's tmp folder), so no test sees or
    writes the user's ~/.cache/torch;
  * inside its tmp folder, so default run folders (runs/<name>) land there.

torch runs on one CPU thread: the test machines share few cores with other work, and with
several threads each waiting on busy cores a tiny model's step can be 100x slower.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner, Result

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DL_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # torch.hub.get_dir() follows TORCH_HOME only while no set_dir() override is in place.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """cli("train", "resnet", "--json") -> the Result (exit_code, stdout, stderr, output)."""
    from dlcli.cli import app

    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], None]]:
    """set_umask(0o077) sets the process umask for the rest of the test; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.fixture
def terminal_80(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stdout as an 80-column terminal (the CliRunner's stdout is not a terminal): what the commands
    print through dlcli.console.out lands in the returned buffer, without colours."""
    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr("dlcli.console.out", console)
    monkeypatch.setattr("dlcli.cli.out", console)  # cli.py holds its own name for it
    return screen


@pytest.fixture
def repo_configs() -> Path:
    """The repository's configs/ folder (the source of the bundled recipes)."""
    return Path(__file__).resolve().parents[1] / "configs"
