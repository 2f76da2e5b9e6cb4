"""train.patience (early stopping) and schedule.name=plateau (the lr cut when validation stalls), for every task.

Most tests drive the toy task (tests/toy_task.py: linear regression, 8 steps per epoch, a tenth of a second a
run) with a scripted validation: `scripted` replaces the val loss of each validation, in order, so that a
test says exactly when the best metric improves. The resume test trains for real, with a min_delta larger
than any later improvement, so that it stalls from the second epoch on whatever the floats.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlcli import checkpoint, loop
from dlcli.config import ScheduleConfig
from dlcli.optim import PlateauLR, build_scheduler, improves
from dlcli.runs import read_metrics

from conftest import assert_same_training_state, dl, sets, toy_recipe

RECIPE = """\
task: toyreg
name: toy
seed: 3
train:
  epochs: 10
  log_every: 1
  device: cpu
"""
STEPS_PER_EPOCH = 8  # 128 rows in batches of 16


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The toy task registered as `toyreg`; returns a recipe file for it (10 epochs, optim.lr 0.1, constant)."""
    return toy_recipe(monkeypatch, tmp_path, RECIPE)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """scripted([1.0, 0.9, ...], ema=[...]): the val loss of each validation in turn, of the weights (and of
    train.ema's average); the test split keeps its real loss. Running out of values fails the run."""

    def install(raw: list[float], ema: list[float] | None = None) -> None:
        raw, averaged, real = list(raw), list(ema or []), loop.evaluate

        def evaluate(model, loader, job, runtime):
            metrics = real(model, loader, job, runtime)
            if loader is job.eval_data["val"]:
                metrics["loss"] = (raw if model is job.model else averaged).pop(0)
            return metrics

        monkeypatch.setattr(loop, "evaluate", evaluate)

    return install


def train(recipe: Path, run: Path, *settings: str, more: tuple[str, ...] = ()):
    """`dl train` (not quiet: the log lines are on stderr); the result and the summary."""
    result = dl("train", recipe, "--out", run, "--json", *sets(*settings), *more)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def records(run: Path, split: str) -> list[dict]:
    return [r for r in read_metrics(run) if r["split"] == split]


def load(run: Path, name: str = "last.pt") -> checkpoint.Record:
    return checkpoint.load(run / "checkpoints" / name)


# --------------------------------------------------------------------------- train.patience


@pytest.mark.parametrize("eval_every, patience, stopped_epoch", [(1, 3, 5), (2, 2, 8)])
def test_a_stalled_run_stops_after_exactly_patience_evaluations(
    toy, tmp_path, scripted, eval_every, patience, stopped_epoch
) -> None:
    # Best at the second validation; the third scores worse, the fourth the same (no improvement), ...
    scripted([1.0, 0.9, 0.95, 0.9, 0.91])
    run = tmp_path / "run"
    result, summary = train(toy, run, f"train.patience={patience}", f"train.eval_every={eval_every}")
    best_epoch = 2 * eval_every
    assert (summary["stopped_early"], summary["stopped_epoch"], summary["best_epoch"]) == (
        True,
        stopped_epoch,
        best_epoch,
    )
    assert summary["steps"] == stopped_epoch * STEPS_PER_EPOCH and summary["epochs"] == stopped_epoch
    assert summary["metrics"]["val"]["loss"] == 0.9 and "loss" in summary["metrics"]["test"]  # best.pt's, tested
    assert [r["epoch"] for r in records(run, "val")] == list(range(eval_every, stopped_epoch + 1, eval_every))
    assert len(records(run, "test")) == 1
    last = load(run)
    assert last.position == checkpoint.Position(epoch=stopped_epoch, batch=0, step=summary["steps"])
    assert (last.evals_without_improvement, last.patience_best, last.patience_best_epoch) == (patience, 0.9, best_epoch)
    assert load(run, "best.pt").position.epoch == best_epoch
    assert json.loads((run / "summary.json").read_text()) == summary
    line = f"no val loss better than 0.9 (epoch {best_epoch}) in {patience} evaluations: stopping after epoch"
    assert f"{line} {stopped_epoch} of 10" in result.stderr


@pytest.mark.parametrize("min_delta, stopped_epoch", [(0.1, 6), (0.0, None)])
def test_an_improvement_must_beat_the_best_by_more_than_min_delta(
    toy, tmp_path, scripted, min_delta, stopped_epoch
) -> None:
    # Every validation improves; by more than 0.1 only at the third (0.85 < 1.0 - 0.1), none after.
    scripted([1.0, 0.95, 0.85, 0.8, 0.78, 0.76, 0.74, 0.72, 0.7, 0.68])
    _, summary = train(toy, tmp_path / "run", "train.patience=3", f"train.min_delta={min_delta}")
    assert summary["stopped_early"] == (stopped_epoch is not None)
    if stopped_epoch is None:  # each strictly better: the run trains all 10 epochs
        assert summary["epochs"] == 10 and summary["metrics"]["val"]["loss"] == 0.68
        return
    assert (summary["stopped_epoch"], summary["best_epoch"]) == (stopped_epoch, 3)
    # best.pt still takes any better value: min_delta is patience's, not best.pt's.
    assert summary["metrics"]["val"]["loss"] == 0.76 and load(tmp_path / "run").patience_best == 0.85


