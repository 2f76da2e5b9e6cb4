"""train.ema: a moving average of the weights beside them (dlcli/ema.py), for every task that trains
through the optimizer: each step's average, resume, best.pt's choice, `dl eval --weights`, load_run.

Most tests drive the toy task (tests/toy_task.py: linear regression, 8 steps per epoch, 3 epochs, a
tenth of a second a run); one trains a ResNet for its BatchNorm buffers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dlcli
from dlcli import checkpoint
from dlcli.api import load_config
from dlcli.ema import WeightEMA
from dlcli.errors import DlError
from dlcli.runs import read_metrics

from conftest import assert_same_training_state, dl, sets, toy_recipe

RECIPE = """\
task: toyreg
name: toy
seed: 3
train:
  epochs: 3
  log_every: 1
  device: cpu
"""
TOTAL_STEPS = 24  # 128 rows in batches of 16, 3 epochs
# The toy's own optimizer is SGD without momentum, where the raw weights score better than their
# average at every validation; with momentum 0.9 they overshoot, and the average scores better.
EMA_WINS = "optim.momentum=0.9"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The toy task registered as `toyreg`; returns a recipe file for it."""
    return toy_recipe(monkeypatch, tmp_path, RECIPE)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict, dict]]:
    """(weights, average) after each optimizer step, as WeightEMA.update leaves them, in step order."""
    seen: list[tuple[dict, dict]] = []
    original = WeightEMA.update

    def update(self: WeightEMA, model: nn.Module, step: int) -> None:
        original(self, model, step)
        assert step == len(seen) + 1
        seen.append((_copy(model.state_dict()), _copy(self.module.state_dict())))

    monkeypatch.setattr(WeightEMA, "update", update)
    return seen


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().clone() for key, tensor in state.items()}


def train(recipe: Path | str, run: Path, *settings: str, more: tuple[str, ...] = ()) -> dict:
    result = dl("train", recipe, "--out", run, "-q", "--json", *sets(*settings), *more)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def evaluate(run: Path, *flags: str) -> dict:
    result = dl("eval", run, "--json", *flags)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def val_records(run: Path) -> list[dict]:
    """The val records of metrics.jsonl, without their wall times."""
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in read_metrics(run) if r["split"] == "val"]


def load(run: Path, name: str = "last.pt") -> checkpoint.Record:
    return checkpoint.load(run / "checkpoints" / name)


# --------------------------------------------------------------------------- the average


def test_decay_0_is_the_weights_themselves_and_changes_nothing(toy, tmp_path, steps) -> None:
    plain = train(toy, tmp_path / "plain")
    averaged = train(toy, tmp_path / "ema", "train.ema=0")
    assert len(steps) == TOTAL_STEPS
    for weights, average in steps:  # after every step
        assert all(torch.equal(average[key], weights[key]) for key in weights)
    # The same training and the same metrics; the average's are the weights', and a tie keeps the raw weights.
    records = val_records(tmp_path / "ema")
    assert all(r["ema_loss"] == r["loss"] for r in records)
    assert [{k: v for k, v in r.items() if not k.startswith("ema_")} for r in records] == val_records(
        tmp_path / "plain"
    )
    assert averaged["metrics"]["test"] == plain["metrics"]["test"]
    assert averaged["weights"] == "raw" and load(tmp_path / "ema", "best.pt").weights == "raw"
    last = load(tmp_path / "ema")
    assert all(torch.equal(last.ema[key], last.model[key]) for key in last.model)
    assert all(torch.equal(last.model[key], load(tmp_path / "plain").model[key]) for key in last.model)


@pytest.mark.parametrize("warmup", [0, 5])
def test_the_average_is_the_hand_computed_ema_of_the_weights(toy, tmp_path, steps, warmup) -> None:
    decay = 0.9
    train(toy, tmp_path / "run", f"train.ema={decay}", f"train.ema_warmup={warmup}")
    assert len(steps) == TOTAL_STEPS
    expected: dict[str, torch.Tensor] = {}
    for t, (weights, average) in enumerate(steps, start=1):
        if t <= max(1, warmup):  # the first step, and the warmup's: a copy
            expected = dict(weights)
        else:
            expected = {key: decay * expected[key] + (1 - decay) * weights[key] for key in weights}
        torch.testing.assert_close(average, expected, rtol=1e-6, atol=1e-7)
    final_weights, final_average = steps[-1]
    assert not torch.allclose(final_average["weight"], final_weights["weight"])  # decay 0.9: it lags the weights
    last = load(tmp_path / "run")
    assert all(torch.equal(last.ema[key], final_average[key]) for key in final_average)
    assert last.ema_updates == TOTAL_STEPS - max(1, warmup) + 1  # AveragedModel.n_averaged since the last copy


