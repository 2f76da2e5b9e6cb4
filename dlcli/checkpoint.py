"""Checkpoints: the record a training run saves, atomic save, checked load, format and version check.

A checkpoint is a `Record` (below): what the runner writes and what resume, `dl runs`, the loaders
and export read, through this module only. On disk it is a dict of tensors and plain values, so it
loads with `weights_only=True` (no pickled code runs): format name, version, task, resolved config,
state_dicts of the model, optimizer, scheduler and scaler, the position (epoch, step, batches
consumed in the epoch), the RNG states, the best metric so far, train.patience's count and, with
train.ema, the weights' moving average and which of the two weights scored best.

The file is the zip archive torch.save writes, sealed with the sha256 of its bytes in the
archive's comment (the zip format's own place for trailing text, so torch.load and any zip
reader still read it as it is):

    [ torch.save's zip ... end record, comment length = 77 ][ "dlcli-sha256:" + 64 hex digits ]
      |<----------- hashed: every byte before the comment-length field ------->|

load() checks the seal before it unpickles anything, so a flipped bit or a torn copy is refused
with a message instead of loading wrong weights. Version 1 checkpoints (before the seal) still load.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.errors import DlError
from dlcli.files import temp_path

FORMAT = "dlcli-checkpoint"
VERSION = 2  # 2: sealed with a sha256; 1: unsealed (still read)
READS = (1, 2)


# --------------------------------------------------------------------------- the record


@dataclass
class Position:
    """Where training stands: what resume starts from (see dlcli.runner)."""

    epoch: int = 0  # the epoch in progress
    batch: int = 0  # micro-batches of it already trained on
    step: int = 0  # optimizer steps done in total


@dataclass
class Record:
    """What a training checkpoint holds: the runner writes it, everything else reads it through
    load() and peek(). Fields added after version 1 have defaults, so older files still read."""

    task: str  # the task's name (dlcli.tasks.TASKS)
    config: dict[str, Any]  # the resolved recipe (config.to_dict), validated by the reader against the task's schema
    model: dict[str, torch.Tensor]  # the state_dict
    position: Position
    extra: dict[str, Any] = field(default_factory=dict)  # the task's own values: vocabulary, class names...
    optimizer: dict[str, Any] = field(default_factory=dict)  # state_dicts: optimizer, LR scheduler, AMP scaler
    scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None  # the best validation value so far, and the val metrics it came with
    best_metrics: dict[str, float] | None = None
    wall_s: float = 0.0  # training time so far (resumed runs add up)
    skipped_steps: int = 0  # optimizer steps dropped for a NaN/Inf loss or gradient (train.on_nonfinite=skip)
    skips_in_a_row: int = 0  # of them, the latest run of consecutive ones
    metrics_bytes: int | None = None  # metrics.jsonl's size when written: what a resume cuts the file back to
    rng: list[dict[str, Any]] = field(default_factory=list)  # each process's RNG states (rng_state())
    # train.ema: the moving average of the weights (a state_dict shaped as `model`) and the averaging updates
    # it has had (AveragedModel.n_averaged; 0: the next update copies the weights). None/0 without train.ema.
    ema: dict[str, torch.Tensor] | None = None
    ema_updates: int = 0
    weights: str = "raw"  # what the best validation chose, and what inference loads: "raw" (model) or "ema" (ema)
    # train.patience: scheduled validations in a row without an improvement by more than train.min_delta, and the
    # best they reached with its epoch (RunState's fields; schedule plateau's state is in `scheduler`).
    evals_without_improvement: int = 0
    patience_best: float | None = None
    patience_best_epoch: int = 0
    # train.fit_to_minutes: the epochs (and so the schedule's length) fitted after the first; None: train.epochs
    fitted_epochs: int | None = None

    @property
    def step(self) -> int:
        return self.position.step

    def to_file(self) -> dict[str, Any]:
        """The dict torch.save writes: plain values and tensors only."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: it deep-copies the tensors
        return {"format": FORMAT, "version": VERSION, **values, "position": vars(self.position).copy()}

    @classmethod
    def from_file(cls, values: dict[str, Any], path: Path) -> Record:
        """The record in a dict load_file() accepted; one without a training run's fields is a DlError."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(
                **{**{k: v for k, v in values.items() if k in known}, "position": Position(**values["position"])}
            )
        except (KeyError, TypeError):
            raise DlError(
                f"{path} is a dl file but not a training checkpoint (it lacks the task, config, model or position)."
            ) from None


_MAGIC = b"dlcli-sha256:"
_SEAL_LEN = len(_MAGIC) + 64  # the archive comment: magic + hex digest
_EOCD = b"PK\x05\x06"  # the zip's end-of-central-directory record: 22 bytes, then the comment
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- writing


def save(record: Record, path: Path, previous: Path | None = None) -> None:
    """Write a training checkpoint atomically (save_atomic), keeping the one it replaces as `previous`."""
    save_atomic(record.to_file(), path, previous)


def save_atomic(obj: Any, path: Path, previous: Path | None = None) -> None:
    """torch.save to a temp file in the same folder, seal, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one:
    os.replace is atomic within one file system, and the fsyncs order the data before the name.
    With `previous`, the file being replaced is kept under that name (last.pt -> last.prev.pt), by
    a hard link made before the rename: both names always point at a complete checkpoint.

    A failed write (disk full, file too large, no permission) raises OSError with its errno and
    leaves `path` and `previous` as they were; the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w+b") as f:
            _torch_save(obj, f)
            _seal(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            link_atomic(path, Path(previous))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


class _Sink:
    """The file torch.save writes into. torch reports a failed write as a RuntimeError that has lost
    the errno ("unexpected pos 704 vs 598"); this keeps the OSError so the caller can say ENOSPC."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):  # seek, tell, flush: as the file does
        return getattr(self.file, name)


def _torch_save(obj: Any, f) -> None:
    sink = _Sink(f)
    try:
        torch.save(obj, sink)
    except Exception:
        if sink.error is not None:
            raise sink.error from None
        raise
    f.flush()


def _seal(f) -> None:
    """Set the zip comment's length, then append the sha256 of every byte before that field."""
    size = f.seek(0, os.SEEK_END)
    f.seek(size - 22)
    end = f.read(22)
    if end[:4] != _EOCD or end[20:] != b"\0\0":
        raise RuntimeError("torch.save wrote no plain zip end record; dlcli.checkpoint cannot seal this file")
    digest = _sha256(f, size - 2)
    f.seek(size - 2)
    f.write(_SEAL_LEN.to_bytes(2, "little") + _MAGIC + digest.encode())


def link_atomic(source: Path, target: Path, previous: Path | None = None) -> None:
    """`target` becomes a second name of the complete file `source`, atomically (a hard link, else a
    copy, then a rename); with `previous`, the file `target` replaces is kept under that name.

    Safe beside save_atomic: no writer changes a checkpoint in place (each save renames a new file
    over the name), so a file shared by two names never changes under either."""
    source, target = Path(source), Path(target)
    if previous is not None and target.exists():
        link_atomic(target, Path(previous))
    tmp = temp_path(target)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(target.parent)


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


# --------------------------------------------------------------------------- reading


def _sha256(f, end: int) -> str:
    """sha256 of the file's bytes [0, end)."""
    digest = hashlib.sha256()
    f.seek(0)
    left = end
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def seal_status(path: Path) -> str:
    """ "ok" (sealed, the sha256 matches), "mismatch" (sealed, it does not) or "unsealed"."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < 22 + _SEAL_LEN:
            return "unsealed"
        f.seek(size - _SEAL_LEN - 2)
        tail = f.read(_SEAL_LEN + 2)
        if tail[:2] != _SEAL_LEN.to_bytes(2, "little") or tail[2 : 2 + len(_MAGIC)] != _MAGIC:
            return "unsealed"
        expected = tail[2 + len(_MAGIC) :].decode("ascii", errors="replace")
        return "ok" if _sha256(f, size - _SEAL_LEN - 2) == expected else "mismatch"


def is_intact(path: Path) -> bool:
    """Whether load() would accept `path`, without unpickling its tensors: sealed with a matching
    sha256, or an unsealed version 1 checkpoint whose archive opens."""
    try:
        seal = seal_status(path)
    except OSError:
        return False
    if seal != "unsealed":
        return seal == "ok"
    header = _peek_file(path)
    return header is not None and header.get("version") == 1


def previous_of(path: Path) -> Path:
    """Where save_atomic keeps the checkpoint a save replaced: last.pt -> last.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def load(path: Path, map_location: str | torch.device = "cpu") -> Record:
    """A training checkpoint's record (load_file, then its fields checked)."""
    return Record.from_file(load_file(path, map_location), Path(path))


def load_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a dl file with weights_only=True after checking its sha256; anything torn,
    corrupt or foreign is a DlError that names the previous checkpoint when one is kept."""
    path = Path(path)
    if not path.is_file():
        raise DlError(f"Checkpoint {path} does not exist.")
    seal = _read_seal(path, "Checkpoint ")
    if seal == "mismatch":
        raise DlError(
            f"Checkpoint {path} is corrupt: its contents do not match the sha256 it was written with "
            f"(a flipped bit on disk, or a damaged copy).{_fallback_hint(path)}"
        )
    ckpt = _unpickle(
        path,
        map_location,
        f"Checkpoint {path}",
        f"It is truncated, corrupt or not a dl checkpoint.{_fallback_hint(path)}",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DlError(f"{path} is not a dl checkpoint (no '{FORMAT}' format tag).")
    version = ckpt.get("version")
    if version not in READS:
        raise DlError(
            f"Checkpoint {path} has format version {version}; this dl reads versions "
            f"{', '.join(map(str, READS))}. Use the dl release that wrote it."
        )
    if version >= 2 and seal != "ok":
        raise DlError(
            f"Checkpoint {path} has lost its sha256 seal (version {version} checkpoints are written with one): "
            f"it was cut short or rewritten by another program.{_fallback_hint(path)}"
        )
    return ckpt


def load_weights(path: Path) -> dict[str, Any]:
    """A bare state_dict that dl sealed with save_atomic (translation's epoch-NNN.weights.pt),
    with weights_only=True after its sha256 is checked; unsealed or damaged is a DlError."""
    path = Path(path)
    seal = _read_seal(path)
    if seal != "ok":
        why = (
            "its contents do not match the sha256 it was written with"
            if seal == "mismatch"
            else "it has no sha256 seal"
        )
        raise DlError(f"{path} is corrupt: {why}. Delete it (the other kept epochs are still averaged).")
    return _unpickle(path, "cpu", str(path))


def read_state_dict(path: Path, what: str) -> tuple[dict[str, torch.Tensor], Record | None]:
    """The tensors of a weights file a user names (`what`: the setting, e.g. "model.weights"): a plain
    state_dict (torchvision's .pth) or the model of a dl checkpoint, whose sha256 seal is checked.

    Returns the state_dict and, for a dl checkpoint, its record (its task and config); None for a
    plain state_dict. Anything else is a DlError naming `what` and the file.
    """
    path = Path(path)
    if _read_seal(path, f"{what}: ") == "mismatch":
        raise DlError(f"{what}: {path} is corrupt: its contents do not match the sha256 it was written with.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise DlError(f"{what}: {path} cannot be read as a PyTorch file ({type(e).__name__}).") from None
    record = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        record = Record.from_file(state, path)
        state = record.model
    if not is_state_dict(state):
        raise DlError(f"{what}: {path} is not a state_dict (a dict of tensors) or a dl checkpoint.")
    return state, record


def is_state_dict(obj: Any) -> bool:
    """A dict of parameter names to tensors, as Module.state_dict() returns."""
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _read_seal(path: Path, what: str = "") -> str:
    """seal_status, with an unreadable file as a DlError (`what` prefixes the path in it)."""
    try:
        return seal_status(path)
    except OSError as e:
        raise DlError(f"{what}{path} cannot be read: {e.strerror or e}.") from None


def _unpickle(path: Path, map_location: str | torch.device, name: str, advice: str = "") -> Any:
    """torch.load with weights_only=True; a torn or foreign file is a DlError naming `name`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise DlError(
            f"{name} cannot be read ({type(e).__name__}: {_first_sentence(e)}).{' ' + advice if advice else ''}"
        ) from None


def _first_sentence(error: Exception) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text.split(". ")[0][:200]


def _fallback_hint(path: Path) -> str:
    """What to continue from instead: the kept previous checkpoint when it is intact."""
    previous = previous_of(path)
    if path.name.endswith(".prev.pt") or not previous.is_file() or not is_intact(previous):
        return " Resume from another checkpoint (--resume-from PATH, e.g. best.pt) or start again with --overwrite."
    return (
        f" The previous checkpoint is kept and intact: continue from it with --resume-from {previous} "
        "(the steps since it are trained again)."
    )


def peek(path: Path) -> Record | None:
    """A checkpoint's record for its plain values (task, position, best metrics, wall time) without
    reading its weights: the file is memory-mapped, so `dl runs` lists folders of 1 GB checkpoints at
    once. The seal is not checked. None when the file is missing, torn or not a training checkpoint
    (a listing shows what it can)."""
    values = _peek_file(path)
    if values is None:
        return None
    try:
        return Record.from_file(values, Path(path))
    except DlError:
        return None


def _peek_file(path: Path) -> dict[str, Any] | None:
    try:
        values = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises several types for torn or foreign files
        return None
    return values if isinstance(values, dict) and values.get("format") == FORMAT else None


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
