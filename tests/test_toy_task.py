"""A task added through the contract only (dlcli/tasks/contract.py; docs/ARCHITECTURE.md, "Adding a task").

tests/toy_task.py (linear regression on y = X w + noise) and its torch-free schema tests/toy_task_config.py
is registered by monkeypatching dlcli.tasks.TASKS, with no change to the runner or the CLI.
Then the runner gives it what every task gets: `dl train`, exact --resume, `dl eval`, `dl runs` and
dlcli.load_run.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

import dlcli
from dlcli import checkpoint, tasks
from dlcli.tasks.contract import Task

from conftest import assert_same_training_state, dl, toy_recipe

# 128 rows in batches of 16: 8 optimizer steps per epoch, 3 epochs.
RECIPE = """\
task: toyreg
name: toy
seed: 3
model:
  features: 4
data:
  train_size: 128
  batch_size: 16
  noise: 0.1
train:
  epochs: 3
  log_every: 1
  device: cpu
"""
TOTAL_STEPS = 24


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The toy task registered as `toyreg`; returns a recipe file for it."""
    return toy_recipe(monkeypatch, tmp_path, RECIPE)


def last_checkpoint(run: Path) -> checkpoint.Record:
    return checkpoint.load(run / "checkpoints" / "last.pt")


def test_the_toy_task_provides_the_contract(toy) -> None:
    task = tasks.get_task("toyreg")
    assert task.NAME == "toyreg" and task.Config is tasks.get_config("toyreg") and task.RUN_KIND
    for name, member in vars(Task).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            wanted = list(inspect.signature(member).parameters)[1:]  # without self
            assert list(inspect.signature(getattr(task, name)).parameters)[: len(wanted)] == wanted, name


def test_a_task_added_through_the_contract_trains_resumes_evaluates_lists_and_loads(toy, tmp_path: Path) -> None:
    shown = dl("config", "show", toy)
    assert shown.exit_code == 0, shown.output
    assert "batch_size: 16" in shown.stdout

    # dl train: the loss falls far below where it started.
    straight = tmp_path / "runs" / "straight"
    result = dl("train", toy, "--out", straight, "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "toyreg" and summary["steps"] == TOTAL_STEPS
    train_losses = [
        r["loss"]
        for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())
        if r["split"] == "train"
    ]
    assert len(train_losses) == TOTAL_STEPS
    assert train_losses[-1] < train_losses[0] / 20
    assert {"config.yaml", "metrics.jsonl", "summary.json"} <= {p.name for p in straight.iterdir()}
    assert {"best.pt", "last.pt", "last.prev.pt"} <= {p.name for p in (straight / "checkpoints").iterdir()}

    # --resume from a mid-epoch stop ends bit-identical to the uninterrupted run.
    resumed = tmp_path / "runs" / "resumed"
    first = dl("train", toy, "--out", resumed, "-q", "--json", "--set", "train.max_steps=5")
    assert first.exit_code == 0, first.output
    assert last_checkpoint(resumed).position == checkpoint.Position(epoch=0, batch=5, step=5)
    second = dl("train", toy, "--out", resumed, "--resume", "-q", "--json")
    assert second.exit_code == 0, second.output
    assert_same_training_state(last_checkpoint(straight), last_checkpoint(resumed))

    # dl eval: the test split's mean squared error is about the noise's variance (0.01).
    evaluated = dl("eval", straight, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["split"] == "test" and report["metrics"]["loss"] < 0.03

    # dl runs: both runs, with their task and the metric that chose best.pt.
    listed = dl("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {Path(r["run"]).name: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"straight", "resumed"}
    assert all(r["task"] == "toyreg" and r["finished"] and r["best_metric"] == "loss" for r in rows.values())

    # dlcli.load_run: the model back (through the task's restore_model), close to the true w.
    from toy_task import make_rows, true_weights

    run = dlcli.load_run(straight, device="cpu")
    assert run.task == "toyreg" and not run.model.training
    w = true_weights(4, seed=3)
    assert torch.allclose(run.model.weight.detach().squeeze(0), w, atol=0.05)
    x, _ = make_rows(run.config, "test")
    with torch.no_grad():
        assert torch.allclose(run.model(x).squeeze(1), x @ w, atol=0.15)
