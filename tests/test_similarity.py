"""Word similarity (dlcli.similarity, `dl similarity`): cosines, Spearman's rho as gensim's
evaluate_word_pairs computes it, and the pairs files it refuses.

Hand-built vectors and pairs files, no training; gensim and scipy are the references (skipped without them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlcli.errors import DlError
from dlcli.similarity import cosine, evaluate_word_pairs, ranks, spearman
from dlcli.vectors import SubwordVectors, WordVectors, save_word2vec_format

from conftest import assert_exit_2, fake_run


def _vectors(seed: int = 0) -> WordVectors:
    """30 random words, then case variants of two of them (gensim's first-row rule matters)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(30)] + ["W3", "w5x", "W5X"]
    return WordVectors(words, rng.standard_normal((len(words), 10)).astype(np.float32))


def _pairs_file(path: Path, sep: str = "\t", seed: int = 1) -> Path:
    """Pairs over the words, with tied scores, upper case, OOV words, a comment and a CRLF line."""
    rng = np.random.default_rng(seed)
    lines = ["# word1 word2 score", ""]
    for _ in range(60):
        a, b = rng.integers(0, 30, 2)
        lines.append(f"w{a}{sep}w{b}{sep}{rng.integers(0, 6)}")  # integer scores: many ties
    lines += [f"W3{sep}w7{sep}4.5", f"w5X{sep}w1{sep}2.25\r", f"unknown{sep}w1{sep}3", f"w2{sep}nope{sep}1"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    return path


def test_ranks_and_spearman_equal_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, 40).astype(float), rng.normal(size=40).round(1)
        np.testing.assert_allclose(ranks(x), stats.rankdata(x))
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))  # constant scores: undefined, as scipy's NaN


def test_cosine_is_the_normalised_dot_product():
    wv = _vectors()
    a, b = wv.vectors[1], wv.vectors[2]
    assert cosine(wv, "w1", "W2") == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), rel=1e-5)
    with pytest.raises(DlError, match="'nope' is not in the vocabulary"):
        cosine(wv, "w1", "nope")


@pytest.mark.parametrize("restrict", [300_000, 20])
def test_evaluate_word_pairs_equals_gensim(tmp_path: Path, restrict: int):
    models = pytest.importorskip("gensim.models")
    wv = _vectors()
    save_word2vec_format(wv, tmp_path / "v.txt")  # dl's vectors, as gensim reads them
    kv = models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    pairs = _pairs_file(tmp_path / "pairs.txt")
    pearson, (rho, _), oov_ratio = kv.evaluate_word_pairs(str(pairs), restrict_vocab=restrict)
    ours = evaluate_word_pairs(wv, pairs, restrict)
    assert ours["spearman"] == pytest.approx(rho, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson[0], abs=1e-6)
    assert ours["oov_ratio"] == pytest.approx(oov_ratio)
    assert ours["skipped"] >= 2 and ours["pairs"] + ours["skipped"] == 64
    # spaces instead of tabs read the same
    assert evaluate_word_pairs(wv, _pairs_file(tmp_path / "spaces.txt", sep=" "), restrict) == ours


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("w1\tw2\t3\nw1\tw2\n", "line 2: expected 3 fields"),
        ("w1 w2 3 4\n", "line 1: expected 3 fields"),
        ("# comment\nw1\tw2\thigh\n", "line 2: the score 'high' is not a number"),
        ("w1\tw2\tnan\n", "line 1: the score 'nan' is not a finite number"),
        ("# only a comment\n\n", "holds no word pairs"),
        ("", "holds no word pairs"),
        ("nope\tnada\t1\n", "no pair has both words"),
    ],
)
def test_bad_pairs_files_are_exit_2_naming_file_and_line(cli, tmp_path: Path, text: str, needle: str):
    save_word2vec_format(_vectors(), tmp_path / "v.txt")
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    assert_exit_2(cli("similarity", "--eval", path, "--vectors", tmp_path / "v.txt"), str(path), needle)


