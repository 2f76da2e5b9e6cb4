"""Runs you need not name: without --run (or --vectors, --arch), `dl analogy`, `dl similar`, `dl tag`,
`dl generate`, `dl translate` and `dl predict` answer with the newest finished run of their task under
./runs (runs.newest_finished), and say which on stderr. With none they stop, exit 2, naming the recipe to
train and how long it takes (each command's message: tests/test_bad_input.py), before loading torch
(tests/test_startup.py).

    dl train configs/word2vec.yaml && dl analogy king man woman      # queen, as typed in a fresh folder
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import Result

from dlcli import runs

from conftest import assert_exit_2, fake_run, sets


def test_train_word2vec_then_analogy_as_typed(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh folder: no configs/ (the bundled recipe answers), no runs/
    # The recipe as typed, on 20k of its 55k sentences and one thread (exactly reproducible): queen stays first.
    trained = cli("train", "configs/word2vec.yaml", *sets("data.planted_sentences=20000", "train.workers=1"), "-q")
    assert trained.exit_code == 0, trained.output
    result = cli("analogy", "king", "man", "woman", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["word"] == "queen"
    assert "using runs/word2vec (newest finished word2vec run)" in result.stderr


def test_the_newest_finished_run_of_the_task_is_taken() -> None:
    fake_run(Path("runs/a"), "word2vec", 1_000)
    fake_run(Path("runs/sweep/b"), "word2vec", 2_000)  # found at any depth, as `dl runs` finds runs
    fake_run(Path("runs/c"), "word2vec", None)  # still training: not finished
    fake_run(Path("runs/d"), "lm", 3_000)
    assert runs.newest_finished("word2vec") == Path("runs/sweep/b")
    assert runs.newest_finished("lm") == Path("runs/d")


def test_an_unfinished_run_is_named_but_not_taken(cli: Callable[..., Result]) -> None:
    fake_run(Path("runs/w2v"), "word2vec", None)
    assert_exit_2(cli("similar", "king"), "runs/w2v: not finished", '"dl train configs/word2vec.yaml"', "--vectors")


def test_run_still_names_the_run(cli: Callable[..., Result]) -> None:
    fake_run(Path("runs/w2v"), "word2vec", 1_000)
    result = cli("similar", "king", "--run", "elsewhere")
    assert_exit_2(result, "Run folder elsewhere does not exist")
    assert "using" not in result.stderr


@pytest.mark.parametrize("task", list(runs.FIRST_RECIPE))
def test_the_hint_trains_the_task_in_the_time_its_recipe_header_states(task: str, repo_configs: Path) -> None:
    recipe, took = runs.FIRST_RECIPE[task]
    text = (repo_configs.parent / recipe).read_text(encoding="utf-8")
    assert yaml.safe_load(text)["task"] == task
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    assert f"{took} of training" in " ".join(header), header
