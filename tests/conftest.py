"""Shared test fixtures: an offline, private environment for every test, and a CLI runner.

Every test runs
  * offline (DL_OFFLINE=1), so nothing can touch the network;
  * with its own torch hub cache (TORCH_HOME in the test's tmp folder), so no test sees or
    writes the user's ~/.cache/torch;
  * with its own cache (XDG_CACHE_HOME in the test's tmp folder), where archives of image
    folders are unpacked, so no test fills the user's ~/.cache/dlcli;
  * inside its tmp folder, so default run folders (runs/<name>) land there.

torch runs on one CPU thread: the test machines share few cores with other work, and with
several threads each waiting on busy cores a tiny model's step can be 100x slower.
"""

from __future__ import annotations

import io
import json
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
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # torch.hub.get_dir() follows TORCH_HOME only while no set_dir() override is in place.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """cli("train", "resnet", "--json") -> the Result (exit_code, stdout, stderr, output)."""
    return dl


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
    for module in ("cli", "cli_infer", "cli_vectors", "cli_stylize"):  # each holds its own name for it
        monkeypatch.setattr(f"dlcli.{module}.out", console)
    return screen


@pytest.fixture
def repo_configs() -> Path:
    """The repository's configs/ folder (the source of the bundled recipes)."""
    return Path(__file__).resolve().parents[1] / "configs"


# --------------------------------------------------------------------------- helpers the test files share
# Imported as `from conftest import ...` (pytest puts tests/ on sys.path for its conftest.py).


def dl(*args: object) -> Result:
    """dl("train", "resnet", "--json") -> the Result, as the `cli` fixture gives it."""
    from dlcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_exit_2(result: Result, *needles: str) -> str:
    """Exit 2, a one-paragraph message on stderr that names what is wrong, no traceback; the message."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    err = result.stderr
    assert err.startswith("error:") or "\nerror:" in err, err
    for needle in needles:
        assert needle in err, err
    return err


def train_image_folder(cli, root: Path, *extra: str, max_steps: int = 1):
    """`dl train resnet` on the image folder (or archive) `root`: 16 px, batches of 4, a quarter of train
    held out as val, `max_steps` steps; `extra` are more --set items. The run folder is beside `root`."""
    return cli(
        "train",
        "resnet",
        "--out",
        root.parent / "run",
        "-q",
        "--json",
        *sets(
            f"data.root={root}",
            "data.dataset=imagefolder",
            "data.image_size=16",
            "data.batch_size=4",
            "data.val_fraction=0.25",
            f"train.max_steps={max_steps}",
            *extra,
        ),
    )


def sets(*items: str) -> list[str]:
    """sets("a.b=1", "c=2") -> ["--set", "a.b=1", "--set", "c=2"]."""
    return [x for item in items for x in ("--set", item)]


def toy_recipe(monkeypatch, tmp_path: Path, recipe: str) -> Path:
    """tests/toy_task.py registered as task `toyreg` (dlcli.tasks.TASKS, monkeypatched), and `recipe`
    (YAML text of a toyreg recipe) written to a file: its path, for `dl train`."""
    from dlcli import tasks

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    monkeypatch.setitem(tasks.TASKS, "toyreg", tasks.Entry("toy_task", "toy_task_config:ToyConfig"))
    path = tmp_path / "toy.yaml"
    path.write_text(recipe, encoding="utf-8")
    return path


def fake_run(folder: Path, task: str, finished_at: float | None) -> Path:
    """The files that say a folder's task and whether it finished: config.yaml, and summary.json with its mtime."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"task: {task}\n")
    if finished_at is not None:
        (folder / "summary.json").write_text(json.dumps({"task": task, "steps": 1}))
        os.utime(folder / "summary.json", (finished_at, finished_at))
    return folder


# Tiny shapes data for the classify recipes: 5 train batches of 4, and small val/test splits.
TINY_SHAPES = sets("data.batch_size=4", "data.train_size=20", "data.val_size=10", "data.test_size=10")


def assert_same_training_state(a, b) -> None:
    """Two checkpoint records' position, weights, optimizer moments, schedule and (train.ema) the
    weights' average equal bit for bit."""
    assert a.position == b.position
    assert a.model.keys() == b.model.keys()
    for key, tensor in a.model.items():
        assert torch.equal(tensor, b.model[key]), key
    assert (a.ema is None) == (b.ema is None)
    assert (a.ema_updates, a.weights) == (b.ema_updates, b.weights)
    if a.ema is not None:
        assert a.ema.keys() == b.ema.keys()
        for key, tensor in a.ema.items():
            assert torch.equal(tensor, b.ema[key]), f"ema {key}"
    for key, state in a.optimizer["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b.optimizer["state"][key][name])), (key, name)
    assert a.scheduler["last_epoch"] == b.scheduler["last_epoch"]
