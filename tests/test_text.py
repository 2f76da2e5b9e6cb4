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
    return [(words[t], words[t + j]) for t in range(len(words))
            for j in range(-window, window + 1) if j != 0 and 0 <= t + j < len(words)]


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
    pairs = [p for tokens in sentences("a b\n\nc d") for p in skipgram_pairs(tokens, 3)]
    assert pairs == [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")]


@pytest.mark.parametrize("window", [2, 3])
def test_dl_skipgrams_prints_the_pairs_in_text_order(window):
    result = CliRunner().invoke(app, ["skipgrams", SENTENCE, "--window", str(window), "--json"])
    assert result.exit_code == 0
    assert [tuple(p) for p in json.loads(result.stdout)] == by_definition(WORDS, window)


def test_dl_skipgrams_rejects_a_zero_window():
    result = CliRunner().invoke(app, ["skipgrams", SENTENCE, "--window", "0"])
    assert result.exit_code == 2