def test_with_ema_an_improvement_of_the_average_keeps_the_run_going(toy, tmp_path, scripted) -> None:
    # The weights stall from the first validation; their average keeps improving: the better of the two counts.
    scripted([1.0] * 5, ema=[1.0, 0.9, 0.8, 0.7, 0.6])
    _, summary = train(toy, tmp_path / "run", "train.epochs=5", "train.patience=2", "train.ema=0.9")
    assert summary["stopped_early"] is False and summary["epochs"] == 5
    assert summary["weights"] == "ema" and load(tmp_path / "run").evals_without_improvement == 0


def test_without_patience_the_summary_says_nothing_of_stopping(toy, tmp_path) -> None:
    _, summary = train(toy, tmp_path / "run", "train.epochs=1")
    assert "stopped_early" not in summary


# --------------------------------------------------------------------------- schedule.name=plateau


def test_plateau_cuts_the_lr_by_factor_at_the_patience_th_stalled_evaluation_down_to_min_lr(
    toy, tmp_path, scripted
) -> None:
    scripted([1.0] * 8)  # the best at epoch 1, never beaten
    settings = (
        "train.epochs=8",
        "schedule.name=plateau",
        "schedule.factor=0.25",
        "schedule.patience=2",
        "schedule.min_lr=0.004",
        "schedule.warmup_steps=4",
    )
    result, _ = train(toy, tmp_path / "run", *settings)
    lrs = {}  # epoch -> the lr each train record shows (after its step: the next step's lr)
    for r in records(tmp_path / "run", "train"):
        lrs.setdefault(r["epoch"], []).append(r["lr"])
    assert lrs[1][:4] == pytest.approx([0.04, 0.06, 0.08, 0.1])  # the warmup: step k + 1 has 0.1 x (k + 1) / 5
    # Validations 3, 5 and 7 are each the 2nd without an improvement since the last cut: x 0.25, then min_lr.
    expected = {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.025, 5: 0.025, 6: 0.00625, 7: 0.00625, 8: 0.004}
    for epoch, lr in expected.items():
        assert lrs[epoch][4:] == pytest.approx([lr] * 4), epoch
    assert result.stderr.count("schedule plateau: no better val loss in 2 evaluations") == 3
    scheduler = load(tmp_path / "run").scheduler
    assert (scheduler["scale"], scheduler["best"]) == (pytest.approx(0.04), 1.0)


def _sgd(lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _steps(optimizer: torch.optim.Optimizer, scheduler, n: int) -> list[float]:
    """The lr each of n optimizer steps sees."""
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_plateau_follows_the_warmup_then_cuts_in_max_mode_and_its_state_dict_resumes_exactly(tmp_path) -> None:
    cfg = ScheduleConfig(name="plateau", warmup_steps=4, factor=0.5, patience=1, min_lr=0.3, min_delta=0.01)
    optimizer = _sgd()
    scheduler = build_scheduler(optimizer, cfg, peak_lr=1.0, total_steps=100, steps_per_epoch=5, best_mode="max")
    assert isinstance(scheduler, PlateauLR)
    assert _steps(optimizer, scheduler, 6) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert not scheduler.observe(0.5)  # the first: the best
    assert not scheduler.observe(0.55) and scheduler.best == 0.55  # higher is better in max mode
    assert scheduler.observe(0.555)  # not by more than min_delta: a cut, applied at once
    assert optimizer.param_groups[0]["lr"] == 0.5 and scheduler.get_last_lr() == [0.5]
    assert _steps(optimizer, scheduler, 2) == [0.5, 0.5]

    path = tmp_path / "scheduler.pt"
    torch.save(scheduler.state_dict(), path)
    state = torch.load(path, weights_only=True)  # plain values, as checkpoint.load reads it
    assert "_rule" not in state
    fresh_optimizer = _sgd()
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh = build_scheduler(fresh_optimizer, cfg, peak_lr=1.0, total_steps=100, steps_per_epoch=5, best_mode="max")
    fresh.load_state_dict(state)
    for opt, sched in ((optimizer, scheduler), (fresh_optimizer, fresh)):
        assert sched.observe(0.1)  # a cut to 0.25, floored at min_lr 0.3
        assert not sched.observe(0.1)  # at min_lr: nothing left to cut
        assert _steps(opt, sched, 3) == pytest.approx([0.3] * 3)
    assert fresh.state_dict() == scheduler.state_dict()


def test_a_cut_during_warmup_scales_the_rest_of_the_warmup_in_every_parameter_group() -> None:
    optimizer = _sgd()
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5})  # as norm_weight_decay
    cfg = ScheduleConfig(name="plateau", warmup_steps=4, factor=0.5, patience=1)
    scheduler = build_scheduler(optimizer, cfg, peak_lr=1.0, total_steps=100, steps_per_epoch=5)
    assert _steps(optimizer, scheduler, 2) == pytest.approx([0.2, 0.4])
    scheduler.observe(1.0)
    assert scheduler.observe(1.0)  # min mode: the same is no improvement
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.3, 0.15])
    assert _steps(optimizer, scheduler, 4) == pytest.approx([0.3, 0.4, 0.5, 0.5])


