"""The one way back from a run folder to its model, as Lightning's `load_from_checkpoint` is.

    run = load_run("runs/char-lstm")                       # LoadedRun: the model in eval mode, on auto's device
    run.model, run.assets["vocab"], run.config, run.step
    load_run("runs/resnet-ema", weights="raw")             # train.ema runs: the raw weights, not best.pt's choice

open_run reads the checkpoint once (its seal checked by checkpoint.load) and validates its config
against the task's schema; load_run then rebuilds the model through the task's restore_model and
loads the weights. `dl eval` stops at open_run: it rebuilds the whole Job (model and data) itself
(restore_for_eval). Every command that reads a run's weights and the Python API come here. A train.ema run's
checkpoint holds two sets of weights; the one its best validation chose (Record.weights) is loaded unless
`weights` names the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli import checkpoint
from dlcli.config import RunConfig, validate
from dlcli.errors import DlError
from dlcli.runner import Job
from dlcli.runtime import Runtime, pick_device
from dlcli.tasks import get_task
from dlcli.tasks.contract import Task

WEIGHTS = ("raw", "ema")  # a checkpoint's weights: as trained (Record.model), train.ema's average (Record.ema)


@dataclass
class RunCheckpoint:
    """A run's checkpoint, read once, and its config validated against its task's schema."""

    run_dir: Path
    path: Path  # the checkpoint file: averaged.pt, best.pt or last.pt (best_checkpoint), or the one named
    task: Task
    config: RunConfig
    record: checkpoint.Record = field(repr=False)  # what checkpoint.load read: the weights, extra, position...
    weights: str = "raw"  # which of the record's weights `state` is: "raw" (record.model) or "ema" (record.ema)

    @property
    def state(self) -> dict[str, torch.Tensor]:
        """The model's state_dict, on the CPU: the raw weights, or train.ema's average (`weights`)."""
        return self.record.ema if self.weights == "ema" else self.record.model

    @property
    def extra(self) -> dict[str, Any]:
        """What the task saved beside the weights (class names, vocabulary, tokenizer...)."""
        return self.record.extra

    @property
    def step(self) -> int:
        """The optimizer steps trained when the checkpoint was written."""
        return self.record.step


@dataclass
class LoadedRun:
    """A run's model back from its checkpoint, ready for inference."""

    run_dir: Path
    path: Path  # the checkpoint file read
    step: int  # optimizer steps trained when it was written
    task: Task
    config: RunConfig
    weights: str  # the weights loaded: "raw", or "ema" (train.ema's average)
    extra: dict[str, Any] = field(repr=False)  # the checkpoint's extra, as saved
    model: nn.Module | None = field(
        repr=False
    )  # eval mode, on `device`; None for style runs (their outputs are images)
    assets: dict[str, Any] = field(
        repr=False
    )  # what inference needs besides (task.restore_model): vocab, tokenizer, classes
    device: torch.device


def best_checkpoint(run_dir: Path) -> Path:
    """A run's averaged.pt (weights averaged over its last epochs, when the recipe asked for
    it), else its best.pt, else its last.pt."""
    run_dir = Path(run_dir)
    for name in ("averaged.pt", "best.pt", "last.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise DlError(
        f"{run_dir} holds no checkpoint (checkpoints/best.pt or last.pt). Is it a dl run folder? Train one with `dl train`."
    )


def open_run(
    run_dir: str | Path, checkpoint_name: str | None = None, task: str | None = None, weights: str | None = None
) -> RunCheckpoint:
    """Read a run folder's best checkpoint (or checkpoints/<checkpoint_name>) and validate its config.

    Args:
        task: the task the caller needs ("lm" for dl generate); a run of another task is a DlError.
        weights: "raw" or "ema" (train.ema's average); default: what the checkpoint chose (Record.weights).

    Raises:
        DlError: no checkpoint, a damaged one, a run of another task than `task`, a config its schema refuses,
            or weights the checkpoint does not hold.
    """
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / checkpoint_name if checkpoint_name else best_checkpoint(run_dir)
    record = checkpoint.load(path)
    if task is not None and record.task != task:
        wanted = get_task(task)
        raise DlError(f"{run_dir} is a '{record.task}' run, not {wanted.RUN_KIND} (task {task}).")
    run_task = get_task(record.task)
    config = validate(record.config, run_task.Config)
    return RunCheckpoint(run_dir, path, run_task, config, record, _weights(record, path, weights))


def _weights(record: checkpoint.Record, path: Path, wanted: str | None) -> str:
    """The weights to load: `wanted`, else the checkpoint's choice; "ema" only where it holds an average."""
    if wanted is None:
        return record.weights if record.ema is not None else "raw"
    if wanted not in WEIGHTS:
        raise DlError(f"Unknown weights '{wanted}'. Choose one of: {', '.join(WEIGHTS)}.")
    if wanted == "ema" and record.ema is None:
        raise DlError(
            f"{path} holds no EMA weights: the run was trained without train.ema. Use the raw weights (--weights raw)."
        )
    return wanted


def load_run(
    run_dir: str | Path,
    device: str | torch.device | None = None,
    checkpoint_name: str | None = None,
    task: str | None = None,
    weights: str | None = None,
) -> LoadedRun:
    """A run folder's model back from its best checkpoint (or checkpoints/<checkpoint_name>), in eval mode.

    Args:
        device: auto (default), cpu, cuda, cuda:N or mps; a command that means another default passes it.
        task: the task the caller needs; a run of another task is a DlError (see open_run).
        weights: "raw" or "ema" (train.ema's average); default: what best.pt chose (see open_run).
    """
    return restore(open_run(run_dir, checkpoint_name, task, weights), device)


def restore(run: RunCheckpoint, device: str | torch.device | None = None) -> LoadedRun:
    """The model of a checkpoint already read: rebuilt by its task, the weights loaded, in eval mode on `device`."""
    device = device if isinstance(device, torch.device) else pick_device(device or "auto")
    model, assets = run.task.restore_model(run.config, run.extra)
    if model is not None:
        model.load_state_dict(run.state)
        model = model.to(device).eval()
    return LoadedRun(
        run.run_dir, run.path, run.step, run.task, run.config, run.weights, run.extra, model, assets, device
    )


def restore_for_eval(run: RunCheckpoint, split: str | None, runtime: Runtime) -> tuple[str, Job, nn.Module]:
    """A checkpoint already read (open_run) rebuilt for evaluation: the split's name (default: test
    when the data has one, else val), the task's Job (its loaders and steps) and the model with the
    weights loaded. What dl eval scores; its other passes over the split (--confusion) start here too."""
    job = run.task.build(run.config, runtime, load_weights=False)
    split = split or ("test" if "test" in job.eval_data else "val")
    if split not in job.eval_data:
        raise DlError(f"{run.run_dir}'s data has no '{split}' split; it has: {', '.join(job.eval_data)}.")
    model = job.model.to(runtime.device)
    model.load_state_dict(run.state)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return split, job, model