def test_cli_usage_errors_and_missing_file(cli, tmp_path: Path):
    save_word2vec_format(_vectors(), tmp_path / "v.txt")
    vectors = ("--vectors", tmp_path / "v.txt")
    assert_exit_2(cli("similarity", "--eval", tmp_path / "none.txt", *vectors), str(tmp_path / "none.txt"), "exist")
    assert_exit_2(cli("similarity", "w1", *vectors), "two words")
    assert_exit_2(cli("similarity", "w1", "w2", "--eval", tmp_path / "none.txt", *vectors), "no words")
    assert_exit_2(cli("similarity", "w1", "zzz", *vectors), "'zzz' is not in the vocabulary")


def test_cli_pair_and_eval_with_the_newest_run(cli, tmp_path: Path):
    wv = _vectors()
    run = fake_run(Path("runs/w2v"), "word2vec", 1_000)
    save_word2vec_format(wv, run / "vectors.bin", binary=True)
    result = cli("similarity", "w1", "w2", "--json")
    assert result.exit_code == 0, result.output
    assert "using runs/w2v (newest finished word2vec run)" in result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"word1": "w1", "word2": "w2", "cosine": pytest.approx(cosine(wv, "w1", "w2"))}
    plain = cli("similarity", "w1", "w2", "--run", run)
    assert plain.exit_code == 0 and plain.stdout.strip() == f"{answer['cosine']:.4f}"
    pairs = _pairs_file(tmp_path / "pairs.txt")
    result = cli("similarity", "--eval", pairs, "--run", run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == evaluate_word_pairs(wv, pairs)
    table = cli("similarity", "--eval", pairs, "--run", run)
    assert table.exit_code == 0 and "Spearman's rho" in table.stdout and "2 pairs skipped" in table.stdout


def test_compose_unknown_scores_every_pair_with_an_ngram(cli, tmp_path: Path):
    """A subword run's --compose-unknown: an unknown word's vector is its n-gram mean (fastText's OOV),
    a pair with a word that has no n-gram is still skipped; plain word vectors refuse it."""
    words, dim, buckets = ["where", "there", "here", "banana", "apple"], 6, 40
    rng = np.random.default_rng(3)
    wv = SubwordVectors(
        words, rng.standard_normal((5, dim), np.float32), rng.standard_normal((buckets, dim), np.float32), 5, 6
    )
    lines = ["where there 3", "here banana 1", "wherever apple 2", "bananas theres 4", "ab where 5"]
    pairs = tmp_path / "rare.txt"
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plain = evaluate_word_pairs(wv, pairs)
    assert (plain["pairs"], plain["skipped"]) == (2, 3)
    composed = evaluate_word_pairs(wv, pairs, compose_unknown=True)
    assert (composed["pairs"], composed["skipped"]) == (4, 1)  # '<ab>' has no n-gram of 5 or 6
    unit = {w: wv.query(w)[1] for w in ("where", "there", "here", "banana", "wherever", "apple", "bananas", "theres")}
    model = [unit["where"] @ unit["there"], unit["here"] @ unit["banana"], unit["wherever"] @ unit["apple"]]
    model.append(unit["bananas"] @ unit["theres"])
    assert composed["spearman"] == pytest.approx(spearman(np.array([3.0, 1, 2, 4]), np.array(model)), abs=1e-6)
    with pytest.raises(DlError, match="subword run"):
        evaluate_word_pairs(_vectors(), pairs, compose_unknown=True)
    save_word2vec_format(_vectors(), tmp_path / "v.txt")
    assert_exit_2(cli("similarity", "--eval", pairs, "--vectors", tmp_path / "v.txt", "--compose-unknown"), "subword")
    assert_exit_2(cli("similarity", "w1", "w2", "--vectors", tmp_path / "v.txt", "--compose-unknown"), "--eval")
