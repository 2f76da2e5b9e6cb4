"""Run folders as data: `dl runs` (dlcli/runs.py), `dl plot` and `dl eval --confusion` (dlcli/plots.py).

Two tiny runs under one folder: a finished image classifier and a language model that looks
unfinished (its summary.json removed, as while it trains), next to a folder that is not a run.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import Result

import dlcli
from dlcli import plots
from dlcli.errors import DlError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEST_IMAGES = 10  # data.test_size of the classify run


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/shapes (classify, 2 steps, finished), runs/chars (lm, 3 steps, no summary.json), runs/notes (not a run)."""
    folder = tmp_path_factory.mktemp("listing") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DL_OFFLINE", "1")
        dlcli.train(
            "resnet",
            {
                "data.image_size": 16,
                "data.batch_size": 4,
                "data.train_size": 12,
                "data.val_size": 10,
                "data.test_size": TEST_IMAGES,
                "train.max_steps": 2,
                "train.log_every": 1,
            },
            out=folder / "shapes",
        )
        dlcli.train(
            "char_lstm",
            {"train.max_steps": 3, "train.log_every": 1, "data.builtin_sentences": 400, "schedule.warmup_steps": 1},
            out=folder / "chars",
        )
    (folder / "chars" / "summary.json").unlink()
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("not a run\n")
    return folder


