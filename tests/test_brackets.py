"""Tests for the sequence-classification data (dlcli.data.brackets): bracket strings and TSV files."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from dlcli.data.brackets import PAIRS, bracket_sequences, is_balanced, read_tsv_labels
from dlcli.errors import DlError

CLOSERS = set(PAIRS.values())


@pytest.mark.parametrize("text", ["", "()", "([]{})", "a(b[c]d)e", "{[()()]}[]", "xyz"])
def test_balanced(text: str) -> None:
    assert is_balanced(text)


@pytest.mark.parametrize("text", ["(", ")", ")(", "([)]", "(]", "(()", "{[}]", "a)b(c"])
def test_not_balanced(text: str) -> None:
    assert not is_balanced(text)


@pytest.fixture(scope="module")
def data() -> list[tuple[str, int]]:
    return bracket_sequences(seed=0, n=4000, min_len=2, max_len=40)


def test_labels_are_right_and_balanced_50_50(data: list[tuple[str, int]]) -> None:
    assert all(label == int(is_balanced(text)) for text, label in data)
    assert sum(label for _, label in data) == len(data) // 2


def test_lengths_and_alphabet(data: list[tuple[str, int]]) -> None:
    assert all(2 <= len(text) <= 40 for text, _ in data)
    assert set("".join(text for text, _ in data)) <= set("()[]{}abcdefghijklmnopqrstuvwxyz")
    assert any(c.isalpha() for text, _ in data for c in text)  # some filler
    assert {len(t) for t, _ in bracket_sequences(seed=1, n=50, min_len=7, max_len=7)} == {7}
    assert {t for t, label in bracket_sequences(seed=1, n=50, min_len=2, max_len=2) if label} <= {"()", "[]", "{}"}


def test_negatives_fool_counting(data: list[tuple[str, int]]) -> None:
    """Counting characters cannot tell the classes apart: the negatives are near misses."""
    negatives = [text for text, label in data if label == 0]

    def same_count(text: str) -> bool:
        return sum(c in PAIRS for c in text) == sum(c in CLOSERS for c in text)

    def same_count_per_type(text: str) -> bool:
        return all(text.count(o) == text.count(c) for o, c in PAIRS.items())

    assert sum(map(same_count, negatives)) / len(negatives) > 0.8
    assert sum(map(same_count_per_type, negatives)) / len(negatives) > 0.6
    # Length gives nothing away either.
    mean = {k: sum(len(t) for t, label in data if label == k) / len(negatives) for k in (0, 1)}
    assert abs(mean[0] - mean[1]) < 1.0


def test_deterministic_prefix_stable_and_seeded() -> None:
    assert bracket_sequences(5, 100, 2, 20) == bracket_sequences(5, 100, 2, 20)
    assert bracket_sequences(5, 100, 2, 20) != bracket_sequences(6, 100, 2, 20)
    assert bracket_sequences(5, 300, 2, 20)[:100] == bracket_sequences(5, 100, 2, 20)
    state = random.getstate()
    bracket_sequences(0, 10, 2, 10)
    assert random.getstate() == state


@pytest.mark.parametrize(("min_len", "max_len"), [(1, 5), (6, 5)])
def test_bad_lengths(min_len: int, max_len: int) -> None:
    with pytest.raises(ValueError, match="min_len"):
        bracket_sequences(0, 10, min_len, max_len)


# ------------------------------------------------------------------------------------------- TSV


def test_read_tsv_labels(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_bytes(b"good film\tpos\r\n\n  \nbad\tfilm\tneg \n caf\xe9\t1\n")
    assert read_tsv_labels(path) == [("good film", "pos"), ("bad\tfilm", "neg"), (" caf\ufffd", "1")]
    gz = tmp_path / "x.tsv.gz"
    gz.write_bytes(gzip.compress("()\t1\n".encode()))
    assert read_tsv_labels(gz) == [("()", "1")]


def test_read_tsv_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(DlError, match="nope.tsv does not exist"):
        read_tsv_labels(tmp_path / "nope.tsv")
    path = tmp_path / "x.tsv"
    path.write_text("a\t1\n\nno tab here\n", encoding="utf-8")
    with pytest.raises(DlError, match=r"x\.tsv:3: no tab"):
        read_tsv_labels(path)
    path.write_text("a\t1\nb\t \n", encoding="utf-8")
    with pytest.raises(DlError, match=r"x\.tsv:2: the label .* is empty"):
        read_tsv_labels(path)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DlError, match="holds no examples"):
        read_tsv_labels(path)


def test_generated_data_roundtrips_through_tsv(tmp_path: Path) -> None:
    data = bracket_sequences(seed=2, n=20, min_len=2, max_len=12)
    path = tmp_path / "b.tsv"
    path.write_text("".join(f"{t}\t{label}\n" for t, label in data), encoding="utf-8")
    assert read_tsv_labels(path) == [(t, str(label)) for t, label in data]
