"""Tests for word vectors (dlcli.vectors) and `dl analogy` / `dl similar`.

Everything is small and hand-built: no corpus, no training. gensim is the reference for the
file formats and the answers (its KeyedVectors); those tests are skipped without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from dlcli.errors import DlError
from dlcli.vectors import (
    WordVectors,
    analogy,
    evaluate_analogies,
    evaluate_analogy_lines,
    load_word2vec_format,
    plot_analogy,
    save_word2vec_format,
    similar,
    vectors_for_run,
)


def _royal() -> WordVectors:
    """king - man + woman = queen exactly, and all four have the same length.

    With orthogonal g (royal), h (common) and s (male - female) directions:
    king = g + s, queen = g - s, man = h + s, woman = h - s.
    """
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "man", "woman", "apple", "car", "prince", "river"]
    vectors = rng.normal(0, 0.3, (len(words), 8)).astype(np.float32)
    vectors[:, :3] = 0
    g, h, s = np.eye(8, dtype=np.float32)[:3]
    vectors[1], vectors[2], vectors[3], vectors[4] = g + s, g - s, h + s, h - s
    vectors[7] = g + 0.8 * s + 0.2 * h  # a close distractor for king
    return WordVectors(words, vectors)


def _random(n: int = 300, dim: int = 16, seed: int = 1) -> WordVectors:
    rng = np.random.default_rng(seed)
    return WordVectors([f"w{i}" for i in range(n)], rng.standard_normal((n, dim)).astype(np.float32))


def _structured(seed: int = 2) -> tuple[WordVectors, list[tuple[str, str]]]:
    """Pairs (x, y) with y ~ x + offset plus noise, so that some analogies succeed and some fail.

    Also holds upper-case variants ("X3" after "x3") to check the case-insensitive matching.
    """
    rng = np.random.default_rng(seed)
    dim, n = 12, 40
    offset = rng.standard_normal(dim)
    xs = rng.standard_normal((n, dim))
    ys = xs + offset + rng.normal(0, 0.9, (n, dim))
    ys[5:7] = xs[5:7] + offset  # so that "x5 y5 x6 y6" is right once "Y5" below is left out
    words = [f"x{i}" for i in range(n)] + [f"y{i}" for i in range(n)] + ["X3", "Y5", "X7"]
    extra = rng.standard_normal((3, dim))
    # "Y5" is a case variant of y5 that sits exactly on the offset of "x5 y5 x6 y6": it must be
    # left out with y5, as gensim does, or it wins that question.
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    extra[1] = unit(ys[5]) - unit(xs[5]) + unit(xs[6])
    vectors = np.concatenate([xs, ys, extra]).astype(np.float32)
    return WordVectors(words, vectors), [(f"x{i}", f"y{i}") for i in range(n)]


def _write_questions(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """Three sections: plain, upper-case (as questions-words.txt is), and one with unknown words."""
    lines = [": capital-common"]
    lines += [f"{a} {b} {c} {d}" for (a, b), (c, d) in zip(pairs[:20], pairs[1:21])]
    lines += [": Gram-Upper"]
    lines += [f"{a.upper()} {b.upper()} {c} {d.upper()}" for (a, b), (c, d) in zip(pairs[20:39], pairs[21:40])]
    lines += [": oov", "x1 y1 nothere y2", "x1 y1 x2 y2", "", "x30 y30 x2 y2"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("name", ["v.vec", "v.vec.gz"])
def test_round_trip_is_exact(tmp_path: Path, binary: bool, name: str):
    wv = WordVectors(["the", "café", "straße", "x"], np.random.default_rng(0).standard_normal((4, 7)) * 1e3)
    save_word2vec_format(wv, tmp_path / name, binary=binary)
    back = load_word2vec_format(tmp_path / name)
    assert back.words == wv.words
    assert np.array_equal(back.vectors, wv.vectors)  # bit-exact, text included
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_file_layout_is_word2vec_c(tmp_path: Path):
    wv = WordVectors(["a", "b"], np.array([[1.0, -0.5], [0.25, 2.0]]))
    save_word2vec_format(wv, tmp_path / "v.txt", binary=False)
    assert (tmp_path / "v.txt").read_text() == "2 2\na 1 -0.5\nb 0.25 2\n"
    save_word2vec_format(wv, tmp_path / "v.bin", binary=True)
    data = (tmp_path / "v.bin").read_bytes()
    expected = b"2 2\n" + b"a " + np.array([1.0, -0.5], "<f4").tobytes() + b"\n"
    expected += b"b " + np.array([0.25, 2.0], "<f4").tobytes() + b"\n"
    assert data == expected


def test_reads_word2vec_c_text_with_trailing_spaces_and_limit(tmp_path: Path):
    path = tmp_path / "c.txt"
    path.write_text("3 2\nthe 0.100000 0.200000 \nof -1.000000 0.500000 \nand 3.000000 4.000000 \n")
    wv = load_word2vec_format(path)
    assert wv.words == ["the", "of", "and"]
    np.testing.assert_allclose(wv.vectors[1], [-1.0, 0.5])
    assert load_word2vec_format(path, limit=2).words == ["the", "of"]


def test_odd_bytes_are_replaced_not_fatal(tmp_path: Path):
    path = tmp_path / "odd.bin"
    path.write_bytes(b"1 2\n" + b"caf\xe9 " + np.array([1.0, 2.0], "<f4").tobytes())
    wv = load_word2vec_format(path)
    assert wv.words == ["caf\ufffd"]
    np.testing.assert_array_equal(wv.vectors[0], [1.0, 2.0])


def test_the_file_gets_the_umasks_mode(tmp_path: Path, set_umask):
    for umask in (0o022, 0o077):
        set_umask(umask)
        save_word2vec_format(WordVectors(["a"], np.ones((1, 2))), tmp_path / f"{umask:03o}.txt")
        assert (tmp_path / f"{umask:03o}.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_save_leaves_no_file(tmp_path: Path):
    with pytest.raises(DlError, match="separated by spaces"):
        save_word2vec_format(WordVectors(["new york"], np.ones((1, 2))), tmp_path / "v.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "line 1"),
        (b"the 0.1 0.2\n", "line 1"),
        (b"2 2\nthe 0.1 0.2\nof 0.3\n", "line 3"),
        (b"2 2\nthe 0.1 0.2\nof 0.3 zero\n", "line 3"),
        (b"3 2\nthe 0.1 0.2\nof 0.3 0.4\n", "header"),
        (b"2 2\nthe " + np.zeros(2, "<f4").tobytes() + b"\nof " + np.zeros(1, "<f4").tobytes(), "truncated"),
    ],
)
def test_malformed_files_name_the_file_and_place(tmp_path: Path, content: bytes, needle: str):
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(DlError, match=needle) as e:
        load_word2vec_format(path)
    assert str(path) in str(e.value)


def test_missing_files_and_runs(tmp_path: Path):
    with pytest.raises(DlError, match="does not exist"):
        load_word2vec_format(tmp_path / "nope.txt")
    with pytest.raises(DlError, match="dl train configs/word2vec.yaml"):
        vectors_for_run(tmp_path)


def test_run_prefers_the_binary_file(tmp_path: Path):
    wv = _royal()
    save_word2vec_format(wv, tmp_path / "vectors.txt", binary=False)
    assert vectors_for_run(tmp_path).words == wv.words
    save_word2vec_format(WordVectors(["only"], np.ones((1, 8))), tmp_path / "vectors.bin", binary=True)
    assert vectors_for_run(tmp_path).words == ["only"]


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_our_files_and_we_read_gensims(tmp_path: Path, binary: bool):
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
    wv = WordVectors(
        ["the", "café", "straße"] + [f"w{i}" for i in range(50)], np.random.default_rng(3).standard_normal((53, 10))
    )
    save_word2vec_format(wv, tmp_path / "ours", binary=binary)
    kv = gensim_kv.KeyedVectors.load_word2vec_format(tmp_path / "ours", binary=binary)
    assert kv.index_to_key == wv.words
    np.testing.assert_array_equal(kv.vectors, wv.vectors)

    kv.save_word2vec_format(str(tmp_path / "theirs.gz"), binary=binary)  # gensim's binary has no "\n"s
    back = load_word2vec_format(tmp_path / "theirs.gz")
    assert back.words == wv.words
    np.testing.assert_array_equal(back.vectors, wv.vectors)


# --------------------------------------------------------------------------- queries


@pytest.mark.parametrize("method", ["add", "mul"])
def test_king_minus_man_plus_woman_is_queen(method: str):
    best, score = analogy(_royal(), "king", "man", "woman", top=3, method=method)[0]
    assert best == "queen"
    if method == "add":
        assert score == pytest.approx(1.0, abs=1e-6)  # the offset lands exactly on queen


def test_analogy_excludes_the_question_and_honours_restrict():
    wv = _royal()
    words = [w for w, _ in analogy(wv, "king", "man", "woman", top=len(wv))]
    assert not {"king", "man", "woman"} & set(words)
    assert len(words) == len(wv) - 3
    assert [w for w, _ in analogy(wv, "king", "man", "woman", restrict=2)] == ["the"]


def test_unknown_words_are_named_with_close_matches():
    with pytest.raises(DlError, match="'kinng' is not in the vocabulary.*king"):
        analogy(_royal(), "kinng", "man", "woman")
    assert similar(_royal(), "King", top=1)[0][0] != "king"  # upper case finds the lower-case word


def test_similar_equals_gensim_most_similar():
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
    wv = _random()
    kv = gensim_kv.KeyedVectors(wv.dim)
    kv.add_vectors(wv.words, wv.vectors)
    for word in ("w0", "w7", "w299"):
        ours, theirs = similar(wv, word, top=10), kv.most_similar(word, topn=10)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)


@pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")  # gensim's own init_sims
def test_analogies_equal_gensim_most_similar_and_cosmul():
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
    wv = _random()
    kv = gensim_kv.KeyedVectors(wv.dim)
    kv.add_vectors(wv.words, wv.vectors)
    for a, b, c in [("w1", "w2", "w3"), ("w10", "w200", "w33"), ("w5", "w6", "w5")]:
        ours = analogy(wv, a, b, c, top=8, method="add")
        theirs = kv.most_similar(positive=[a, c], negative=[b], topn=8)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
        ours = analogy(wv, a, b, c, top=8, method="mul")
        theirs = kv.most_similar_cosmul(positive=[a, c], negative=[b], topn=8)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("restrict", [83, 70])
def test_evaluation_counts_equal_gensim(tmp_path: Path, restrict: int):
    gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
    wv, pairs = _structured()
    questions = _write_questions(tmp_path / "questions.txt", pairs)
    result = evaluate_analogies(wv, questions, restrict=restrict)

    kv = gensim_kv.KeyedVectors(wv.dim)
    kv.add_vectors(wv.words, wv.vectors)
    score, sections = kv.evaluate_word_analogies(str(questions), restrict_vocab=restrict, case_insensitive=True)
    *sections, total = sections
    assert total["section"] == "Total accuracy"
    assert result["correct"] == len(total["correct"])
    assert result["total"] == len(total["correct"]) + len(total["incorrect"])
    assert result["accuracy"] == pytest.approx(score)
    assert list(result["sections"]) == [s["section"] for s in sections]
    for s in sections:
        mine = result["sections"][s["section"]]
        assert (mine["correct"], mine["total"]) == (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))
    assert 0 < result["correct"] < result["total"]  # the test discriminates: some right, some wrong
    # "nothere"; and at 70, y30 .. y39 are out: 10 questions of Gram-Upper and "x30 y30 x2 y2".
    assert result["skipped"] == (1 if restrict == 83 else 1 + 10 + 1)


def test_evaluation_shape_and_mul_agree_with_one_by_one_answers(tmp_path: Path):
    wv, pairs = _structured()
    questions = _write_questions(tmp_path / "questions.txt", pairs)
    result = evaluate_analogies(wv, questions, restrict=80, method="mul")
    assert set(result) == {"accuracy", "correct", "total", "skipped", "sections"}
    assert set(result["sections"]["oov"]) == {"accuracy", "correct", "total"}
    # The batched answers equal analogy() asked one question at a time (80 rows: no case variants).
    expected = 0
    for line in questions.read_text().splitlines():
        words = line.lower().split()
        if len(words) == 4 and all(w in wv.words[:80] for w in words):
            a, b, c, d = words
            expected += analogy(wv, b, a, c, top=1, method="mul", restrict=80)[0][0] == d
    assert result["correct"] == expected


def test_bad_questions_files(tmp_path: Path):
    wv = _royal()
    with pytest.raises(DlError, match="does not exist"):
        evaluate_analogies(wv, tmp_path / "nope.txt")
    (tmp_path / "q.txt").write_text(": s\nking man woman\n")
    with pytest.raises(DlError, match="line 2"):
        evaluate_analogies(wv, tmp_path / "q.txt")
    (tmp_path / "q.txt").write_text("man king woman queen\n")
    with pytest.raises(DlError, match="line 1"):
        evaluate_analogies(wv, tmp_path / "q.txt")
    (tmp_path / "q.txt").write_text("\n")
    with pytest.raises(DlError, match="no questions"):
        evaluate_analogies(wv, tmp_path / "q.txt")


def test_lines_in_memory_score_as_the_file(tmp_path: Path):
    """What the word2vec task's validation calls, with the questions read once."""
    wv, pairs = _structured()
    questions = _write_questions(tmp_path / "questions.txt", pairs)
    lines = questions.read_text().splitlines()
    assert evaluate_analogy_lines(wv, lines, restrict=83) == evaluate_analogies(wv, questions, restrict=83)
    assert evaluate_analogy_lines(wv, [], restrict=83) == {
        "accuracy": 0.0,
        "correct": 0,
        "total": 0,
        "skipped": 0,
        "sections": {},
    }