def _json(result: Result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _usage_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --------------------------------------------------------------------------- dl runs


def test_runs_lists_each_run_with_what_its_files_know(cli: Callable[..., Result], runs_folder: Path) -> None:
    rows = {Path(r["run"]).name: r for r in _json(cli("runs", runs_folder, "--json"))}
    assert set(rows) == {"shapes", "chars"}  # notes/ holds no config.yaml or checkpoints/

    shapes, summary = rows["shapes"], json.loads((runs_folder / "shapes" / "summary.json").read_text())
    assert (shapes["task"], shapes["finished"], shapes["steps"]) == ("classify", True, 2)
    assert shapes["best_metric"] == "top1"  # the metric that chooses a classifier's best.pt
    assert shapes["best_value"] == summary["metrics"]["val"]["top1"]
    assert shapes["wall_s"] == summary["wall_s"]

    # unfinished: what the newest checkpoint knows
    chars = rows["chars"]
    last = torch.load(runs_folder / "chars" / "checkpoints" / "last.pt", weights_only=True)
    assert (chars["task"], chars["finished"], chars["steps"]) == ("lm", False, 3)
    assert (chars["best_metric"], chars["best_value"]) == ("loss", last["best_value"])
    assert chars["wall_s"] == pytest.approx(last["wall_s"], abs=1e-3)
    for row in rows.values():
        assert datetime.datetime.fromisoformat(row["modified"]) <= datetime.datetime.now()


def test_runs_table_shows_every_run(cli: Callable[..., Result], runs_folder: Path) -> None:
    result = cli("runs", runs_folder)
    assert result.exit_code == 0, result.output
    for needle in ("shapes", "chars", "classify", "lm", "top1=", "loss="):
        assert needle in result.stdout, result.stdout


LONG_RUN = "runs/resnet18-shapes-some-long-experiment-name"


def write_finished_run(folder: Path) -> None:
    """The files `dl runs` reads of a finished run: its config.yaml and summary.json (no checkpoint)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: classify\n")
    summary = {"task": "classify", "steps": 1200, "wall_s": 3725.0, "metrics": {"val": {"top1": 0.5}}}
    (folder / "summary.json").write_text(json.dumps(summary))


def first_column(table: str) -> list[str]:
    """The first cell of each row of a table as rich prints it."""
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


def test_runs_keeps_a_long_run_name_whole_when_piped(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_finished_run(Path(LONG_RUN))
    monkeypatch.setenv("COLUMNS", "80")  # the CliRunner's stdout is not a terminal: as `dl runs | grep`
    result = cli("runs")
    assert result.exit_code == 0, result.output
    assert first_column(result.stdout) == [LONG_RUN]
    for needle in ("classify", "1200", "1 h 02 min", "yes"):  # and every other column, at full width
        assert needle in result.stdout, result.stdout


def test_runs_keeps_a_long_run_name_whole_at_80_columns(cli: Callable[..., Result], terminal_80) -> None:
    write_finished_run(Path(LONG_RUN))
    assert cli("runs").exit_code == 0
    screen = terminal_80.getvalue()
    assert first_column(screen) == [LONG_RUN]
    assert "classify" in screen  # the columns that do not fit are left out, the ones left stay readable
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_runs_of_a_missing_folder_is_exit_2(cli: Callable[..., Result], tmp_path: Path) -> None:
    _usage_error(cli("runs", tmp_path / "nowhere"), "nowhere")


# --------------------------------------------------------------------------- dl plot


def test_plot_draws_one_line_per_run_in_each_panel(runs_folder: Path, tmp_path: Path) -> None:
    shapes, chars = runs_folder / "shapes", runs_folder / "chars"
    out = tmp_path / "curves.png"
    fig = plots.plot_runs([shapes, chars], out)
    assert out.read_bytes().startswith(PNG_MAGIC)
    loss_ax, metric_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 2 and len(metric_ax.lines) == 2
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["shapes", "chars"]
    assert metric_ax.get_title() == "val top1"  # the first run's best-checkpoint metric
    records = [json.loads(line) for line in (shapes / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert list(loss_ax.lines[0].get_xdata()) == [r["step"] for r in train]
    assert list(loss_ax.lines[0].get_ydata()) == [r["loss"] for r in train]


def test_dl_plot_writes_the_image_and_checks_the_metric(
    cli: Callable[..., Result], runs_folder: Path, tmp_path: Path
) -> None:
    runs = [runs_folder / "shapes", runs_folder / "chars"]
    out = tmp_path / "loss.png"
    result = cli("plot", *runs, "-o", out, "--metric", "loss")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    _usage_error(cli("plot", *runs, "-o", out, "--metric", "accuracy"), "accuracy", "top1", "ppl")
    _usage_error(cli("plot", runs_folder / "notes", "-o", out), "notes", "metrics.jsonl")


def test_drawing_without_matplotlib_names_the_plot_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DlError, match=r"dlcli\[plot\]"):
        plots.new_figure()


# --------------------------------------------------------------------------- dl eval --confusion


def test_eval_confusion_counts_the_whole_split(cli: Callable[..., Result], runs_folder: Path, tmp_path: Path) -> None:
    image = tmp_path / "confusion.png"
    report = _json(cli("eval", runs_folder / "shapes", "--confusion", image, "--json"))
    assert image.read_bytes().startswith(PNG_MAGIC)
    assert report["split"] == "test"
    confusion = report["confusion"]
    counts = torch.tensor(confusion["counts"])
    classes = confusion["classes"]
    assert counts.shape == (len(classes), len(classes)) == (10, 10)
    assert int(counts.sum()) == TEST_IMAGES
    # the diagonal is what top1 counts: the same predictions as the metrics' pass
    assert counts.diagonal().sum().item() / TEST_IMAGES == pytest.approx(report["metrics"]["top1"])
    fig = plots.confusion_figure(counts, classes)
    assert fig.axes[0].images[0].get_array().sum() == TEST_IMAGES


def test_eval_confusion_of_a_language_model_is_exit_2(
    cli: Callable[..., Result], runs_folder: Path, tmp_path: Path
) -> None:
    image = tmp_path / "confusion.png"
    _usage_error(cli("eval", runs_folder / "chars", "--confusion", image), "--confusion", "'lm'")
    assert not image.exists()


def test_eval_flip_of_a_language_model_is_exit_2(cli: Callable[..., Result], runs_folder: Path) -> None:
    _usage_error(cli("eval", runs_folder / "chars", "--flip"), "--flip", "'lm'")
