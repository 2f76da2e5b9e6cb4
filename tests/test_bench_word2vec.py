"""scripts/bench_word2vec.py scores gensim's vectors in dl's vocabulary order, so that the analogies'
restrict (the 30000 most frequent words) picks the same words, and the same questions, for both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dlcli.data.corpus import Vocabulary, encode

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_word2vec

    yield bench_word2vec
    for name in ("bench_word2vec", "benchlib"):
        sys.modules.pop(name, None)


def test_gensims_vocabulary_is_put_in_dls_order(bench) -> None:
    models = pytest.importorskip("gensim.models")
    # Ties on purpose: b, c, d, e all occur twice; gensim lists them last-seen first, dl first-seen first.
    sentences = [["a", "b", "c", "a"], ["d", "a", "e", "b"], ["c", "d", "e", "f"]]
    trainer = models.Word2Vec(vector_size=4, min_count=1, workers=1)
    trainer.build_vocab(sentences)
    gensim_words = list(trainer.wv.index_to_key)
    corpus = encode(sentences)
    dl_words = Vocabulary.from_corpus(corpus, min_count=1, max_vocab_size=None).words
    assert gensim_words != dl_words  # what the reordering is for

    order = bench.rows_in_order(gensim_words, dl_words)
    assert [gensim_words[i] for i in order] == dl_words


def test_vocabularies_of_other_words_are_refused(bench) -> None:
    with pytest.raises(SystemExit, match="not the same ones"):
        bench.rows_in_order(["a", "b"], ["a", "c"])
