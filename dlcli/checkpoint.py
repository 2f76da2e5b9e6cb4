"""Checkpoints: atomic save, safe load, format and version check.

A checkpoint is a dict of tensors and plain values, so it loads with `weights_only=True`
(no pickled code runs): format name, version, task, resolved config, state_dicts of the
model, optimizer, scheduler and scaler, the position (epoch, step, batches consumed in the
epoch), the RNG states and the best metric so far.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.errors import DlError

FORMAT = "dlcli-checkpoint"
VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one:
    os.replace is atomic within one file system, and the fsyncs order the data before the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a dl checkpoint with weights_only=True; anything unreadable is a DlError."""
    path = Path(path)
    if not path.is_file():
        raise DlError(f"Checkpoint {path} does not exist.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise DlError(
            f"Checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "It is truncated, corrupt or not a dl checkpoint: resume from another checkpoint "
            "(--resume-from PATH, e.g. best.pt) or start again with --overwrite."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DlError(f"{path} is not a dl checkpoint (no '{FORMAT}' format tag).")
    if ckpt.get("version") != VERSION:
        raise DlError(f"Checkpoint {path} has format version {ckpt.get('version')}; this dl reads version {VERSION}.")
    return ckpt


def peek(path: Path) -> dict[str, Any] | None:
    """A checkpoint's plain values (task, position, best metrics, wall time) without reading its
    weights: the file is memory-mapped, so `dl runs` lists folders of 1 GB checkpoints at once.
    None when the file is missing, torn or not a dl checkpoint (a listing shows what it can)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises several types for torn or foreign files
        return None
    return ckpt if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT else None


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