def test_batchnorm_running_statistics_are_averaged_too() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = WeightEMA(net, decay=0.5, warmup=0)
    means = []
    for step in (1, 2, 3):
        net(torch.randn(8, 3))  # train mode: the running statistics move
        ema.update(net, step)
        means.append(net[1].running_mean.clone())
    expected = means[0]
    for mean in means[1:]:
        expected = 0.5 * expected + 0.5 * mean
    torch.testing.assert_close(ema.module[1].running_mean, expected)
    assert not torch.allclose(ema.module[1].running_mean, net[1].running_mean)


def test_a_resnet_averages_its_batchnorm_buffers_and_evaluates_the_average(tmp_path) -> None:
    tiny = ("data.image_size=16", "data.batch_size=4", "data.train_size=12", "data.val_size=10", "data.test_size=10")
    summary = train("resnet", tmp_path / "run", *tiny, "train.max_steps=3", "train.ema=0.5")
    assert {"top1", "ema_top1", "ema_loss"} <= set(summary["metrics"]["val"])
    last = load(tmp_path / "run")
    assert last.ema.keys() == last.model.keys()
    assert not torch.equal(last.ema["bn1.running_mean"], last.model["bn1.running_mean"])


def test_under_ddp_every_rank_scores_rank_0s_average(tmp_path) -> None:
    """2 CPU processes, a ResNet without SyncBatchNorm: each rank's BatchNorm statistics are its own batches',
    so its average's buffers are too, until validation takes rank 0's. The validation under DDP then scores
    what rank 0 saved, as one process scoring best.pt's average does."""
    tiny = ("data.image_size=16", "data.batch_size=4", "data.train_size=16", "data.val_size=10", "data.test_size=10")
    args = ["train", "resnet", "--out", "ddp", "--nproc", "2", "--device", "cpu", "-q", "--json"]
    env = {**os.environ, "DL_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "dlcli",
        *args,
        *sets(*tiny, "data.augment=none", "train.epochs=1", "train.ema=0.5"),
    ]
    two = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    (validation,) = val_records(tmp_path / "ddp")
    for weights in ("raw", "ema"):
        one = evaluate(tmp_path / "ddp", "--split", "val", "--weights", weights, "--device", "cpu")["metrics"]
        prefix = "ema_" if weights == "ema" else ""
        assert one["loss"] == pytest.approx(validation[f"{prefix}loss"], rel=1e-5), weights


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("stop_at", [2, 5, 12])  # in the warmup, mid-epoch after it, mid-epoch after a validation
def test_resume_with_ema_ends_bit_identical_to_the_uninterrupted_run(toy, tmp_path, stop_at) -> None:
    settings = ("train.ema=0.9", "train.ema_warmup=3", EMA_WINS)
    train(toy, tmp_path / "straight", *settings)
    train(toy, tmp_path / "resumed", *settings, f"train.max_steps={stop_at}")
    assert load(tmp_path / "resumed").step == stop_at
    train(toy, tmp_path / "resumed", *settings, more=("--resume",))
    # best.pt too: the validation at the stop scores worse than the last epoch's, which writes it in both runs.
    for name in ("last.pt", "best.pt"):
        assert_same_training_state(load(tmp_path / "straight", name), load(tmp_path / "resumed", name))
    resumed = [r for r in val_records(tmp_path / "resumed") if r["step"] != stop_at]  # less the stop's validation
    assert resumed == val_records(tmp_path / "straight")


# --------------------------------------------------------------------------- best.pt, dl eval, load_run


