"""Tests for the tagging data (dlcli.data.tagged): the CoNLL-U reader and the generated corpus."""

from __future__ import annotations

import gzip
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from dlcli.data.tagged import UPOS_TAGS, TaggedSentence, generated_tagged, read_conllu, to_conllu
from dlcli.errors import DlError


def token(i: object, form: str, upos: str = "NOUN", xpos: str = "NN") -> str:
    return "\t".join([str(i), form, form.lower(), upos, xpos, "_", "0", "root", "_", "_"]) + "\n"


# Line numbers matter: the error tests below name them.
SAMPLE = (
    "# newdoc id = test\n"  # 1
    "# sent_id = 1\n"  # 2
    "# text = I don't know.\n"  # 3
    + token(1, "I", "PRON", "PRP")  # 4
    + token("2-3", "don't", "_", "_")  # 5  multiword token: skipped
    + token(2, "do", "AUX", "VBP")  # 6
    + token(3, "n't", "PART", "RB")  # 7
    + token(4, "know", "VERB", "VB")  # 8
    + token(4.1, "knows", "VERB", "_")  # 9  empty node: skipped
    + token(5, ".", "PUNCT", ".")  # 10
    + "\n"  # 11
    + "# sent_id = 2\n"  # 12
    + token(1, "Books", "NOUN", "NNS")  # 13
    + token(2, "Fly", "VERB", "_")  # 14 xpos "_" stays "_"
)
WORDS = [["I", "do", "n't", "know", "."], ["Books", "Fly"]]
UPOS = [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["NOUN", "VERB"]]


def write(tmp_path: Path, text: str, name: str = "x.conllu") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- read_conllu


def test_reads_words_and_upos_skipping_multiword_tokens_and_empty_nodes(tmp_path: Path) -> None:
    sentences = read_conllu(write(tmp_path, SAMPLE))
    assert [s.words for s in sentences] == WORDS
    assert [s.tags for s in sentences] == UPOS
    assert sentences[0] == (WORDS[0], UPOS[0])  # a TaggedSentence is a plain tuple too


def test_xpos_column_and_a_missing_tag_reads_as_underscore(tmp_path: Path) -> None:
    sentences = read_conllu(write(tmp_path, SAMPLE), column="xpos")
    assert [s.tags for s in sentences] == [["PRP", "VBP", "RB", "VB", "."], ["NNS", "_"]]


def test_gzip_crlf_blank_line_runs_and_a_byte_order_mark(tmp_path: Path) -> None:
    text = "\ufeff" + SAMPLE.replace("\n\n", "\n\n\n\n").replace("\n", "\r\n") + "\r\n\r\n"
    path = tmp_path / "x.conllu.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)
    assert [s.words for s in read_conllu(path)] == WORDS


def test_roundtrip_of_generated_sentences(tmp_path: Path) -> None:
    sentences = generated_tagged(seed=0, n_sentences=50)
    assert read_conllu(write(tmp_path, to_conllu(sentences))) == sentences


@pytest.mark.parametrize(
    ("broken", "line", "what"),
    [
        ("4\tknow\tknow\tVERB\n", 8, "10 tab-separated fields, this one has 4"),
        ("this line has no tabs at all\n", 8, "has 1"),
        (token("x4", "know"), 8, "not a valid ID"),
        (token("_", "know"), 8, "without an ID"),
    ],
)
def test_a_broken_line_is_named_with_file_and_line(tmp_path: Path, broken: str, line: int, what: str) -> None:
    lines = SAMPLE.splitlines(keepends=True)
    lines[line - 1] = broken
    path = write(tmp_path, "".join(lines))
    with pytest.raises(DlError, match=rf"{re.escape(str(path))}:{line}: .*{what}"):
        read_conllu(path)


def test_a_broken_line_in_a_later_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE + "\n# sent_id = 3\n" + token(1, "Fine") + token("1-x", "oops"))
    with pytest.raises(DlError, match=r"x\.conllu:18: .*not a valid ID"):
        read_conllu(path)


