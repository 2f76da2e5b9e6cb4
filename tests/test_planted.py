"""Tests for the word2vec task's built-in corpus with planted analogies (dlcli.data.planted)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from dlcli.data import planted
from dlcli.data.planted import planted_questions, planted_sentences


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return planted_sentences(seed=0)


@pytest.fixture(scope="module")
def counts(corpus: list[str]) -> Counter[str]:
    return Counter(word for line in corpus for word in line.split())


def question_words() -> set[str]:
    return {word for line in planted_questions() if not line.startswith(":") for word in line.split()}


def test_same_seed_same_corpus_other_seed_other_corpus() -> None:
    assert planted_sentences(seed=3, n_sentences=500) == planted_sentences(seed=3, n_sentences=500)
    assert planted_sentences(seed=3, n_sentences=500) != planted_sentences(seed=4, n_sentences=500)


def test_sentence_i_does_not_depend_on_the_length() -> None:
    assert planted_sentences(seed=1, n_sentences=1000)[:300] == planted_sentences(seed=1, n_sentences=300)


def test_does_not_touch_the_global_random_state() -> None:
    import random

    state = random.getstate()
    planted_sentences(seed=0, n_sentences=100)
    assert random.getstate() == state


def test_lines_are_text8_tokens(corpus: list[str]) -> None:
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)+", line) for line in corpus)


def test_default_size(corpus: list[str], counts: Counter[str]) -> None:
    assert len(corpus) == planted.DEFAULT_SENTENCES
    assert 300_000 <= sum(counts.values()) <= 1_000_000


def test_every_planted_word_is_frequent(counts: Counter[str]) -> None:
    rare = {word: counts[word] for word in question_words() if counts[word] < 100}
    assert not rare


def test_questions_format_and_sections() -> None:
    questions = planted_questions()
    assert [line for line in questions if line.startswith(":")] == [": family", ": capital", ": plural"]
    assert all(len(line.split()) == 4 for line in questions if not line.startswith(":"))
    for expected in ("man woman king queen", "paris france berlin germany", "king kings queen queens"):
        assert expected in questions


def test_questions_use_only_words_of_the_corpus(counts: Counter[str]) -> None:
    assert question_words() <= set(counts)


def test_each_context_belongs_to_one_relation() -> None:
    """A context shared by two pairs would blur the offsets they should differ by."""
    pools = [role for _, _, role in planted._PEOPLE] + [ctx for _, _, ctx in planted._THINGS]
    pools += [(adjective, *landmarks) for _, _, adjective, landmarks in planted._NATIONS]
    pools += [planted._GENDER_ADJECTIVES[g] + planted._NAMES[g] for g in ("male", "female")]
    pools += [planted._COUNTRY_CONTEXTS, planted._CAPITAL_CONTEXTS, *planted._FILLER.values()]
    words = [word for pool in pools for word in pool]
    assert len(words) == len(set(words))
    assert not set(words) & question_words()


def test_negative_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_sentences"):
        planted_sentences(n_sentences=-1)


def test_gensim_skipgram_answers_queen() -> None:
    """The default recipe (skip-gram, negative sampling) on a small corpus: king - man + woman = queen."""
    gensim = pytest.importorskip("gensim")
    sentences = [line.split() for line in planted_sentences(seed=0, n_sentences=30_000)]
    model = gensim.models.Word2Vec(
        sentences=sentences,
        sg=1,
        vector_size=50,
        window=5,
        negative=5,
        sample=1e-3,
        min_count=5,
        epochs=5,
        workers=2,
        seed=0,
    )
    ((answer, _),) = model.wv.most_similar(positive=["king", "woman"], negative=["man"], topn=1)
    assert answer == "queen"
    ((answer, _),) = model.wv.most_similar(positive=["paris", "germany"], negative=["france"], topn=1)
    assert answer == "berlin"
