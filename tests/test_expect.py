"""Recipes that state their result (`expect:`), `dl train`'s verdict line and `dl check`.

    pytest tests/test_expect.py                 # the default suite: two fast bundled recipes at full size (~20 s)
    pytest tests/test_expect.py -m slow         # every other bundled recipe, at full size (hours on a CPU)

The fast recipes are the two that train in seconds (bench_recipes in BENCHMARKS.md: word2vec 2.9 s,
pos_lstm 6.0 s); the others take from 13 s (word_lstm) to an hour (multi30k), and the default suite's
budget for this file is about a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlcli.config import Expect, list_recipes, resolve_recipe
from dlcli.expect import describe, judge

from conftest import assert_exit_2, dl, sets, toy_recipe

REPO = Path(__file__).resolve().parents[1]
FAST = ("word2vec", "pos_lstm")
# pos_lstm in a second of training: what the tests that do not need the recipe's own result train.
TINY_POS = sets("data.train_sentences=60", "data.val_sentences=20", "data.test_sentences=20", "train.epochs=1")
TOY = """
task: toyreg
name: toy
train: {epochs: 2, log_every: 1}
"""


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the verdict


def test_the_verdict_line_for_higher_and_lower_is_better() -> None:
    top1 = Expect(metric="test.top1", value=0.96, tolerance=0.02)
    verdict = judge(top1, {"test": {"top1": 0.9625}})
    assert describe(verdict) == "expect test.top1 >= 0.94 (0.96 - 0.02): got 0.9625, met"
    assert (verdict["wanted"], verdict["met"], verdict["short_by"]) == (0.94, True, None)
    short = judge(top1, {"test": {"top1": 0.91}})
    assert describe(short) == "expect test.top1 >= 0.94 (0.96 - 0.02): got 0.91, NOT met, short by 0.03"
    loss = judge(Expect(metric="val.loss", value=0.8459, tolerance=0.02), {"val": {"loss": 0.9}})
    assert loss["direction"] == "lower" and loss["short_by"] == pytest.approx(0.0341)
    assert describe(loss) == "expect val.loss <= 0.8659 (0.8459 + 0.02): got 0.9, NOT met, short by 0.0341"
    exact = judge(Expect(metric="val.loss", value=1.0, direction="higher"), {"val": {"loss": 1.0}})
    assert describe(exact) == "expect val.loss >= 1: got 1, met"


def test_a_metric_the_run_did_not_report_is_named_with_those_it_did() -> None:
    verdict = judge(Expect(metric="test.bleu", value=30), {"val": {"loss": 1.0}, "test": {"chrf": 50.0}})
    assert verdict["got"] is None and not verdict["met"]
    assert "NOT reported" in describe(verdict) and "test.chrf, val.loss" in describe(verdict)


def test_every_bundled_recipe_states_its_result() -> None:
    for path in list_recipes():
        cfg = resolve_recipe(path)  # also: its metric is one the task reports
        assert cfg.expect is not None, path.name
        assert cfg.expect.measured, path.name


# --------------------------------------------------------------------------- dl check: exit 0 and 1


@pytest.mark.parametrize("recipe", FAST)
def test_check_passes_on_a_fast_bundled_recipe(recipe: str, tmp_path: Path) -> None:
    result = dl("check", recipe, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("expect ") and line.endswith(", met"), line
    verdict = summary_of(tmp_path / "run")["expect"]
    assert verdict["met"] is True and verdict["got"] >= verdict["wanted"]


def test_check_fails_saying_by_how_much_when_the_value_is_out_of_reach(tmp_path: Path) -> None:
    result = dl("check", "pos_lstm", "--out", tmp_path / "run", "-q", *TINY_POS, *sets("expect.value=1.5"))
    assert result.exit_code == 1, result.output
    verdict = summary_of(tmp_path / "run")["expect"]
    assert verdict["met"] is False
    assert verdict["short_by"] == pytest.approx(1.5 - 0.005 - verdict["got"])
    assert f"NOT met, short by {verdict['short_by']:.6g}" in result.stdout


def test_check_json_holds_the_verdict_and_passes_a_lowered_value(tmp_path: Path) -> None:
    result = dl("check", "pos_lstm", "--out", tmp_path / "run", "-q", "--json", *TINY_POS, *sets("expect.value=0"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["expect"] == summary_of(tmp_path / "run")["expect"]


def test_a_check_cut_short_resumes_to_the_uninterrupted_verdict(tmp_path: Path) -> None:
    # A long check stopped after its first step (as Ctrl-C leaves it: last.pt) continues with --resume and
    # ends where an uninterrupted check ends: same steps, same metric, same verdict.
    check = ["check", "pos_lstm", "-q", "--json", *TINY_POS, *sets("expect.value=0")]
    whole = dl(*check, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    cut = dl(*check, "--out", tmp_path / "cut", *sets("train.max_steps=1"))
    assert cut.exit_code == 0, cut.output
    assert json.loads(cut.stdout)["steps"] == 1
    resumed = dl(*check, "--out", tmp_path / "cut", "--resume")
    assert resumed.exit_code == 0, resumed.output
    got, want = json.loads(resumed.stdout), json.loads(whole.stdout)
    assert got["steps"] == want["steps"] > 1
    assert got["expect"]["got"] == want["expect"]["got"] and got["expect"]["met"] is True
    assert_exit_2(dl(*check, "--out", tmp_path / "never-started", "--resume"), "Nothing to resume")


def test_train_reports_the_verdict_and_exits_0_either_way(monkeypatch, tmp_path: Path) -> None:
    recipe = toy_recipe(monkeypatch, tmp_path, TOY + "expect: {metric: test.loss, value: 0.0}\n")
    result = dl("train", recipe, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    verdict = summary_of(tmp_path / "run")["expect"]
    assert set(verdict) >= {"metric", "wanted", "got", "met"}
    assert verdict["direction"] == "lower" and verdict["met"] is False  # a noisy regression's loss is above 0
    assert f"expect test.loss <= 0: got {verdict['got']:.6g}, NOT met, short by" in result.stdout


# --------------------------------------------------------------------------- exit 2, before training


def test_check_without_expect_is_exit_2(monkeypatch, tmp_path: Path) -> None:
    assert_exit_2(dl("check", "resnet", "--set", "expect=null", "--out", tmp_path / "run"), "states no result")
    recipe = toy_recipe(monkeypatch, tmp_path, TOY)
    assert_exit_2(dl("check", recipe, "--out", tmp_path / "run"), "expect:")
    assert not (tmp_path / "run").exists()


def test_an_expect_naming_a_metric_the_task_never_reports_is_exit_2(tmp_path: Path) -> None:
    result = dl("check", "resnet", "--set", "expect.metric=test.bleu", "--out", tmp_path / "run")
    assert_exit_2(result, "test.bleu", "test.top1")
    assert not (tmp_path / "run").exists()


def test_train_on_data_that_drops_the_expected_metric_trains_and_says_so(tmp_path: Path) -> None:
    """word2vec's expect is the analogy accuracy; a corpus of one's own has no questions: dl train still
    trains (the README's command), and the verdict says the metric was not reported."""
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 50)
    own = sets("data.dataset=text", "data.path=corpus.txt", "data.min_count=1", "train.epochs=1")
    result = dl("train", "word2vec", "--out", tmp_path / "run", "-q", *own)
    assert result.exit_code == 0, result.output
    assert "NOT reported by this run" in result.stdout
    assert summary_of(tmp_path / "run")["expect"]["got"] is None


