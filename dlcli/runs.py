"""Run folders as data: find them, say what each holds, read its metrics.jsonl.

    dl runs                 # every run under runs/: task, best metric, steps, wall time, when
    dl runs experiments --json

A run folder is what `dl train` writes (config.yaml first, then checkpoints/, metrics.jsonl and,
when training ends, summary.json). Everything here only reads, and reads what is there: an
unfinished or interrupted run shows what its files know so far.

The inference commands given no --run answer with `newest_finished(task)`: `dl train
configs/word2vec.yaml && dl analogy king man woman` works as typed. Torch-free until a checkpoint is
peeked at (`dl runs`), so that finding no run is said before a command loads torch.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dlcli.errors import DlError

if TYPE_CHECKING:
    from dlcli import checkpoint

# The bookkeeping fields of a metrics.jsonl record; everything else in it is a metric.
RECORD_FIELDS = ("step", "epoch", "split", "lr", "items_per_s", "elapsed_s")

RUNS = Path("runs")  # where `dl train` puts runs/<name> and the inference commands look for one
# Per task of an inference command: the bundled recipe that trains one on built-in data, and its training time as
# the recipe's header states it (a 2-core CPU; tests/test_newest_run.py holds them to the headers).
FIRST_RECIPE = {
    "classify": ("configs/resnet.yaml", "150 s"),
    "word2vec": ("configs/word2vec.yaml", "3 s"),
    "tag": ("configs/pos_lstm.yaml", "6 s"),
    "lm": ("configs/char_lstm.yaml", "52 s"),
    "translate": ("configs/translation.yaml", "2.9 minutes"),
}


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "checkpoints").is_dir()


def find_runs(folder: Path) -> list[Path]:
    """Run folders at or under `folder`, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DlError(
            f"No folder {folder}. `dl train` writes runs to runs/<name> (or --out DIR); name the folder that holds them."
        )
    found = []
    for here, subfolders, _ in os.walk(folder):
        if is_run_dir(Path(here)):
            found.append(Path(here))
            subfolders.clear()  # a run's own subfolders (checkpoints/, images/) are not runs
    return sorted(found)


def newest_finished(task: str, folder: Path = RUNS, sources: str = "--run RUN") -> Path:
    """The finished run (summary.json written) of `task` at or under `folder` whose summary.json is newest.

    Args:
        sources: what else the command takes instead, for the message when there is none ("--run RUN").

    Raises:
        DlError: none there; the message names the recipe to train and how long it takes.
    """
    finished, unfinished = [], []
    for run in find_runs(folder) if Path(folder).is_dir() else []:
        summary = _read_json(run / "summary.json")
        if ((summary or {}).get("task") or _config_task(run)) == task:
            (finished if summary is not None else unfinished).append(run)
    if finished:
        return max(finished, key=lambda run: ((run / "summary.json").stat().st_mtime_ns, str(run)))
    recipe, took = FIRST_RECIPE[task]
    waiting = f" ({', '.join(map(str, unfinished))}: not finished, no summary.json)" if unfinished else ""
    raise DlError(
        f'No finished {task} run under {folder}/{waiting}: train one with "dl train {recipe}" ({took} of '
        f"training on a 2-core CPU), or give {sources}."
    )


def describe(run: Path) -> dict[str, Any]:
    """One row of `dl runs --json`: what the run's files say, None where they say nothing yet.

    {"run", "task", "finished" (summary.json is there), "best_metric", "best_value",
     "steps", "wall_s", "modified" (ISO local time of the newest file)}
    """
    summary = _read_json(run / "summary.json")
    ckpt = peek_checkpoint(run)
    best = best_metric(ckpt)
    task = (summary or {}).get("task") or (ckpt.task if ckpt else None) or _config_task(run)
    if summary is not None:
        steps, wall_s = summary.get("steps"), summary.get("wall_s")
    elif ckpt is not None:
        steps, wall_s = ckpt.step, round(ckpt.wall_s, 3)
    else:
        steps, wall_s = None, None
    return {
        "run": str(run),
        "task": task,
        "finished": summary is not None,
        "best_metric": best[0] if best else None,
        "best_value": best[1] if best else None,
        "steps": steps,
        "wall_s": wall_s,
        "modified": datetime.datetime.fromtimestamp(_newest_mtime(run)).isoformat(timespec="seconds"),
    }


def peek_checkpoint(run: Path) -> checkpoint.Record | None:
    """The record of a run's newest checkpoint, its weights unread (checkpoint.peek); None when it has none.

    last.pt holds the newest position and the best metrics so far; best.pt stands in when a run
    has only that."""
    from dlcli import checkpoint  # torch: only a look into a checkpoint needs it

    run = Path(run)
    return checkpoint.peek(run / "checkpoints" / "last.pt") or checkpoint.peek(run / "checkpoints" / "best.pt")


def best_metric(ckpt: checkpoint.Record | None) -> tuple[str, float] | None:
    """(name, value) of the metric that chose best.pt, from a checkpoint's record.

    A checkpoint keeps the best value and the val metrics it came with, not the metric's name:
    the name is the first of those metrics with that value (top1 before top5 when both are 1.0).
    A train.ema run's val metrics hold the average's too, as ema_<name> ("ema_top1"): those of the
    weights that scored best (Record.weights) are searched first.
    """
    if ckpt is None:
        return None
    value, metrics = ckpt.best_value, ckpt.best_metrics or {}
    if value is None:
        return None
    ema_first = ckpt.weights == "ema"
    for name in sorted(metrics, key=lambda name: name.startswith("ema_") != ema_first):  # stable: else as recorded
        if metrics[name] == value:
            return name, value
    return None


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl, in order."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        what = "is not a folder" if not Path(run).is_dir() else "has no metrics.jsonl"
        raise DlError(f"{run} {what}. Give run folders that `dl train` wrote (`dl runs` lists them).")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the half-written last line of a run that is training right now
    return records


def val_metrics(records: list[dict[str, Any]]) -> list[str]:
    """The metric names the val records hold, in first-seen order; per-class ones ("recall.NOUN") left out."""
    names: dict[str, None] = {}
    for record in records:
        if record.get("split") == "val":
            names.update((k, None) for k in record if k not in RECORD_FIELDS and "." not in k)
    return list(names)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _config_task(run: Path) -> str | None:
    try:
        raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return raw.get("task") if isinstance(raw, dict) else None


def _newest_mtime(run: Path) -> float:
    """When the run last wrote something: metrics.jsonl grows in place, so the folder's own mtime lags."""
    files = [run / "config.yaml", run / "metrics.jsonl", run / "summary.json", *(run / "checkpoints").glob("*.pt")]
    return max([f.stat().st_mtime for f in files if f.is_file()] or [run.stat().st_mtime])
