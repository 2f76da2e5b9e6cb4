"""The encoded corpus (ids + sentence bounds, cached) and the vocabulary built from it."""

import math

import numpy as np
import pytest

from dlcli.data.corpus import EncodedCorpus, Vocabulary, cached_encode, encode

SENTENCES = [["the", "king", "the"], ["a", "queen", "the", "king"], ["a"]]


def test_encode_keeps_order_sentences_and_counts(tmp_path):
    for folder in (None, tmp_path / "cache"):
        corpus = encode(iter(SENTENCES), folder)
        assert corpus.words == ["the", "king", "a", "queen"]
        assert corpus.ids.tolist() == [0, 1, 0, 2, 3, 0, 1, 2]
        assert corpus.bounds.tolist() == [0, 3, 7, 8]
        assert corpus.counts.tolist() == [3, 2, 2, 1]
        assert corpus.n_words == 8 and corpus.n_sentences == 3


def test_cached_encode_reads_back_and_notices_a_changed_file(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("The king, the queen.\n\nA king!\n")
    first = cached_encode(text, tmp_path / "cache", r"[a-z]+")
    assert first.words == ["the", "king", "queen", "a"] and first.bounds.tolist() == [0, 4, 6]
    again = cached_encode(text, tmp_path / "cache", r"[a-z]+")
    assert again.ids.tolist() == first.ids.tolist() and again.words == first.words
    assert len(list((tmp_path / "cache").iterdir())) == 1
    text.write_text("Kings and queens\n")
    assert cached_encode(text, tmp_path / "cache", r"[a-z]+").words == ["kings", "and", "queens"]


def test_vocabulary_min_count_max_size_and_remap():
    corpus = encode(iter(SENTENCES))
    vocab = Vocabulary.from_corpus(corpus, min_count=2, max_vocab_size=None)
    assert vocab.words == ["the", "king", "a"] and vocab.counts.tolist() == [3, 2, 2]
    assert vocab.remap.tolist() == [0, 1, 2, -1]  # queen (count 1) dropped
    assert Vocabulary.from_corpus(corpus, min_count=1, max_vocab_size=2).words == ["the", "king"]


def test_vocabulary_ties_keep_first_seen_order():
    corpus = EncodedCorpus(np.array([0, 1, 2], np.int32), np.array([0, 3]), ["b", "a", "c"], np.array([5, 7, 5]))
    assert Vocabulary.from_corpus(corpus, 1, None).words == ["a", "b", "c"]


def test_no_word_above_min_count_is_a_clear_error():
    from dlcli.errors import DlError

    with pytest.raises(DlError, match="min_count"):
        Vocabulary.from_corpus(encode(iter(SENTENCES)), min_count=10, max_vocab_size=None)


def test_subsampling_matches_the_word2vec_formula():
    vocab = Vocabulary(["the", "king", "rare"], np.array([9000, 900, 100]), np.arange(3, dtype=np.int32))
    sample = 1e-2
    threshold = sample * 10_000  # 100: 'rare' (count 100) sits right at it
    expected = [min(1.0, (math.sqrt(c / threshold) + 1) * threshold / c) for c in (9000, 900, 100)]
    assert vocab.keep_probabilities(sample).tolist() == pytest.approx(expected)
    assert expected[0] < 0.5 and expected[2] == 1.0  # frequent words are dropped more, rare ones kept
    assert vocab.keep_probabilities(0).tolist() == [1.0, 1.0, 1.0]


def test_long_lines_become_sentences_of_at_most_10000_words(tmp_path):
    from dlcli.data.text import read_sentences

    (tmp_path / "one_line.txt").write_text("word " * 25_000)  # text8 is one 100 MB line
    corpus = encode(read_sentences(tmp_path / "one_line.txt"))
    assert corpus.n_words == 25_000 and corpus.bounds.tolist() == [0, 10_000, 20_000, 25_000]


def test_bounded_lines_cut_huge_lines_at_spaces():
    import io

    from dlcli.data.text import _bounded_lines

    text = "ab cd ef\n" + "xyz " * 10 + "\nlast"
    lines = list(_bounded_lines(io.StringIO(text), limit=8))
    assert "".join(lines).split() == text.split()
    assert all(len(line) <= 16 for line in lines)