def test_an_expect_metric_without_a_split_is_exit_2(tmp_path: Path) -> None:
    assert_exit_2(dl("check", "pos_lstm", "--set", "expect.metric=accuracy"), "expect.metric", "split.name")


def test_an_expect_on_a_split_the_data_lacks_is_exit_2_before_training(tmp_path: Path) -> None:
    tiny_lm = sets(
        "data.builtin_sentences=40", "data.batch_size=2", "data.eval_batch_size=2", "expect.metric=test.loss"
    )
    result = dl("check", "char_lstm", "--out", tmp_path / "run", *tiny_lm)
    assert_exit_2(result, "no test split", "val")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_metric_known_only_when_the_run_ends_is_named_then(tmp_path: Path) -> None:
    """The tagger's per-tag metrics (precision.NOUN) depend on its data: one it lacks is found at the end."""
    result = dl("check", "pos_lstm", "--out", tmp_path / "run", "-q", *TINY_POS, *sets("expect.metric=test.recall.XYZ"))
    assert_exit_2(result, "test.recall.XYZ", "not reported")
    assert "NOT reported by this run (it reported " in result.stdout
    assert summary_of(tmp_path / "run")["expect"]["got"] is None


# --------------------------------------------------------------------------- every other bundled recipe

# What a recipe reads that may be missing here (the shared datasets, a download, another run's vectors),
# and the --set that points it at a local copy.
NEEDS: dict[str, tuple[str, list[str]]] = {
    "char_lstm_shakespeare": ("../shared/datasets/shakespeare/input.txt", []),
    "transformer_lm_shakespeare": ("../shared/datasets/shakespeare/input.txt", []),
    "multi30k": ("../shared/datasets/multi30k", sets("data.root=../shared/datasets/multi30k")),
    "pos_lstm_ud": ("runs/word2vec-corpus/vectors.bin", []),  # scripts/bench_sequence.py trains it
    "resnet_cifar_subset": ("../shared/datasets/images", []),
    "resnet_cifar10": ("../shared/datasets/cifar10/cifar10-jpeg.tar.gz", []),
    "cifar10_speedrun": ("../shared/datasets/cifar10/cifar10-jpeg.tar.gz", []),
    "word2vec_text8": ("data/text8", []),  # downloaded when online; the tests run offline
    "fasttext_wiki": ("../shared/datasets/corpus", []),
    "style": ("../shared/datasets/style", []),
}
SLOW = sorted(p.stem for p in list_recipes() if p.stem not in FAST)
# Recipes sized for a GPU: on a CPU their full length would take days (the speedrun: ~30 epochs of a cifar-stem ResNet-18).
GPU_ONLY = ("cifar10_speedrun",)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SLOW)
def test_check_passes_on_a_bundled_recipe(recipe: str, monkeypatch, tmp_path: Path) -> None:
    needed, extra = NEEDS.get(recipe, ("", []))
    if needed and not (REPO / needed).exists():
        pytest.skip(f"{recipe} needs {needed} (relative to the repository root)")
    if recipe in GPU_ONLY and not torch.cuda.is_available():
        pytest.skip(f"{recipe} is a GPU recipe")
    monkeypatch.chdir(REPO)  # the recipes' relative paths start there
    result = dl("check", recipe, "--out", tmp_path / "run", "-q", *extra)
    assert result.exit_code == 0, result.output
