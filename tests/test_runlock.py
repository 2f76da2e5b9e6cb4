"""One writer per run folder (dlcli/runlock.py): RUN/.lock, held with flock while dl train or dl export writes.

A second writer exits 2 naming the holder's PID and command line and changes nothing in the folder; a holder
that died leaves the lock free (the kernel releases a flock with its process); readers (dl eval, dl runs,
dl predict, load_run) never take it. Under DDP only rank 0 holds it: tests/test_distributed.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import Result

import dlcli
from dlcli import runlock, runner
from dlcli.errors import DlError

from conftest import TINY_SHAPES, assert_exit_2, sets

fcntl = pytest.importorskip("fcntl", reason="no flock on Windows, where dlcli takes no lock")
TINY = [*TINY_SHAPES, *sets("data.image_size=16", "train.max_steps=1")]
HOLDER_COMMAND = "dl train configs/resnet.yaml --set train.epochs=90"  # what the holder says it runs


@contextlib.contextmanager
def holder(run: Path) -> Iterator[subprocess.Popen]:
    """Another process that holds RUN/.lock as `dl train` does (runlock.holding), until it is SIGKILLed."""
    code = (
        "import shlex, sys, time\n"
        "from dlcli import runlock\n"
        f"sys.argv = shlex.split({HOLDER_COMMAND!r})  # the command line the lock file records\n"
        f"with runlock.holding({str(run)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n", "the holder did not take the lock"
        yield proc
    finally:
        proc.kill()  # SIGKILL: no `finally` of its own runs, as when a trainer is killed
        proc.wait(timeout=30)
        proc.stdout.close()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (bytes, mtime) and the folders' mtimes: what any write would change."""
    return {
        str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else b"", path.stat().st_mtime_ns)
        for path in sorted([folder, *folder.rglob("*")])
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BASE/runs/shapes: a finished tiny classify run (one step)."""
    run = tmp_path_factory.mktemp("locked") / "runs" / "shapes"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DL_OFFLINE", "1")
        overrides = [item for item in TINY if item != "--set"]
        dlcli.train("resnet", overrides, out=run)
    assert not (run / runlock.LOCK_NAME).exists()  # released and removed when training ended
    return run


def test_a_second_writer_exits_2_naming_the_holder_and_changes_nothing(
    cli: Callable[..., Result], finished: Path
) -> None:
    with holder(finished) as other:
        held = snapshot(finished)
        for flags in ([], ["--resume"], ["--overwrite"]):
            result = cli("train", "resnet", "--out", finished, *TINY, *flags)
            assert_exit_2(result, f"process {other.pid} ({HOLDER_COMMAND})", "--out DIR")
        assert_exit_2(cli("export", finished, "--format", "safetensors"), f"process {other.pid}", "-o FILE")
        with pytest.raises(DlError, match=f"process {other.pid}"):
            dlcli.train("resnet", [item for item in TINY if item != "--set"], out=finished, overwrite=True)
        assert snapshot(finished) == held


def test_readers_work_while_the_lock_is_held(
    cli: Callable[..., Result], finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(finished.parent.parent)  # dl predict without --run looks under ./runs
    image = finished.parent.parent / "circle.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    with holder(finished):
        held = snapshot(finished)
        assert cli("eval", finished, "--json").exit_code == 0
        assert cli("runs", "--json").exit_code == 0
        assert cli("predict", image, "--run", finished).exit_code == 0
        answered = cli("predict", image)
        assert answered.exit_code == 0 and "using runs/shapes (newest finished classify run)" in answered.stderr
        assert dlcli.load_run(finished).task == "classify"
        assert snapshot(finished) == held


def test_a_dead_holders_lock_is_free(cli: Callable[..., Result], tmp_path: Path) -> None:
    run = tmp_path / "run"
    with holder(run) as other:
        pass  # SIGKILLed on leaving
    assert other.returncode == -signal.SIGKILL
    assert (run / runlock.LOCK_NAME).read_text().startswith(f"{other.pid}\n")  # its file stays; its flock went with it
    result = cli("train", "resnet", "--out", run, *TINY, "-q")
    assert result.exit_code == 0, result.output
    assert (run / "summary.json").is_file() and not (run / runlock.LOCK_NAME).exists()


def test_train_holds_the_lock_from_before_overwrite_deletes_to_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--overwrite empties the folder under the lock, keeping the lock file (with it gone, a second writer
    could lock a new one); the lock is held, with this PID, while the runner writes; then it goes."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task: classify\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"old")
    seen = {}

    def fake_train(task, cfg, run_dir, runtime, logger, resume_from, strict_expect=False):
        lock = run_dir / runlock.LOCK_NAME
        seen["entries"] = sorted(p.name for p in run_dir.iterdir())
        seen["pid"] = lock.read_text().split("\n")[0]
        with open(lock) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file description: refused
        return {}

    monkeypatch.setattr(runner, "train", fake_train)
    dlcli.train("resnet", overwrite=True, out=run)
    assert seen == {"entries": [runlock.LOCK_NAME], "pid": str(os.getpid())}
    assert list(run.iterdir()) == []  # the lock file goes when training ends; the folder stays


def test_a_refused_start_leaves_no_folder_behind(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert_exit_2(cli("train", "resnet", "--out", tmp_path / "new" / "run", "--resume"), "Nothing to resume")
    assert not (tmp_path / "new").exists()


def test_two_holders_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    """flock locks an open file description: the Python API, called twice in one process, is refused too."""
    with runlock.holding(tmp_path / "run"):
        with pytest.raises(DlError, match=f"process {os.getpid()}"):
            with runlock.holding(tmp_path / "run"):
                pass
        assert (tmp_path / "run" / runlock.LOCK_NAME).is_file()
    assert not (tmp_path / "run").exists()  # created by the lock, left empty: removed