@pytest.mark.parametrize(
    "value, best, mode, min_delta, expected",
    [
        (1.0, None, "min", 0.5, True),
        (0.9, 1.0, "min", 0.0, True),
        (1.0, 1.0, "min", 0.0, False),
        (0.9, 1.0, "min", 0.2, False),
        (1.1, 1.0, "max", 0.0, True),
        (0.9, 1.0, "max", 0.0, False),
        (1.1, 1.0, "max", 0.2, False),
    ],
)
def test_improves(value, best, mode, min_delta, expected) -> None:
    assert improves(value, best, mode, min_delta) is expected


# --------------------------------------------------------------------------- resume, refusals, older files

# Real training that stalls from the second validation on: the first val loss is below 0.5 already, so no
# later one can beat it by more than 0.5. Plateau halves the lr at validations 2, 3 and 4; patience stops
# after the 4th (3 without an improvement), at step 32.
BOTH = (
    "train.patience=3",
    "train.min_delta=0.5",
    "schedule.name=plateau",
    "schedule.factor=0.5",
    "schedule.patience=1",
    "schedule.min_delta=0.5",
)


@pytest.mark.parametrize("stop_at", [12, 16, 20])  # mid-epoch before a cut, at an epoch's end (a cut), after it
def test_resume_with_patience_and_plateau_ends_bit_identical(toy, tmp_path, stop_at) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _, summary = train(toy, straight, *BOTH)
    assert (summary["stopped_epoch"], summary["steps"]) == (4, 32)
    train(toy, resumed, *BOTH, f"train.max_steps={stop_at}")
    assert load(resumed).step == stop_at
    _, again = train(toy, resumed, *BOTH, more=("--resume",))
    a, b = load(straight), load(resumed)
    assert_same_training_state(a, b)
    assert (a.evals_without_improvement, a.patience_best, a.patience_best_epoch) == (
        b.evals_without_improvement,
        b.patience_best,
        b.patience_best_epoch,
    )
    assert a.scheduler == b.scheduler and a.scheduler["scale"] == 0.125
    assert a.optimizer["param_groups"] == b.optimizer["param_groups"]
    assert [(r["step"], r["lr"]) for r in records(resumed, "train")] == [
        (r["step"], r["lr"]) for r in records(straight, "train")
    ]
    assert {k: again[k] for k in ("stopped_early", "stopped_epoch", "best_epoch", "steps")} == {
        k: summary[k] for k in ("stopped_early", "stopped_epoch", "best_epoch", "steps")
    }
    # Resuming a run that stopped early trains nothing more: it has stopped.
    _, finished = train(toy, straight, *BOTH, more=("--resume",))
    assert finished["steps"] == 32 and finished["stopped_early"] is True


@pytest.mark.parametrize(
    "setting",
    [
        "train.patience=-1",
        "train.patience=0",
        "train.min_delta=-0.1",
        "schedule.factor=1",
        "schedule.factor=1.5",
        "schedule.factor=0",
        "schedule.factor=-0.5",
        "schedule.patience=0",
        "schedule.min_delta=-1",
    ],
)
def test_bad_values_are_exit_2_naming_the_key(toy, tmp_path, setting) -> None:
    result = dl("train", toy, "--out", tmp_path / "run", "-q", *sets(setting))
    assert result.exit_code == 2, result.output
    assert setting.split("=")[0] in result.stderr and "Traceback" not in result.output


def test_a_checkpoint_from_before_patience_reads_with_nothing_counted(tmp_path) -> None:
    record = checkpoint.Record(task="lm", config={}, model={"w": torch.ones(2)}, position=checkpoint.Position())
    new = ("evals_without_improvement", "patience_best", "patience_best_epoch")
    old = {k: v for k, v in record.to_file().items() if k not in new}
    torch.save({**old, "version": 1}, tmp_path / "old.pt")
    back = checkpoint.load(tmp_path / "old.pt")
    assert (back.evals_without_improvement, back.patience_best, back.patience_best_epoch) == (0, None, 0)
