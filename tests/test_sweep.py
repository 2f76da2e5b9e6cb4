"""dl sweep: bad spaces refused before anything runs; trials as run folders; show, --json, --plot; grid x
seeds; failed and pruned trials; a sweep SIGKILLed mid-trial resumes to the weights of an uninterrupted
trial; two processes on one study run each trial once."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dlcli import checkpoint, sweep, sweep_report, sweep_space, threads
from dlcli.errors import DlError

from conftest import assert_exit_2, assert_same_training_state

# pos_lstm at a few seconds a trial (most of it the child's start-up): val accuracy 0.56 / 0.71 / 0.75 over
# its 3 epochs at lr 3e-2, 0.03 at 1e-7
SMALL = [
    "--set", "data.train_sentences=300", "--set", "data.val_sentences=60", "--set", "data.test_sentences=60",
    "--set", "model.hidden_size=32", "--set", "model.embedding_dim=16", "--set", "model.char_hidden=16",
    "--set", "train.epochs=3",
]  # fmt: skip
METRIC = ["--metric", "val.accuracy"]


def _dl(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`dl ...` as its own process (a sweep to be killed, or two sweeps at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _show(cli, folder: Path) -> dict:
    result = cli("sweep", "show", str(folder), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--param", "optim.lr=logunifrm:1e-4:1e-1"], "not a kind of range"),
        (["--param", "optim.lr=loguniform:0:1"], "LOW > 0"),
        (["--param", "optim.lr=uniform:0.5:0.1"], "LOW must be below HIGH"),
        (["--param", "data.batch_size=int:1.5:4"], "whole numbers"),
        (["--param", "optim.lr"], "KEY=SPEC"),
        (["--param", "optim.nope=uniform:0.1:0.2"], "optim.nope"),
        (["--param", "train.epochs=int:-3:2"], "train.epochs=-3"),
        (["--grid", "data.batch_size=16,16"], "listed twice"),
        (["--grid", "optim.lr=1e-3,", "--trials", "2"], "none empty"),
        (["--grid", "optim.lr=1e-3,2e-3", "--trials", "5"], "2 cells"),
        (["--sampler", "grid", "--param", "optim.lr=uniform:0.1:0.2"], "is a range"),
        (["--param", "optim.lr=uniform:0.1:0.2", "--metric", "accuracy"], "--metric accuracy"),
        (["--param", "optim.lr=uniform:0.1:0.2", "--metric", "val.top1"], "never reports top1"),
        (["--param", "optim.lr=uniform:0.1:0.2", "--trials", "0"], "--trials 0"),
        (["--param", "optim.lr=uniform:0.1:0.2", "--param", "optim.lr=uniform:0.2:0.3"], "more than once"),
        ([], "Nothing to sweep"),
        (["--param", "optim.lr=uniform:0.1:0.2", *METRIC, "--storage", "postgresql://dl@127.0.0.1:1/x"], "Cannot open"),
    ],
)
def test_bad_spaces_keys_and_storages_exit_2_before_anything_is_written(cli, tmp_path, flags, needle):
    result = cli("sweep", "pos_lstm", *flags, "--out", "sw")
    assert_exit_2(result, needle)
    assert not (tmp_path / "sw").exists()


class _DriverError(Exception):
    """What psycopg raises, as far as dl reads it: an SQLSTATE."""

    def __init__(self, sqlstate: str):
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("driver_error", "retried"),
    [
        (_DriverError("42P07"), True),
        (_DriverError("42710"), True),
        (sqlite3.OperationalError("table studies already exists"), True),
        (_DriverError("42601"), False),
        (sqlite3.OperationalError("database is locked"), False),
    ],
    ids=["pg-duplicate-table", "pg-duplicate-object", "sqlite-exists", "pg-syntax", "sqlite-locked"],
)
def test_opening_a_study_retries_only_a_lost_race_to_create_its_tables(tmp_path, monkeypatch, driver_error, retried):
    # Processes starting one study at once both create its tables; the one that loses gets PostgreSQL's
    # DuplicateTable (42P07) or DuplicateObject (42710), or SQLite's "already exists", and must look again.
    # A syntax error (42601) or a lock held past the timeout is not a race.
    import sqlalchemy

    real_storage, calls = sweep._storage, []

    def storage_that_loses_once(url):
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, driver_error)
        return real_storage(url)

    monkeypatch.setattr(sweep, "_storage", storage_that_loses_once)
    spec = sweep.Spec(params=["optim.lr=uniform:0.1:0.2"], study="race")
    if retried:
        study = sweep._open_study(tmp_path, spec, create=True)
        assert study.study_name == "race" and len(calls) == 2
    else:
        with pytest.raises(DlError, match="Cannot open the sweep's study storage"):
            sweep._open_study(tmp_path, spec, create=True)
        assert len(calls) == 1


@pytest.mark.slow  # the same paths run in the test below; this one adds seeds and --jobs 2 (4 child processes)
def test_a_grid_with_seeds_gives_run_folders_a_table_cells_and_a_plot(cli, tmp_path):
    result = cli(
        "sweep", "pos_lstm", "--grid", "optim.lr=1e-2,3e-2", "--seeds", "2", *METRIC, *SMALL,
        "--jobs", "2", "--out", "sw",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best: trial" in result.stdout and "over 2 seeds" in result.stdout
    report = _show(cli, tmp_path / "sw")
    assert report["counts"]["complete"] == 4 and report["planned"] == 4
    values = [row["value"] for row in report["trials"]]
    assert values == sorted(values, reverse=True)  # maximize: best first
    seen = set()
    for row in report["trials"]:  # each trial is a run folder whose config holds the trial's values
        config = yaml.safe_load((tmp_path / "sw" / row["run"] / "config.yaml").read_text())
        assert config["optim"]["lr"] == pytest.approx(row["params"]["optim.lr"])
        assert config["seed"] == row["params"]["seed"] and config["data"]["train_sentences"] == 300
        seen.add((row["params"]["optim.lr"], row["params"]["seed"]))
        summary = json.loads((tmp_path / "sw" / row["run"] / "summary.json").read_text())
        assert summary["metrics"]["val"]["accuracy"] == pytest.approx(row["value"])
    assert seen == {(lr, seed) for lr in (1e-2, 3e-2) for seed in (0, 1)}
    assert [cell["seeds"] for cell in report["cells"]] == [2, 2]
    plot = cli("sweep", "show", "sw", "--plot", "sweep.png")
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = cli("runs", "sw")  # the trials are ordinary runs
    assert runs.exit_code == 0 and "trial-0003" in runs.stdout


def test_a_grid_crossed_with_seeds_gives_one_cell_per_value_with_mean_and_spread():
    space = sweep_space.parse([], ["optim.lr=1e-2,3e-2"], seeds=2, base_seed=7)
    assert space.cells() == [{"optim.lr": lr, "seed": seed} for lr in (1e-2, 3e-2) for seed in (7, 8)]
    rows = [{"params": cell, "value": value} for cell, value in zip(space.cells(), (0.5, 0.7, 0.9, 0.9))]
    cells = sweep_report._cells(rows, sign=-1)  # maximize: best cell first
    assert [(c["params"], c["seeds"]) for c in cells] == [({"optim.lr": 3e-2}, 2), ({"optim.lr": 1e-2}, 2)]
    assert cells[0]["mean"] == pytest.approx(0.9) and cells[1]["std"] == pytest.approx(0.1414, abs=1e-4)


def test_trials_are_run_folders_failed_ones_recorded_lagging_ones_pruned(cli, tmp_path):
    # Trials 0 and 1 learn; trial 2 (lr 1e-7) lags them at its first validation: the median pruner stops it.
    # Trial 3's lr of 1e30 makes the loss non-finite: dl train exits 1 and the sweep goes on.
    result = cli(
        "sweep", "pos_lstm", "--grid", "optim.lr=3e-2,1e-2,1e-7,1e30", *METRIC, *SMALL,
        "--set", "train.epochs=8", "--prune", "median", "--out", "sw",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trial 2 pruned" in result.stderr and "trial 3 failed" in result.stderr
    assert "best: trial" in result.stdout
    report = _show(cli, tmp_path / "sw")
    rows = {row["number"]: row for row in report["trials"]}
    assert [rows[n]["state"] for n in range(4)] == ["complete", "complete", "pruned", "failed"]
    assert "exit 1" in rows[3]["error"]
    assert not (tmp_path / "sw" / "trial-0002" / "summary.json").exists()
    assert [row["number"] for row in report["trials"]][:2] == sorted((0, 1), key=lambda n: -rows[n]["value"])
    for n in (0, 1):  # a finished trial is a run folder whose config holds the trial's values
        config = yaml.safe_load((tmp_path / "sw" / rows[n]["run"] / "config.yaml").read_text())
        assert config["optim"]["lr"] == pytest.approx(rows[n]["params"]["optim.lr"])
        assert config["data"]["train_sentences"] == 300
        summary = json.loads((tmp_path / "sw" / rows[n]["run"] / "summary.json").read_text())
        assert summary["metrics"]["val"]["accuracy"] == pytest.approx(rows[n]["value"])
    plot = cli("sweep", "show", "sw", "--plot", "sweep.png")
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = cli("runs", "sw")  # the trials are ordinary runs
    assert runs.exit_code == 0 and "trial-0001" in runs.stdout


def _kill_mid_trial(sweep: subprocess.Popen, folder: Path) -> set[str]:
    """SIGKILL the sweep once a trial has a checkpoint and no summary; the trials cut that way."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sweep.poll() is None:
        cut = {p.parent.parent.name for p in folder.glob("trial-*/checkpoints/last.pt")}
        cut -= {p.parent.name for p in folder.glob("trial-*/summary.json")}
        if cut:
            sweep.send_signal(signal.SIGKILL)
            sweep.wait()
            return cut
        time.sleep(0.05)
    raise AssertionError(f"no trial was cut: {sweep.communicate()}")


