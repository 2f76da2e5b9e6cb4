"""One writer per run folder: RUN/.lock, held with flock(2) for as long as a process writes the folder.

    with runlock.holding(run_dir, "or train into another folder with --out DIR"):
        ...   # dl train (also --resume, --overwrite: the lock comes before anything is deleted), dl export into RUN

The lock is the kernel's: flock(LOCK_EX | LOCK_NB) on RUN/.lock, held while the file stays open, so a
holder that dies (SIGKILL, out of memory) frees it and no stale lock is ever cleaned up by hand. The
holder writes its PID and command line into the file; a second writer reads them for its message and
stops (DlError, exit 2) having changed nothing. Readers (dl eval, dl runs, dl plot, load_run, the
inference commands) never take it: a writer replaces every file atomically (files.py, checkpoint.py).
Under DDP only rank 0 holds it, for every rank (api.train).

flock locks an open file description, not a process: two opens in one process exclude each other as two
processes do. Windows has no fcntl and dlcli targets Linux and macOS: there, no lock is taken.
Torch-free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from dlcli.errors import DlError

try:
    import fcntl
except ImportError:  # Windows: no flock, and dlcli targets Linux and macOS; writers there are not excluded
    fcntl = None

LOCK_NAME = ".lock"
# flock on a file system that does not support it (some network mounts): train without a lock rather than not at all.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}


@contextlib.contextmanager
def holding(run_dir: Path, elsewhere: str = "") -> Iterator[None]:
    """Hold RUN/.lock while the block writes the run folder (created if missing).

    Args:
        elsewhere: how else the user may get what they asked, appended to the refusal
            ("or train into another folder with --out DIR").

    Raises:
        DlError: another process holds it; the message names its PID and command line.
    """
    run_dir = Path(run_dir)
    created = [] if run_dir.is_dir() else [run_dir, *(p for p in run_dir.parents if not p.exists())]
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    fd = _acquire(lock, elsewhere)
    try:
        yield
    finally:
        if fd is not None:
            # Removed before it is released: a writer that opened it meanwhile finds it unlinked and retries (_acquire).
            lock.unlink(missing_ok=True)
            os.close(fd)
        for folder in created:  # nothing written (a refused flag, data that failed to load): leave no folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


def entries(run_dir: Path) -> list[Path]:
    """What a run folder holds, its lock file left out (it is not part of the run)."""
    return [entry for entry in Path(run_dir).iterdir() if entry.name != LOCK_NAME]


def _acquire(lock: Path, elsewhere: str) -> int | None:
    """The lock taken: its open descriptor, with this process's PID and command line written in; None where
    the file system has no flock."""
    if fcntl is None:
        return None
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DlError(_refusal(lock, elsewhere)) from None
        except OSError as e:
            os.close(fd)
            if e.errno in _UNSUPPORTED:
                return None
            raise
        # A holder that was ending unlinked the file between our open and our flock: a lock on that file
        # guards nothing, so take the one now at the path.
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{_command_line()}\n".encode())
    return fd


def _refusal(lock: Path, elsewhere: str) -> str:
    try:
        pid, _, command = lock.read_text(encoding="utf-8", errors="replace").partition("\n")
    except OSError:
        pid, command = "", ""
    pid, command = pid.strip(), command.strip()
    holder = f"process {pid}" + (f" ({command})" if command else "") if pid else "another process"
    return (
        f"{lock.parent} is being written by {holder}; one process writes a run folder at a time. "
        f"Wait for it to end or stop it{', ' + elsewhere if elsewhere else ''}. "
        "dl eval, dl runs and the inference commands read the folder meanwhile."
    )


def _command_line() -> str:
    """This process's command as a user would type it: `dl train ...`, or `python -m dlcli train ...`."""
    if not sys.argv:
        return ""
    program = Path(sys.argv[0])
    name = "python -m dlcli" if program.name == "__main__.py" and program.parent.name == "dlcli" else program.name
    return " ".join([name, *map(shlex.quote, sys.argv[1:])])
