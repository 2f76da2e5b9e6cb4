"""fastText's subwords (model.subwords, Bojanowski et al. 2017): n-gram hashes and composed vectors equal
gensim's, both training loops against the formula, and the task end to end (loss, OOV queries, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcli import checkpoint
from dlcli.api import load_run
from dlcli.models import word2vec_hogwild as hogwild
from dlcli.models.huffman import huffman_tree
from dlcli.models.subwords import compose, compose_unseen, ngram_hashes, subword_table
from dlcli.models.word2vec import FastText, SubwordRows, batched_update
from dlcli.vectors import SubwordVectors, WordVectors, save_word2vec_format

from conftest import assert_exit_2, dl, fake_run, sets

needs_numba = pytest.mark.skipif(not hogwild.available(), reason="numba is not installed")

# ASCII, accents (2-byte UTF-8), CJK (3 bytes), an emoji (4 bytes), repeated n-grams, one letter, empty
WORDS = ["where", "unfriendliness", "banana", "a", "", "naïve", "straße", "日本語", "🙂ok", "Ωmega", "zürich"]


@pytest.mark.parametrize(("min_n", "max_n", "buckets"), [(3, 6, 2_000_000), (1, 2, 1000), (2, 9, 97), (5, 5, 11)])
def test_ngram_hashes_equal_gensims(min_n: int, max_n: int, buckets: int):
    fasttext = pytest.importorskip("gensim.models.fasttext")
    for word in WORDS:
        assert ngram_hashes(word, min_n, max_n, buckets) == fasttext.ft_ngram_hashes(word, min_n, max_n, buckets), word


def test_ngrams_of_a_word_are_fasttexts():
    # "<where>" with n = 3: <wh whe her ere re> (fastText's example); "<a>" is FNV-1a over its 3 bytes
    fnv = lambda s: ngram_hashes(s[1:-1], len(s), len(s), 2**32)[-1]  # noqa: E731  the hash of the whole "<s>"
    assert len(ngram_hashes("where", 3, 3, 2**32)) == 5
    assert fnv("<a>") == ((((2166136261 ^ 60) * 16777619 % 2**32 ^ 97) * 16777619 % 2**32) ^ 62) * 16777619 % 2**32
    assert len(ngram_hashes("日本語", 3, 3, 10)) == 3  # characters, not bytes: <日本 日本語 本語>


def _gensim_fasttext(words, dim, min_n, max_n, buckets):
    models = pytest.importorskip("gensim.models")
    model = models.FastText(vector_size=dim, min_count=1, min_n=min_n, max_n=max_n, bucket=buckets, workers=1)
    model.build_vocab(corpus_iterable=[[w] * (len(words) - i) for i, w in enumerate(words)])  # distinct counts
    assert model.wv.index_to_key == words
    return model


def test_composed_and_oov_vectors_equal_gensims_for_the_same_matrices():
    words, dim, buckets = ["where", "banana", "naïve", "日本語", "a"], 8, 50
    rng = np.random.default_rng(0)
    rows, ngram_vectors = (
        rng.standard_normal((len(words), dim), np.float32),
        rng.standard_normal((buckets, dim), np.float32),
    )
    model = _gensim_fasttext(words, dim, 3, 6, buckets)
    model.wv.vectors_vocab[:], model.wv.vectors_ngrams[:] = rows, ngram_vectors
    model.wv.adjust_vectors()
    ours = compose(rows, ngram_vectors, subword_table(words, 3, 6, buckets))
    np.testing.assert_allclose(ours, model.wv.vectors, rtol=1e-6, atol=1e-6)
    # the average as gensim defines it: (row + sum of the n-gram rows, repeats counted) / (1 + n-grams)
    hashes = ngram_hashes("banana", 3, 6, buckets)
    np.testing.assert_allclose(ours[1], (rows[1] + ngram_vectors[hashes].sum(0)) / (1 + len(hashes)), rtol=1e-5)
    wv = SubwordVectors(words, ours, ngram_vectors, 3, 6)
    for oov in ("wherever", "bananas", "naïvety", "日本"):
        np.testing.assert_allclose(wv.vector(oov), model.wv[oov], rtol=1e-5, atol=1e-6)
        assert compose_unseen(oov, ngram_vectors, 3, 6) is not None
    np.testing.assert_allclose(wv.vector("Where"), ours[0])  # a known word is its composed row


# --------------------------------------------------------------------------- one step against the formula

VOCAB = ["cat", "cats", "dog", "noise"]  # word 3 takes every noise draw
BUCKETS = 7  # few rows: words share n-gram rows, and "cats" repeats some


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _formula(syn0, ngrams, syn1, table, steps, lr, stale):
    """fastText's SGD with negative sampling: per (target, contexts) step, l1 = mean of the contexts' rows and
    n-gram rows; the update of l1 goes whole to each of those rows. stale: every step reads the start."""
    want0, want_n, want1 = syn0.copy(), ngrams.copy(), syn1.copy()
    for target, contexts in steps:
        read0, read_n, read1 = (syn0, ngrams, syn1) if stale else (want0.copy(), want_n.copy(), want1.copy())
        rows = [table.rows(c) for c in contexts]
        l1 = sum(read0[c] + read_n[r].sum(0) for c, r in zip(contexts, rows, strict=True))
        l1 = l1 / sum(1 + len(r) for r in rows)
        neu1e = np.zeros_like(l1)
        for word, label in ((target, 1.0), (3, 0.0), (3, 0.0)):
            # sequential noise updates: the second draw of word 3 reads the row the first one changed
            out = read1[word] if stale else want1[word]
            g = (label - _sigmoid(out @ l1)) * lr
            neu1e += g * out
            want1[word] = want1[word] + g * l1
        for c, r in zip(contexts, rows, strict=True):
            want0[c] += neu1e
            np.add.at(want_n, r, neu1e)  # a repeated n-gram gets the update twice
    return want0, want_n, want1


def _start():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((4, 6), np.float32) * 0.3 for _ in range(3))


@needs_numba
@pytest.mark.parametrize("sg", [True, False])
def test_hogwild_subword_step_equals_the_formula(sg):
    syn0, syn1, _ = _start()
    ngrams = np.random.default_rng(2).standard_normal((BUCKETS, 6), np.float32) * 0.3
    table = subword_table(VOCAB, 3, 4, BUCKETS)
    got0, got_n, got1 = syn0.copy(), ngrams.copy(), syn1.copy()
    tree = huffman_tree(np.zeros(0, np.int64))
    hogwild.train_sentences(
        *(got0, got1, np.array([0, 1, 2], np.int32), np.array([0, 3])),
        *(np.arange(4, dtype=np.int32), np.ones(4, np.float32), *hogwild.alias_table(np.array([0, 0, 0, 7]), 0.75)),
        *(tree.codes, tree.points, got_n, table.offsets, table.ids),
        *(sg, False, 2, 1, 0.1, 1),  # sg, hs, negative, window, lr, seed
        *(got1[:0], 0),  # no rows of its own
    )
    if sg:  # word2vec.c's order: per position, each context word's vectors predict the target
        steps = [(0, [1]), (1, [0]), (1, [2]), (2, [1])]
    else:
        steps = [(0, [1]), (1, [0, 2]), (2, [1])]
    want0, want_n, want1 = _formula(syn0, ngrams, syn1, table, steps, 0.1, stale=False)
    for got, want in ((got0, want0), (got_n, want_n), (got1, want1)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sg", [True, False])
def test_batched_subword_step_equals_the_summed_formula(sg):
    syn0, syn1, _ = _start()
    ngrams = np.random.default_rng(2).standard_normal((BUCKETS, 6), np.float32) * 0.3
    table = subword_table(VOCAB, 3, 4, BUCKETS)
    model = FastText(4, 6, BUCKETS)
    for param, value in ((model.in_vectors, syn0), (model.out_vectors, syn1), (model.ngram_vectors, ngrams)):
        param.data.copy_(torch.from_numpy(value))
    batched_update(
        model,
        *(torch.tensor([0, 2]), torch.tensor([2]), torch.ones(4), torch.tensor([0.0, 0, 0, 1])),
        *(torch.Generator().manual_seed(0), sg, 1, 2, 0.1),  # sg, window, negative, lr
        subwords=SubwordRows(torch.from_numpy(table.offsets), torch.from_numpy(table.ids)),
    )
    # two words, window 1: each predicts the other, both from the vectors before either update
    want0, want_n, want1 = _formula(syn0, ngrams, syn1, table, [(0, [2]), (2, [0])], 0.1, stale=True)
    for got, want in ((model.in_vectors, want0), (model.ngram_vectors, want_n), (model.out_vectors, want1)):
        np.testing.assert_allclose(got.data.numpy(), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the task

TINY = ["data.planted_sentences=3000", "model.vector_size=20", "train.epochs=2", "train.log_every=5"]
SUBWORDS = ["model.subwords=true", "model.buckets=5000", "train.workers=1"]


def _train(out, *items):
    return dl("train", "word2vec", "--out", out, "--quiet", *sets(*TINY, *SUBWORDS, *items))


def _train_losses(run: Path) -> list[float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A subword run (hogwild when numba is there), trained once for the tests that query it."""
    run = tmp_path_factory.mktemp("fasttext") / "run"
    result = _train(run, f"model.impl={'hogwild' if hogwild.available() else 'batched'}")
    assert result.exit_code == 0, result.output
    return run