def test_missing_file_bad_column_empty_column_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DlError, match="nope.conllu does not exist"):
        read_conllu(tmp_path / "nope.conllu")
    with pytest.raises(DlError, match="choose one of upos, xpos"):
        read_conllu(write(tmp_path, SAMPLE), column="deprel")
    no_xpos = "".join(token(i, w, "NOUN", "_") for i, w in enumerate(["a", "b"], 1))
    with pytest.raises(DlError, match=r"xpos column of .*is empty.*\(upos\)"):
        read_conllu(write(tmp_path, no_xpos), column="xpos")
    with pytest.raises(DlError, match="holds no sentences"):
        read_conllu(write(tmp_path, "# only a comment\n\n"))


def test_corrupt_gzip_is_a_dl_error(tmp_path: Path) -> None:
    path = tmp_path / "x.conllu.gz"
    path.write_bytes(gzip.compress(SAMPLE.encode())[:40])
    with pytest.raises(DlError, match="Cannot read"):
        read_conllu(path)


def test_conllu_plus_global_columns(tmp_path: Path) -> None:
    text = "# global.columns = ID FORM UPOS\n1\tHi\tINTJ\n2\t!\tPUNCT\n"
    assert read_conllu(write(tmp_path, text)) == [(["Hi", "!"], ["INTJ", "PUNCT"])]
    with pytest.raises(DlError, match="no xpos column"):
        read_conllu(write(tmp_path, text), column="xpos")


# ------------------------------------------------------------------------------ generated corpus


@pytest.fixture(scope="module")
def corpus() -> list[TaggedSentence]:
    return generated_tagged(seed=0, n_sentences=3000)


def test_same_seed_same_corpus_and_prefixes_are_stable() -> None:
    assert generated_tagged(seed=3, n_sentences=200) == generated_tagged(seed=3, n_sentences=200)
    assert generated_tagged(seed=3, n_sentences=200) != generated_tagged(seed=4, n_sentences=200)
    assert generated_tagged(seed=1, n_sentences=300)[:100] == generated_tagged(seed=1, n_sentences=100)
    state = random.getstate()
    generated_tagged(seed=0, n_sentences=10)
    assert random.getstate() == state


def test_sentences_look_like_text(corpus: list[TaggedSentence]) -> None:
    for words, tags in corpus:
        assert 5 <= len(words) <= 20 and len(words) == len(tags)
        assert words[0][0].isupper() or words[0][0].isdigit()
        assert (words[-1], tags[-1]) == (".", "PUNCT")
        assert all(w and " " not in w for w in words)
    tags = Counter(t for _, ts in corpus for t in ts)
    assert set(tags) <= set(UPOS_TAGS) and len(tags) >= 14
    assert not any(w == "a" and nxt[0] in "aeiou" for ws, _ in corpus for w, nxt in zip(ws, ws[1:]))


def test_ambiguous_words_take_both_tags(corpus: list[TaggedSentence]) -> None:
    seen = defaultdict(set)
    for words, tags in corpus:
        for w, t in zip(words, tags):
            seen[w.lower()].add(t)
    for word in ("book", "watch", "play", "train", "runs", "flies"):
        assert {"NOUN", "VERB"} <= seen[word], word
    assert {"AUX", "NOUN"} <= seen["can"]
    assert {"DET", "SCONJ", "PRON"} <= seen["that"]
    assert {"ADP", "PART"} <= seen["to"]


def test_context_is_needed_and_rare_words_appear_unseen(corpus: list[TaggedSentence]) -> None:
    """The per-word majority tag falls clearly short; adding the previous word recovers much of it."""
    train, test = corpus[:2400], corpus[2400:]
    unigram, bigram, overall = defaultdict(Counter), defaultdict(Counter), Counter()
    for words, tags in train:
        for prev, w, t in zip(["<s>"] + words, words, tags):
            unigram[w][t] += 1
            bigram[prev, w][t] += 1
            overall[t] += 1
    default = overall.most_common(1)[0][0]
    n = right_unigram = right_bigram = unseen = 0
    for words, tags in test:
        for prev, w, t in zip(["<s>"] + words, words, tags):
            guess = unigram[w].most_common(1)[0][0] if w in unigram else default
            right_unigram += guess == t
            right_bigram += (bigram[prev, w].most_common(1)[0][0] if (prev, w) in bigram else guess) == t
            unseen += w not in unigram
            n += 1
    assert right_unigram / n < 0.93
    assert right_bigram / n > right_unigram / n + 0.02
    assert 0.01 < unseen / n < 0.1


def test_negative_size_is_an_error() -> None:
    with pytest.raises(ValueError):
        generated_tagged(seed=0, n_sentences=-1)