def test_fast_on_a_full_size_question_set(tmp_path: Path):
    """19,544 questions (questions-words.txt's size) against 30,000 x 100 vectors in seconds."""
    import time

    rng = np.random.default_rng(0)
    wv = WordVectors([f"w{i}" for i in range(30_000)], rng.standard_normal((30_000, 100)))
    q = rng.integers(0, 30_000, (19_544, 4))
    text = "".join(f": s{s}\n" + "".join(f"w{a} w{b} w{c} w{d}\n" for a, b, c, d in q[s::14]) for s in range(14))
    (tmp_path / "q.txt").write_text(text)
    start = time.perf_counter()
    result = evaluate_analogies(wv, tmp_path / "q.txt", restrict=30_000)
    assert result["total"] + result["skipped"] == 19_544
    assert time.perf_counter() - start < 30  # about 1 s alone; generous for a busy shared machine


# --------------------------------------------------------------------------- plots


def test_plot_writes_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    path = plot_analogy(_royal(), [("man", "king"), ("woman", "queen")], tmp_path / "plots" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(DlError, match="pip install matplotlib"):
        plot_analogy(_royal(), [("man", "king")], tmp_path / "a.png")


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def vec_file(tmp_path: Path) -> Path:
    save_word2vec_format(_royal(), tmp_path / "royal.bin", binary=True)
    return tmp_path / "royal.bin"


def _assert_usage_error(result: Result, *needles: str) -> None:
    """Exit 2, a short message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_cli_analogy_json(cli, vec_file: Path):
    result = cli("analogy", "king", "man", "woman", "--vectors", vec_file, "--top", 3, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert len(answers) == 3 and set(answers[0]) == {"word", "score"}
    assert answers[0]["word"] == "queen"
    assert answers[0]["score"] == pytest.approx(1.0, abs=1e-6)
    mul = json.loads(cli("analogy", "king", "man", "woman", "--vectors", vec_file, "--method", "mul", "--json").stdout)
    assert mul[0]["word"] == "queen"


def test_cli_similar_and_tables(cli, tmp_path: Path, vec_file: Path):
    save_word2vec_format(_royal(), tmp_path / "run" / "vectors.txt")
    result = cli("similar", "king", "--run", tmp_path / "run", "--top", 2, "--json")
    assert result.exit_code == 0, result.output
    assert [r["word"] for r in json.loads(result.stdout)] == [w for w, _ in similar(_royal(), "king", top=2)]
    table = cli("similar", "king", "--vectors", vec_file)
    assert table.exit_code == 0 and "prince" in table.stdout
    table = cli("analogy", "king", "man", "woman", "--vectors", vec_file)
    assert table.exit_code == 0 and "queen" in table.stdout


def test_cli_eval(cli, tmp_path: Path):
    wv, pairs = _structured()
    save_word2vec_format(wv, tmp_path / "v.txt")
    questions = _write_questions(tmp_path / "questions.txt", pairs)
    result = cli("analogy", "--eval", questions, "--vectors", tmp_path / "v.txt", "--restrict", 80, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == evaluate_analogies(wv, questions, restrict=80)
    table = cli("analogy", "--eval", questions, "--vectors", tmp_path / "v.txt")
    assert table.exit_code == 0 and "Gram-Upper" in table.stdout and "skipped" in table.stdout


def test_cli_plot(cli, tmp_path: Path, vec_file: Path):
    pytest.importorskip("matplotlib")
    result = cli("analogy", "king", "man", "woman", "--vectors", vec_file, "--plot", tmp_path / "a.png", "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # the plot's message goes to stderr: stdout stays one JSON document
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_usage_errors(cli, tmp_path: Path, vec_file: Path):
    _assert_usage_error(cli("analogy", "kinng", "man", "woman", "--vectors", vec_file), "'kinng'", "king")
    _assert_usage_error(cli("similar", "nope", "--vectors", vec_file, "--json"), "'nope'")
    _assert_usage_error(cli("similar", "king", "--vectors", tmp_path / "missing.txt"), "missing.txt")
    _assert_usage_error(cli("similar", "king", "--run", tmp_path / "no-run"), "dl train configs/word2vec.yaml")
    _assert_usage_error(cli("similar", "king"), "--run", "--vectors")
    _assert_usage_error(cli("similar", "king", "--run", tmp_path, "--vectors", vec_file), "exactly one")
    _assert_usage_error(cli("analogy", "king", "man", "--vectors", vec_file), "three words")
    _assert_usage_error(cli("analogy", "king", "man", "woman", "--eval", vec_file, "--vectors", vec_file), "--eval")
    assert cli("analogy", "king", "man", "woman", "--vectors", vec_file, "--method", "sub").exit_code == 2