def test_training_makes_the_loss_fall_and_exports_the_composed_vectors(trained):
    losses = _train_losses(trained)
    assert losses[-1] < losses[0] * 0.95
    record = checkpoint.load(trained / "checkpoints" / "last.pt")
    words = json.loads((trained / "vocab.json").read_text())["words"]
    rows, ngram_vectors = (record.model[k].numpy() for k in ("in_vectors", "ngram_vectors"))
    assert ngram_vectors.shape == (5000, 20)
    np.testing.assert_array_equal(np.load(trained / "ngrams.npy"), ngram_vectors)
    assert json.loads((trained / "subwords.json").read_text())["min_n"] == 3
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(trained / "vectors.bin"), binary=True)
    np.testing.assert_allclose(kv.vectors, compose(rows, ngram_vectors, subword_table(words, 3, 6, 5000)), rtol=1e-6)


def test_batched_training_makes_the_loss_fall(tmp_path):
    assert _train(tmp_path / "run", "model.impl=batched", "model.sg=0").exit_code == 0
    losses = _train_losses(tmp_path / "run")
    assert losses[-1] < losses[0] * 0.95


def test_an_oov_word_gets_its_vector_from_its_ngrams_in_the_cli_and_the_api(trained):
    assert "kingdoms" not in json.loads((trained / "vocab.json").read_text())["words"]
    result = dl("similar", "kingdoms", "--run", trained, "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    neighbours = json.loads(result.stdout)
    run = load_run(trained)
    assert [(n["word"], pytest.approx(n["score"])) for n in neighbours] == run.similar("kingdoms", top=3)
    assert len(neighbours) == 3 and "kingdoms" not in [n["word"] for n in neighbours]
    wv = run._word_vectors()
    unseen = wv.vector("kingdoms")
    cosine = unseen @ wv.vector("king") / np.linalg.norm(unseen) / np.linalg.norm(wv.vector("king"))
    assert run.similarity("Kingdoms", "king") == pytest.approx(float(cosine), rel=1e-5)
    similarity = dl("similarity", "kingdoms", "king", "--run", trained, "--json")
    assert json.loads(similarity.stdout)["cosine"] == pytest.approx(float(cosine), rel=1e-5)
    assert dl("analogy", "kingdoms", "man", "woman", "--run", trained).exit_code == 0
    assert run.analogy("kingdoms", "man", "woman", top=2)


def test_an_oov_word_without_ngrams_is_exit_2_naming_it(tmp_path):
    run = fake_run(Path("runs/ft"), "word2vec", 1_000)
    words, dim = ["where", "there"], 4
    wv = SubwordVectors(words, np.eye(2, dim, dtype=np.float32), np.ones((9, dim), np.float32), 5, 6)
    save_word2vec_format(wv, run / "vectors.bin", binary=True)
    np.save(run / "ngrams.npy", wv.ngram_vectors)
    (run / "subwords.json").write_text(json.dumps({"min_n": 5, "max_n": 6, "buckets": 9}))
    assert dl("similar", "wherever", "--run", run).exit_code == 0  # composed from its n-grams
    assert_exit_2(dl("similar", "ab", "--run", run), "'ab' is not in the vocabulary", "n-gram of 5 to 6")
    assert_exit_2(dl("similarity", "where", "ab", "--run", run), "'ab'")
    # a word2vec-format file alone has no n-grams: an unknown word is an error, as before
    assert_exit_2(dl("similar", "wherever", "--vectors", run / "vectors.bin"), "'wherever' is not in the vocabulary")


@pytest.mark.parametrize(
    ("settings", "ngrams", "needle"),
    [
        ("not json", None, "is not a subword run's settings"),
        ('["min_n"]', None, "is not a subword run's settings"),
        ('{"max_n": 6}', None, "is not a subword run's settings"),
        ('{"min_n": 5, "max_n": 6}', b"not an npy file", "is not this run's n-gram matrix"),
        ('{"min_n": 5, "max_n": 6}', "pickled", "is not this run's n-gram matrix"),
        ('{"min_n": 5, "max_n": 6}', "narrow", "is not this run's n-gram matrix"),
        ('{"min_n": 5, "max_n": 6}', "missing", "ngrams.npy is missing"),
    ],
)
def test_a_subword_runs_damaged_side_files_are_exit_2(tmp_path, settings, ngrams, needle):
    run = fake_run(Path("runs/ft"), "word2vec", 1_000)
    save_word2vec_format(WordVectors(["where", "there"], np.eye(2, 4, dtype=np.float32)), run / "vectors.bin")
    (run / "subwords.json").write_text(settings)
    if ngrams == "pickled":  # an object array: np.load would need allow_pickle, which dl never gives
        np.save(run / "ngrams.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif ngrams == "narrow":
        np.save(run / "ngrams.npy", np.ones((9, 3), np.float32))
    elif ngrams != "missing":
        (run / "ngrams.npy").write_bytes(ngrams or np.ones(1).tobytes())
    assert_exit_2(dl("similar", "wherever", "--run", run), needle)


@needs_numba
def test_resume_with_one_worker_reproduces_the_uninterrupted_run(tmp_path):
    assert _train(tmp_path / "full").exit_code == 0
    assert _train(tmp_path / "part", "train.max_steps=3").exit_code == 0
    result = dl("train", "word2vec", "--resume", "--out", tmp_path / "part", "--quiet", *sets(*TINY, *SUBWORDS))
    assert result.exit_code == 0, result.output
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert set(full) == {"in_vectors", "out_vectors", "ngram_vectors"}
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # the n-gram rows keep their meaning: a resume cannot rehash them into another number of buckets
    rehashed = dl(
        "train", "word2vec", "--resume", "--out", tmp_path / "part", *sets(*TINY, *SUBWORDS, "model.buckets=10")
    )
    assert_exit_2(rehashed, "model.buckets: 5000 -> 10")


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["model.min_n=5", "model.max_n=4"], "model.min_n=5 is greater than model.max_n=4"),
        (["model.buckets=0"], "model.buckets"),
        (["model.min_n=0"], "model.min_n"),
    ],
)
def test_bad_subword_settings_are_exit_2(tmp_path, items, needle):
    result = dl("train", "word2vec", "--out", tmp_path / "r", *sets("model.subwords=true", *items))
    assert_exit_2(result, needle)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_continued_training_keeps_the_ngram_rows_and_their_settings(trained):
    from dlcli.api import load_config
    from dlcli.errors import DlError
    from dlcli.runtime import create_runtime
    from dlcli.tasks import word2vec

    start = checkpoint.load(trained / "checkpoints" / "last.pt")
    grown = [*TINY, *SUBWORDS, "data.planted_sentences=3500", "data.update_vocab=true"]
    _, cfg = load_config("word2vec", grown)
    job = word2vec.build(cfg, create_runtime(cfg.train, "cpu"), start=start)
    assert torch.equal(job.model.ngram_vectors.data, start.model["ngram_vectors"])
    for changed in ("model.buckets=4000", "model.min_n=2", "model.subwords=false"):
        _, cfg = load_config("word2vec", [*grown, changed])
        with pytest.raises(DlError, match=f"Cannot continue a run with {changed.split('=')[0]}="):
            word2vec.build(cfg, create_runtime(cfg.train, "cpu"), start=start)
