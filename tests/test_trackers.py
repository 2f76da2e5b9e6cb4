"""train.loggers: csv, MLflow and wandb beside metrics.jsonl (dlcli/trackers.py), on the toy task of tests/toy_task.py.

Offline and private: MLflow's store is the run folder's sqlite file, wandb runs offline with its folders in tmp_path.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import get_args

import pytest

from dlcli import trackers
from dlcli.config import LoggerName

from conftest import dl, sets, toy_recipe

# 128 rows in batches of 16: 8 optimizer steps per epoch; a train record at every step.
RECIPE = """\
task: toyreg
name: toy
seed: 3
train:
  epochs: 3
  log_every: 1
  checkpoint_every: 2
  device: cpu
"""


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The toy task registered as `toyreg`, trackers kept offline and inside tmp_path; returns a recipe file."""
    recipe = toy_recipe(monkeypatch, tmp_path, RECIPE)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    return recipe


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_logger_names_are_the_trackers_and_jsonl() -> None:
    assert get_args(LoggerName) == ("jsonl", *trackers.TRACKERS)


def test_wandb_is_offline_without_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert trackers.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert trackers.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's choice wins
    assert trackers.wandb_mode() == "disabled"


def test_csv_mlflow_and_wandb_follow_a_resumed_run(toy: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    args = ["--out", run, *sets("train.loggers=[jsonl, csv, mlflow, wandb]", "train.max_steps=3"), "-q"]
    first = dl("train", toy, *args)
    assert first.exit_code == 0, first.output
    assert "warning" not in first.stderr, first.stderr
    ids = json.loads((run / "trackers.json").read_text())
    # Continue from step 2, as after a damaged last.pt: step 3, which every tracker has, is trained again.
    second = dl("train", toy, *args, *sets("train.max_steps=6"), "--resume-from", run / "checkpoints/last.prev.pt")
    assert second.exit_code == 0, second.output
    assert json.loads((run / "trackers.json").read_text()) == ids  # the same MLflow and wandb runs

    jsonl = records(run)
    assert [r["step"] for r in jsonl if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]

    # metrics.csv: a row per metrics.jsonl record, the union of their keys as columns.
    with open(run / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:3] == ["split", "step", "epoch"]
    assert set(reader.fieldnames) == {key for r in jsonl for key in r}
    assert len(rows) == len(jsonl)
    for row, record in zip(rows, jsonl, strict=True):
        assert row["split"] == record["split"]
        assert {k: float(v) for k, v in row.items() if v and k != "split"} == {
            k: v for k, v in record.items() if k != "split"
        }

    # MLflow: params, each step of each metric once, artifacts, and a finished run.
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    mlflow_run = client.get_run(ids["mlflow"]["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["optim.lr"] == "0.1"
    assert mlflow_run.data.params["model.features"] == "4"
    assert {"train/loss", "train/lr", "val/loss", "test/loss"} <= set(mlflow_run.data.metrics)
    for key in mlflow_run.data.metrics:
        steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    history = sorted(client.get_metric_history(mlflow_run.info.run_id, "train/loss"), key=lambda m: m.step)
    losses = {r["step"]: r["loss"] for r in jsonl if r["split"] == "train"}
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    assert [m.value for m in history] == pytest.approx([losses[s] for s in range(1, 7)])  # exact resume
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id)} >= {"config.yaml", "summary.json"}
    assert not (tmp_path / "mlruns").exists()  # artifacts stay in the run folder

    # wandb: offline files under the run folder, one folder per start, both of the same run id.
    run_id = ids["wandb"]["run_id"]
    assert ids["wandb"]["mode"] == "offline"
    started = sorted((run / "wandb").glob("offline-run-*"))
    # (wandb adds "-1" to the second folder's name when both starts fall in the same second)
    assert len(started) == 2 and all(re.search(rf"-{run_id}(-\d+)?$", p.name) for p in started), started
    assert all((p / f"run-{run_id}.wandb").is_file() for p in started)


@pytest.mark.parametrize("required", [False, True])
def test_a_missing_tracker_package_warns_or_stops_before_training(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    for module in ("mlflow", "mlflow.entities", "mlflow.tracking", "wandb"):
        monkeypatch.setitem(sys.modules, module, None)  # the import fails as if not installed
    run = tmp_path / "run"
    loggers = sets("train.loggers=[csv, mlflow, wandb]", "train.max_steps=2", f"train.loggers_required={required}")
    result = dl("train", toy, "--out", run, *loggers, "-q")
    assert "Traceback" not in result.output
    assert "pip install 'dlcli[mlflow]'" in result.stderr and "pip install 'dlcli[wandb]'" in result.stderr
    if required:
        assert result.exit_code == 2, result.output
        assert not run.exists() or not any(run.iterdir())  # stopped before any run file
    else:
        assert result.exit_code == 0, result.output
        assert result.stderr.count("warning:") == 2
        assert "training goes on without it" in result.stderr.lower()
        assert len(list(csv.DictReader(open(run / "metrics.csv")))) == len(records(run))


def test_an_unknown_logger_lists_the_choices(toy: Path, tmp_path: Path) -> None:
    result = dl("train", toy, "--out", tmp_path / "run", *sets("train.loggers=[jsonl, comet]"))
    assert result.exit_code == 2, result.output
    assert "train.loggers" in result.stderr
    assert all(name in result.stderr for name in ("'jsonl'", "'tensorboard'", "'csv'", "'mlflow'", "'wandb'"))


def test_a_tracker_failing_mid_run_is_dropped_with_one_warning(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trackers.CsvMetrics, "write", broken)
    run = tmp_path / "run"
    result = dl("train", toy, "--out", run, *sets("train.loggers=[csv]", "train.max_steps=4"), "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning:") == 1
    assert "csv failed" in result.stderr and "No space left on device" in result.stderr
    assert [r["step"] for r in records(run) if r["split"] == "train"] == [1, 2, 3, 4]  # metrics.jsonl whole


@pytest.mark.parametrize("required", [False, True])
def test_an_unreachable_mlflow_server_warns_or_stops(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow retries for minutes by default
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    run = tmp_path / "run"
    overrides = sets(
        "train.loggers=[mlflow]",
        "train.mlflow_uri=http://127.0.0.1:9",  # the discard port: connection refused
        "train.max_steps=2",
        f"train.loggers_required={required}",
    )
    result = dl("train", toy, "--out", run, *overrides, "-q")
    assert "Traceback" not in result.output
    assert "mlflow could not start" in result.stderr, result.stderr
    assert result.exit_code == (2 if required else 0), result.output
    assert (run / "summary.json").exists() == (not required)


def test_loggers_tensorboard_without_the_package_is_a_warning(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run = tmp_path / "run"
    result = dl("train", toy, "--out", run, *sets("train.loggers=[tensorboard]", "train.max_steps=2"), "-q")
    assert result.exit_code == 0, result.output
    assert "pip install 'dlcli[tensorboard]'" in result.stderr
    assert (run / "summary.json").exists() and not (run / "tensorboard").exists()
