"""Experiment trackers beside metrics.jsonl: `train.loggers: [jsonl, tensorboard, csv, mlflow, wandb]`.

    dl train configs/resnet.yaml --set "train.loggers=[csv, mlflow, wandb]"
    mlflow ui --backend-store-uri sqlite:///runs/resnet18-shapes/mlflow.db    # wandb sync runs/resnet18-shapes/wandb/offline-run-*

metrics.jsonl (console.MetricsFile) is the source of truth and is always written: a checkpoint records
its size, and a resume cuts it back to that. Each tracker here mirrors its records elsewhere and
satisfies the one protocol `Tracker`: made (its package imported), `open(run)` with the run's folder,
config and resume step, `write(record)` for each metrics.jsonl record, `close(outcome)`.

A tracker is made on every rank, so that a missing package fails all ranks alike, and opened and
written on rank 0 only. The failure policy lives in `Trackers`, not in the trackers: one that cannot
start is a warning (training goes on without it), or with `train.loggers_required` an error before
training (exit 2); one that fails mid-run is warned about once and dropped. Training never dies of a tracker.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rich.markup import escape

from dlcli.errors import DlError, missing_package
from dlcli.files import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from dlcli.config import RunConfig
    from dlcli.console import Logger
    from dlcli.runtime import Runtime

Outcome = Literal["finished", "failed", "interrupted"]  # how the run ended: close() gets it
BOOKKEEPING = ("step", "epoch", "split", "elapsed_s")  # fields of a record that are not scalars to plot
IDS_FILE = "trackers.json"  # the run folder's MLflow and wandb run ids, so that a resume continues those runs


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is opened with."""

    folder: Path  # the run folder (RUN)
    name: str  # the recipe's name (runs/<name>): the MLflow experiment, the wandb project
    config: dict[str, Any]  # the resolved recipe (config.to_dict)
    resumed_at: int | None  # a resumed run's checkpoint step (steps after it are trained again); None: a new run


