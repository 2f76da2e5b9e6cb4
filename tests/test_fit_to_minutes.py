"""train.fit_to_minutes: the run's epochs and the schedule's length fitted to train.max_minutes after the first
epoch (dlcli/loop.py Loop._fit_to_minutes, dlcli/optim.py continued).

The toy task (tests/toy_task.py: 8 steps an epoch) on a clock that reads one second per optimizer step
(Loop._elapsed patched), so the fit is the same on every machine: the first epoch takes 8 s, and
60 s (max_minutes 1) hold 7 such epochs, 56 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlcli import checkpoint
from dlcli.config import ScheduleConfig
from dlcli.loop import Loop
from dlcli.optim import build_scheduler, continued
from dlcli.runs import read_metrics

from conftest import assert_exit_2, assert_same_training_state, dl, sets, toy_recipe

RECIPE = """\
task: toyreg
name: toy
seed: 3
schedule: {name: cosine, warmup_steps: 2}
train: {epochs: 3, log_every: 1, device: cpu, max_minutes: 1}
"""
STEPS_PER_EPOCH = 8
FITTED = 7  # 60 s // 8 s


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(Loop, "_elapsed", lambda self: float(self.state.position.step))  # 1 s a step
    return toy_recipe(monkeypatch, tmp_path, RECIPE)


def train(recipe: Path, run: Path, *settings: str, more: tuple[str, ...] = ()) -> dict:
    result = dl("train", recipe, "--out", run, "-q", "--json", *sets(*settings), *more)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lrs(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in read_metrics(run) if r["split"] == "train"}


def test_the_first_epochs_pace_sets_the_epochs_and_the_schedules_length(toy, tmp_path) -> None:
    summary = train(toy, tmp_path / "fit", "train.fit_to_minutes=true")
    assert (summary["epochs"], summary["fitted_epochs"], summary["steps"]) == (FITTED, FITTED, FITTED * STEPS_PER_EPOCH)
    assert checkpoint.load(tmp_path / "fit" / "checkpoints" / "last.pt").fitted_epochs == FITTED

    train(toy, tmp_path / "as_written")  # train.epochs' 3 epochs, 24 steps
    fitted, recipes = lrs(tmp_path / "fit"), lrs(tmp_path / "as_written")
    assert [fitted[s] for s in range(1, STEPS_PER_EPOCH + 1)] == [recipes[s] for s in range(1, STEPS_PER_EPOCH + 1)]
    # from the second epoch on, the cosine over 56 steps: where the recipe's ends, the fitted one is still high
    assert recipes[24] < 0.01 * recipes[3] and fitted[24] > 0.5 * fitted[3]
    assert fitted[56] < 0.01 * fitted[3]


@pytest.mark.parametrize("stop_at", [5, 8, 12])  # before the fit, at it (best.pt written there too), after it
def test_resume_keeps_the_fitted_length_and_ends_bit_identical(toy, tmp_path, stop_at) -> None:
    train(toy, tmp_path / "straight", "train.fit_to_minutes=true")
    train(toy, tmp_path / "resumed", "train.fit_to_minutes=true", f"train.max_steps={stop_at}")
    train(toy, tmp_path / "resumed", "train.fit_to_minutes=true", more=("--resume",))
    for name in ("last.pt", "best.pt"):
        straight, resumed = (checkpoint.load(tmp_path / run / "checkpoints" / name) for run in ("straight", "resumed"))
        assert_same_training_state(straight, resumed)
        assert straight.fitted_epochs == resumed.fitted_epochs == FITTED


@pytest.mark.parametrize(
    "settings, needle",
    [(("train.max_minutes=null",), "set train.max_minutes"), (("schedule.total_steps=40",), "schedule.total_steps")],
)
def test_a_fit_without_a_budget_or_with_a_fixed_length_is_refused(toy, tmp_path, settings, needle) -> None:
    result = dl("train", toy, "--out", tmp_path / "run", "-q", *sets("train.fit_to_minutes=true", *settings))
    assert_exit_2(result, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["cosine", "linear", "plateau"])
def test_a_continued_schedule_goes_on_as_one_of_that_length_would(name) -> None:
    cfg = ScheduleConfig(name=name, warmup_steps=3)

    def sgd() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)

    first = sgd()
    short = build_scheduler(first, cfg, 0.5, 20, 5)
    for _ in range(7):
        first.step()
        short.step()
    refitted = continued(build_scheduler(first, cfg, 0.5, 60, 5), short)
    second = sgd()
    long = build_scheduler(second, cfg, 0.5, 60, 5)
    for _ in range(7):
        second.step()
        long.step()
    assert first.param_groups[0]["lr"] == pytest.approx(second.param_groups[0]["lr"])
    for _ in range(30):
        first.step()
        second.step()
        refitted.step()
        long.step()
        assert first.param_groups[0]["lr"] == pytest.approx(second.param_groups[0]["lr"])
