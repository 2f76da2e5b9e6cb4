"""Files written whole or not at all: through a temp file in the same folder and a rename.

os.replace is atomic within one file system, so a process killed mid-write leaves the old file
(or none), never a torn one. Temp files (and the temp folders of writers of several files: an
unpacked archive, an export) are named `.NAME.tmp-PID`, the pattern remove_stale_temps deletes
when that process is gone. They are made with open(),
not mkstemp, so the final file gets the umask's mode (0644 under umask 022), not mkstemp's 0600.
Torch-free: the startup path may write with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any


def writer_alive(pid: int) -> bool:
    """Whether the process that named a temp file `.NAME.tmp-PID` still runs (its file is then not stale)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def temp_path(path: Path) -> Path:
    """Where a writer of `path` puts its bytes before the rename: `.NAME.tmp-PID` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temp file and a rename; the temp goes on failure."""
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, **dumps_options: Any) -> None:
    """json.dumps(data, **dumps_options) and a final newline, as write_text_atomic writes text."""
    write_text_atomic(path, json.dumps(data, **dumps_options) + "\n")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files and folders of writers that died mid-write (SIGKILL, power loss): `.NAME.tmp-PID`
    whose PID is no longer running. Returns what it removed. POSIX only (elsewhere: nothing)."""
    removed = []
    if os.name != "posix" or not Path(folder).is_dir():
        return removed
    for tmp in Path(folder).glob(".*.tmp-*"):
        match = re.fullmatch(r"\..+\.tmp-(\d+)", tmp.name)
        if match is None or writer_alive(int(match.group(1))):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