@pytest.mark.parametrize("settings, chosen", [((), "raw"), ((EMA_WINS,), "ema")])
def test_best_pt_takes_the_better_weights_and_says_which(toy, tmp_path, settings, chosen) -> None:
    run = tmp_path / "runs" / "toy"
    summary = train(toy, run, "train.ema=0.9", *settings)
    best = load(run, "best.pt")
    assert best.weights == chosen == summary["weights"] == load(run).weights
    scores = [(r[name], weights) for r in val_records(run) for name, weights in (("loss", "raw"), ("ema_loss", "ema"))]
    assert (best.best_value, best.weights) == min(scores)
    assert best.best_metrics == summary["metrics"]["val"]
    assert summary["metrics"]["test"] == evaluate(run)["metrics"]  # the test split scored the chosen weights
    listed = dl("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.stdout)[0]
    assert (row["best_metric"], row["best_value"]) == ("ema_loss" if chosen == "ema" else "loss", best.best_value)


def test_dl_eval_scores_the_weights_asked_for(toy, tmp_path) -> None:
    run = tmp_path / "run"
    train(toy, run, "train.ema=0.9", EMA_WINS)
    best = load(run, "best.pt")
    assert best.weights == "ema"
    default, raw, ema = evaluate(run), evaluate(run, "--weights", "raw"), evaluate(run, "--weights", "ema")
    assert (default["weights"], raw["weights"], ema["weights"]) == ("ema", "raw", "ema")
    assert default["metrics"] == ema["metrics"] and raw["metrics"]["loss"] != ema["metrics"]["loss"]
    # On val, each set of weights scores what the validation that chose best.pt recorded for it.
    assert evaluate(run, "--split", "val", "--weights", "raw")["metrics"]["loss"] == pytest.approx(
        best.best_metrics["loss"], rel=1e-6
    )
    assert evaluate(run, "--split", "val")["metrics"]["loss"] == pytest.approx(best.best_metrics["ema_loss"], rel=1e-6)

    bad = dl("eval", run, "--weights", "average")
    assert bad.exit_code == 2 and "raw" in bad.output and "ema" in bad.output

    plain = tmp_path / "plain"
    train(toy, plain)
    assert evaluate(plain)["weights"] == "raw"
    missing = dl("eval", plain, "--weights", "ema")
    assert missing.exit_code == 2 and "train.ema" in missing.stderr and "Traceback" not in missing.output


def test_load_run_loads_the_chosen_weights_or_those_asked_for(toy, tmp_path) -> None:
    run = tmp_path / "run"
    train(toy, run, "train.ema=0.9", EMA_WINS)
    best = load(run, "best.pt")
    chosen, raw = dlcli.load_run(run, device="cpu"), dlcli.load_run(run, device="cpu", weights="raw")
    assert (chosen.weights, raw.weights) == ("ema", "raw")
    assert torch.equal(chosen.model.weight.detach(), best.ema["weight"])
    assert torch.equal(raw.model.weight.detach(), best.model["weight"])
    with pytest.raises(DlError, match="raw, ema"):
        dlcli.load_run(run, weights="mean")


# --------------------------------------------------------------------------- refusals and older checkpoints


def test_ema_on_word2vec_is_refused_with_exit_2(tmp_path) -> None:
    tiny = ("data.planted_sentences=3000", "model.vector_size=20", "train.epochs=1")
    result = dl("train", "word2vec", "--out", tmp_path / "w", "-q", *sets(*tiny, "train.ema=0.99"))
    assert result.exit_code == 2
    assert "train.ema cannot average a word2vec run's weights" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("setting", ["train.ema=1", "train.ema=-0.1", "train.ema_warmup=-1"])
def test_a_decay_outside_0_to_1_or_a_negative_warmup_is_refused(setting) -> None:
    with pytest.raises(DlError, match=setting.split("=")[0]):
        load_config("resnet", [setting])


def test_a_checkpoint_from_before_ema_reads_as_raw_weights(tmp_path) -> None:
    record = checkpoint.Record(task="lm", config={}, model={"w": torch.ones(2)}, position=checkpoint.Position())
    old = {k: v for k, v in record.to_file().items() if k not in ("ema", "ema_updates", "weights")}
    torch.save({**old, "version": 1}, tmp_path / "old.pt")
    back = checkpoint.load(tmp_path / "old.pt")
    assert (back.ema, back.ema_updates, back.weights) == (None, 0, "raw")