@pytest.mark.parametrize(
    ("trials", "kills"), [(2, 1), pytest.param(4, 2, marks=pytest.mark.slow)], ids=["killed-once", "killed-twice"]
)
def test_a_sweep_killed_mid_trial_resumes_to_the_uninterrupted_weights(cli, tmp_path, monkeypatch, trials, kills):
    folder = tmp_path / "sw"
    flags = ["--param", "optim.lr=loguniform:1e-3:3e-2", "--trials", str(trials), "--jobs", "2", *METRIC, *SMALL]
    flags += ["--set", "train.epochs=6", "--set", "data.train_sentences=600", "--out", str(folder)]
    cut = _kill_mid_trial(_dl("sweep", "pos_lstm", *flags), folder)
    for _ in range(kills - 1):
        time.sleep(0.5)  # the children die with the sweep (PR_SET_PDEATHSIG): their run locks are free again
        cut |= _kill_mid_trial(_dl("sweep", str(folder), "--resume"), folder)
    resumed = _dl("sweep", str(folder), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed" in err
    report = _show(cli, folder)
    assert report["counts"]["complete"] == trials and len(report["trials"]) == trials
    # the threads the trials ran with (--jobs 2: half the cores): a CPU's sums follow the thread count
    monkeypatch.setenv("DL_THREADS", str(max(1, threads.count() // 2)))
    for name in sorted(cut):  # each cut trial ends as the same trial run without a stop
        reference = tmp_path / f"ref-{name}"
        train = cli("train", str(folder / name / "config.yaml"), "--out", str(reference), "-q")
        assert train.exit_code == 0, train.output
        got = checkpoint.load(folder / name / "checkpoints" / "last.pt", torch.device("cpu"))
        want = checkpoint.load(reference / "checkpoints" / "last.pt", torch.device("cpu"))
        assert_same_training_state(got, want)


@pytest.mark.parametrize("cut_after", ["claim", "owner"])
def test_a_trial_cut_before_its_values_were_drawn_resumes_with_values_from_the_space(cli, tmp_path, cut_after):
    # A sweep killed after asking a new trial and claiming it (claims/trial-0000.lock), before or after
    # writing itself as the owner, but before drawing its values, leaves it RUNNING without them: the
    # resume finds it and draws them, rather than leaving it RUNNING forever or training the recipe's lr.
    overrides = [item for item in SMALL if item != "--set"]
    spec = sweep.Spec(params=["optim.lr=loguniform:1e-3:3e-2"], overrides=overrides, trials=1)
    spec.metric, spec.direction = "val.accuracy", "maximize"
    folder = sweep.create("pos_lstm", spec, tmp_path / "sw")
    study = sweep._open_study(folder, sweep.read_spec(folder))
    cut = study.ask()  # what _next did before the kill: ask, claim, write the owner
    (folder / "claims").mkdir(exist_ok=True)
    (folder / "claims" / "trial-0000.lock").touch()
    if cut_after == "owner":
        cut.set_user_attr("owner", f"{socket.gethostname()}:{folder.resolve()}")
        cut.set_user_attr("folder", "trial-0000")

    result = cli("sweep", str(folder), "--resume")
    assert result.exit_code == 0, result.output
    (trial,) = _show(cli, folder)["trials"]
    assert trial["state"] == "complete" and trial["run"] == "trial-0000", trial
    assert 1e-3 <= trial["params"]["optim.lr"] <= 3e-2, trial
    trained = yaml.safe_load((folder / "trial-0000" / "config.yaml").read_text())
    assert trained["optim"]["lr"] == trial["params"]["optim.lr"]


def test_two_sweep_processes_on_one_study_run_each_trial_once(cli, tmp_path):
    folder = tmp_path / "sw"
    first = _dl(
        "sweep", "pos_lstm", "--param", "optim.lr=loguniform:1e-3:3e-2", "--trials", "3", *METRIC, *SMALL,
        "--out", str(folder), env={"DL_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (folder / "sweep.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _dl("sweep", str(folder), "--resume", env={"DL_THREADS": "1"})
    errs = [proc.communicate(timeout=300)[1] for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], errs
    started = [line.split(":")[0] for err in errs for line in err.splitlines() if " started:" in line]
    assert sorted(started) == [f"trial {n} started" for n in range(3)]  # each once, between them
    assert all(" started:" in err for err in errs)  # both did work
    report = _show(cli, folder)
    assert report["counts"]["complete"] == 3 and len(report["trials"]) == 3