class Tracker(Protocol):
    """Where metrics.jsonl's records are mirrored. __init__ imports the tracker's package (on every rank:
    a missing one raises DlError); the rest runs on rank 0 only."""

    def open(self, run: RunInfo) -> None:
        """Start, or for a resumed run continue, the tracker's run; raises if it cannot (server unreachable)."""

    def write(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: {"step", "epoch", "split", metric: value, ..., "elapsed_s"}."""

    def close(self, outcome: Outcome) -> None:
        """Flush and end the run (after summary.json is written, when the run finished)."""


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A record's numbers tagged "<split>/<name>" ("train/loss", "val/top1"): what TensorBoard, MLflow and
    wandb plot. The bookkeeping fields are left out: each tracker keeps the step (and wall time) itself."""
    split = record["split"]
    return {
        f"{split}/{name}": value
        for name, value in record.items()
        if name not in BOOKKEEPING and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


# --------------------------------------------------------------------------- the trackers


class TensorBoardScalars:
    """The scalars of each record as TensorBoard events in RUN/tensorboard/ (`tensorboard --logdir runs`), at
    step = the optimizer step. A resumed run purges the events a killed run logged past its checkpoint, as
    its steps are trained again (metrics.jsonl is cut back the same way)."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_package("tensorboard", "tensorboard", "train.loggers tensorboard") from None
        self._make_writer = SummaryWriter
        self._writer: Any = None  # made at the first record: no folder for a run that fails to start

    def open(self, run: RunInfo) -> None:
        self.folder = run.folder / "tensorboard"
        self.purge_step = None if run.resumed_at is None else run.resumed_at + 1

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._make_writer(log_dir=str(self.folder), purge_step=self.purge_step)
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=record["step"])

    def close(self, outcome: Outcome) -> None:
        if self._writer is not None:
            self._writer.close()  # flushes the event file
            self._writer = None


class CsvMetrics:
    """RUN/metrics.csv: metrics.jsonl as a table, a row per record, the union of the records' keys as columns
    (split, step, epoch first; a key a record lacks is an empty cell). Rows are appended; a record with a
    new key (the first val record's top1) rewrites the file with the wider header. It opens by rewriting
    the file from metrics.jsonl, which a resume has already cut back: no step appears twice."""

    LEADING = ("split", "step", "epoch")

    def open(self, run: RunInfo) -> None:
        self.path = run.folder / "metrics.csv"
        self._records = _read_jsonl(run.folder / "metrics.jsonl")
        self._columns: list[str] = []
        if self._records or self.path.exists():
            self._rewrite()

    def write(self, record: dict[str, Any]) -> None:
        self._records.append(record)
        if any(key not in self._columns for key in record):
            self._rewrite()
            return
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, self._columns).writerow(record)

    def close(self, outcome: Outcome) -> None:
        pass  # every row is written as it comes

    def _rewrite(self) -> None:
        keys = dict.fromkeys(self.LEADING)
        for record in self._records:
            keys.update(dict.fromkeys(record))
        self._columns = list(keys)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self._columns)
        writer.writeheader()
        writer.writerows(self._records)
        write_text_atomic(self.path, text.getvalue())


class MlflowTracker:
    """An MLflow run (through MlflowClient, no global active run): params = the resolved recipe with dotted
    keys (optim.lr), metrics = the scalars at their step, artifacts = config.yaml and summary.json at the end.

    Tracking URI: train.mlflow_uri, else MLFLOW_TRACKING_URI, else sqlite:///RUN/mlflow.db with artifacts in
    RUN/mlartifacts (MLflow 3 refuses a new ./mlruns file store). Experiment: MLFLOW_EXPERIMENT_NAME, else the
    recipe's name. A resumed run continues the MLflow run whose id RUN/trackers.json holds; since MLflow keeps
    every value logged, each metric is logged only at steps past the last one the run already has, so a step
    trained again after a resume appears once. Params cannot change in MLflow: a resume adds new keys only.
    """

    def __init__(self, uri: str | None) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing_package("mlflow", "mlflow", "train.loggers mlflow") from None
        self._client_class, self._metric, self._param = MlflowClient, Metric, Param
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None

    def open(self, run: RunInfo) -> None:
        self.folder = run.folder
        local = self.uri is None
        run.folder.mkdir(parents=True, exist_ok=True)
        uri = self.uri or f"sqlite:///{(run.folder / 'mlflow.db').resolve()}"
        # MLflow announces at INFO each new sqlite store it sets up, on every run's first start.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        self.client = self._client_class(tracking_uri=uri)
        saved = _saved_ids(run.folder).get("mlflow", {}).get("run_id") if run.resumed_at is not None else None
        self.run_id = self._reopen(saved) if saved else None
        self._last_step: dict[str, int] = {}  # metric key -> the last step the MLflow run has for it
        if self.run_id is None:
            self.run_id = self._create(run, local)
        else:
            self._last_step = {
                key: self._last_logged_step(key) for key in self.client.get_run(self.run_id).data.metrics
            }
        _save_ids(run.folder, "mlflow", {"run_id": self.run_id, "tracking_uri": uri})
        had = self.client.get_run(self.run_id).data.params
        params = [self._param(k, v) for k, v in _params(run.config).items() if k not in had]
        for i in range(0, len(params), 100):  # MLflow's limit of params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _create(self, run: RunInfo, local: bool) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run.name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # a local store keeps its artifacts in the run folder too, not in the working directory's ./mlruns
            artifacts = (run.folder / "mlartifacts").resolve().as_uri() if local else None
            experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
        return self.client.create_run(experiment_id, run_name=run.folder.resolve().name).info.run_id

    def _reopen(self, run_id: str) -> str | None:
        """The saved run, RUNNING again; None when this store does not have it (another tracking URI)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _last_logged_step(self, key: str) -> int:
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

    def write(self, record: dict[str, Any]) -> None:
        step, now = record["step"], int(time.time() * 1000)
        metrics = []
        for tag, value in scalars(record).items():
            key = _mlflow_key(tag)
            if step > self._last_step.get(key, -1):
                metrics.append(self._metric(key, float(value), now, step))
                self._last_step[key] = step
        for i in range(0, len(metrics), 1000):  # MLflow's limit of metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self, outcome: Outcome) -> None:
        for name in ("config.yaml", "summary.json"):
            if (self.folder / name).is_file():
                self.client.log_artifact(self.run_id, str(self.folder / name))
        status = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}[outcome]
        self.client.set_terminated(self.run_id, status)


class WandbTracker:
    """A Weights & Biases run: config = the resolved recipe, metrics = the scalars at their step. Offline
    (wandb's files only, `wandb sync` uploads them) unless WANDB_API_KEY is set (WANDB_MODE, when set, decides).
    Its files go under RUN/wandb/. Project: WANDB_PROJECT, else the recipe's name. A resumed run continues the
    wandb run whose id RUN/trackers.json holds (resume="allow")."""

    def __init__(self) -> None:
        try:
            import wandb
        except ImportError:
            raise missing_package("wandb", "wandb", "train.loggers wandb") from None
        self._wandb = wandb

    def open(self, run: RunInfo) -> None:
        wandb = self._wandb
        run.folder.mkdir(parents=True, exist_ok=True)
        saved = _saved_ids(run.folder).get("wandb", {}).get("run_id") if run.resumed_at is not None else None
        mode = wandb_mode()
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or run.name,
            name=run.folder.resolve().name,
            id=saved,  # None: wandb makes one
            resume="allow",
            dir=str(run.folder),
            mode=mode,
            # console="off": wandb does not wrap stdout/stderr (`dl train --json` prints one JSON document)
            settings=wandb.Settings(console="off", silent=True),
        )
        self._run.config.update(run.config, allow_val_change=True)  # a resume may change max_steps
        _save_ids(run.folder, "wandb", {"run_id": self._run.id, "mode": mode})

    def write(self, record: dict[str, Any]) -> None:
        step = record["step"]
        if step < self._run.step:  # an online resume continues past steps wandb has: it would drop them, warning
            return
        self._run.log(scalars(record), step=step)

    def close(self, outcome: Outcome) -> None:
        self._run.finish(exit_code={"finished": 0, "failed": 1, "interrupted": 130}[outcome])


def wandb_mode() -> str:
    """WANDB_MODE when set; else online with an API key (WANDB_API_KEY), offline without one."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def make_tracker(name: str, cfg: RunConfig) -> Tracker:
    """The tracker a train.loggers name asks for, its package imported (DlError when it is missing)."""
    if name == "tensorboard":
        return TensorBoardScalars()
    if name == "csv":
        return CsvMetrics()
    if name == "mlflow":
        return MlflowTracker(cfg.train.mlflow_uri)
    if name == "wandb":
        return WandbTracker()
    raise DlError(f"Unknown logger {name!r} in train.loggers. Choose from: jsonl, {', '.join(TRACKERS)}.")


TRACKERS = ("tensorboard", "csv", "mlflow", "wandb")  # make_tracker's names; "jsonl" is metrics.jsonl itself


def tracker_names(cfg: RunConfig) -> list[str]:
    """train.loggers without jsonl (always written), each once, plus tensorboard when train.tensorboard."""
    names = [name for name in cfg.train.loggers if name != "jsonl"]
    if cfg.train.tensorboard:
        names.append("tensorboard")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- the failure policy


class Trackers:
    """A run's started trackers (none on ranks other than 0): each record goes to each; one that raises is
    warned about once and dropped, so that training never dies of a tracker."""

    def __init__(self, started: dict[str, Tracker], logger: Logger):
        self._started = started
        self._logger = logger

    @property
    def names(self) -> list[str]:
        return list(self._started)

    def write(self, record: dict[str, Any]) -> None:
        for name, tracker in list(self._started.items()):
            self._call(name, "write", lambda: tracker.write(record))

    def close(self, outcome: Outcome) -> None:
        for name, tracker in list(self._started.items()):
            self._call(name, "close", lambda: tracker.close(outcome))
        self._started.clear()

    def _call(self, name: str, what: str, call: Any) -> None:
        try:
            call()
        except Exception as e:  # any error of a tracker's package: the run goes on without it
            tracker = self._started.pop(name)
            self._logger.warn(escape(f"train.loggers: {name} failed ({_one_line(e)}); training goes on without it"))
            if what != "close":
                _close_quietly(tracker)


def open_trackers(cfg: RunConfig, run: RunInfo, runtime: Runtime, logger: Logger) -> Trackers:
    """Make every tracker train.loggers names (on every rank), then open them (on rank 0). One that cannot
    start is a warning; with train.loggers_required (and for train.tensorboard's tensorboard) it is a DlError,
    raised on every rank before training, and before any tracker opens when a package is missing."""

    names = tracker_names(cfg)
    if not names:
        return Trackers({}, logger)

    def required(name: str) -> bool:
        return cfg.train.loggers_required or (name == "tensorboard" and cfg.train.tensorboard)

    made: dict[str, Tracker] = {}
    problems: dict[str, str] = {}
    for name in names:
        try:
            made[name] = make_tracker(name, cfg)
        except Exception as e:  # DlError: not installed; anything else: an install that fails to import
            problems[name] = (
                str(e) if isinstance(e, DlError) else f"train.loggers {name} could not start: {_one_line(e)}."
            )
    started: dict[str, Tracker] = {}
    for name, tracker in made.items():
        if not runtime.is_main or any(required(n) for n in problems):
            break
        try:
            tracker.open(run)
            started[name] = tracker
        except Exception as e:  # a server that cannot be reached, a store that cannot be written
            problems[name] = f"train.loggers {name} could not start: {_one_line(e)}."
            _close_quietly(tracker)  # what it opened before failing (an MLflow run left RUNNING)
    trackers = Trackers(started, logger)
    stopping = [problems[n] for n in problems if required(n)]
    # Under DDP only rank 0 opens: every rank learns whether a required one failed, so that all stop alike.
    if runtime.any_across_ranks(bool(stopping)):
        trackers.close("failed")
        raise DlError(" ".join(stopping) or "train.loggers: a logger could not start on rank 0.")
    for problem in problems.values():
        # escaped: Logger.warn reads rich markup, which would take "dlcli[mlflow]" for a style
        logger.warn(escape(f"{problem} Training goes on without it (train.loggers_required=true makes this an error)."))
    return trackers


# --------------------------------------------------------------------------- helpers


def _params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The recipe flattened to dotted keys, values as YAML-like text: {"optim.lr": "0.1", "optim.betas": "[0.9, 0.999]"}."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _params(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = (value if isinstance(value, str) else json.dumps(value))[:6000]  # MLflow's limit
    return flat


def _mlflow_key(tag: str) -> str:
    """A metric name MLflow accepts (letters, digits, _ - . / and spaces): another character, such as a
    class name's "$", becomes _ and its code ("precision.$" -> "precision._24"), so that names stay distinct."""
    return re.sub(r"[^\w\-./ ]", lambda m: f"_{ord(m.group()):02x}", tag)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the half line of a killed process
    return records


def _saved_ids(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_ids(folder: Path, name: str, ids: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / IDS_FILE, _saved_ids(folder) | {name: ids}, indent=2)


def _close_quietly(tracker: Tracker) -> None:
    try:
        tracker.close("failed")
    except Exception:
        pass  # it is broken already: the warning about it is the one the user gets


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
