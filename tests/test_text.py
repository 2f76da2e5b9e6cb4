"""Tokenization and skip-gram pairs (`dl skipgrams`)."""

import json

import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data.text import sentences, skipgram_pairs, tokenize

SENTENCE = "The wide road shimmered in the hot sun."
WORDS = ["the", "wide", "road", "shimmered", "in", "the", "hot", "sun"]


def by_definition(words, window):
    """The sliding window written out: every pair (w_t, w_{t+j}) with 0 < |j| <= window inside the sentence."""
    return [
        (words[t], words[t + j])
        for t in range(len(words))
        for j in range(-window, window + 1)
        if j != 0 and 0 <= t + j < len(words)
    ]


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize(SENTENCE) == WORDS
    assert tokenize("Don't stop -- 42 times!") == ["don", "t", "stop", "times"]
    assert tokenize("Ein Mann fährt Fahrrad.") == ["ein", "mann", "fährt", "fahrrad"]


def test_window_2_by_hand():
    pairs = skipgram_pairs(WORDS, 2)
    assert pairs[:5] == [("the", "wide"), ("the", "road"), ("wide", "the"), ("wide", "road"), ("wide", "shimmered")]
    assert pairs[-2:] == [("sun", "the"), ("sun", "hot")]
    assert len(pairs) == 2 * (2 * 8 - 3)  # each of the 2*8-3 word pairs within distance 2, both ways


@pytest.mark.parametrize("window", [1, 2, 3, 10])
def test_pairs_equal_the_sliding_window_definition(window):
    assert skipgram_pairs(WORDS, window) == by_definition(WORDS, window)


def test_windows_do_not_cross_lines():
    pairs = [p for tokens in sentences("a b\n\nc d".splitlines()) for p in skipgram_pairs(tokens, 3)]
    assert pairs == [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")]


@pytest.mark.parametrize("window", [2, 3])
def test_dl_skipgrams_prints_the_pairs_in_text_order(window):
    result = CliRunner().invoke(app, ["skipgrams", SENTENCE, "--window", str(window), "--json"])
    assert result.exit_code == 0
    assert [tuple(p) for p in json.loads(result.stdout)] == by_definition(WORDS, window)


def test_dl_skipgrams_rejects_a_zero_window():
    result = CliRunner().invoke(app, ["skipgrams", SENTENCE, "--window", "0"])
    assert result.exit_code == 2


def test_read_sentences_streams_files_folders_and_gzip(tmp_path):
    import gzip

    from dlcli.data.text import read_sentences

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("The king.\n\nA queen!\n")
    with gzip.open(tmp_path / "corpus" / "b.gz", "wt", encoding="utf-8") as f:
        f.write("the man\n")
    (tmp_path / "corpus" / "c.txt").write_bytes(b"bad \xff bytes\n")
    assert list(read_sentences(tmp_path / "corpus")) == [
        ["the", "king"],
        ["a", "queen"],
        ["the", "man"],
        ["bad", "bytes"],
    ]
    assert list(read_sentences(tmp_path / "corpus" / "a.txt")) == [["the", "king"], ["a", "queen"]]


def test_missing_or_empty_corpus_is_a_clear_error(tmp_path):
    from dlcli.data.corpus import encode
    from dlcli.data.text import read_sentences
    from dlcli.errors import DlError

    with pytest.raises(DlError, match="does not exist"):
        list(read_sentences(tmp_path / "nope.txt"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    with pytest.raises(DlError, match="holds no text files"):
        list(read_sentences(tmp_path / "images"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DlError, match="no words"):
        encode(read_sentences(tmp_path / "empty.txt"))
