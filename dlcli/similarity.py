"""Word similarity: the cosine of two words, and Spearman's rho against human judgements.

    dl similarity cat dog --run runs/word2vec                        # one cosine
    dl similarity --eval ../shared/datasets/wordsim/EN-RG-65.txt     # rho over a pairs file

A pairs file holds `word1 word2 score` lines (tab- or space-separated, '#' starts a comment),
as WordSim-353, SimLex-999, RG-65 and MTurk-771 are distributed. The evaluation counts as
gensim's KeyedVectors.evaluate_word_pairs does (restrict_vocab=300000, case_insensitive=True,
dummy4unknown=False): a pair with a word outside the first `restrict` words is skipped and
counted, words compare uppercased and a word with several case variants uses its first (most
frequent) row. Unlike gensim, which logs and skips a line it cannot parse, a malformed line is
an error naming the file and line: a silently shorter benchmark gives a wrong number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.errors import DlError
from dlcli.vectors import SubwordVectors, WordVectors

RESTRICT = 300_000  # gensim's restrict_vocab default


@dataclass
class Pair:
    first: str
    second: str
    score: float  # the human judgement
    line: int  # 1-based, for messages


def cosine(wv: WordVectors, a: str, b: str) -> float:
    """The cosine of two words' vectors (gensim's similarity); an unknown word is a DlError (a subword
    run's: one without a character n-gram)."""
    return float(wv.query(a)[1] @ wv.query(b)[1])


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a `word1 word2 score` file; a malformed line is a DlError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DlError(f"Pairs file {path} does not exist (lines 'word1 word2 score', as WordSim-353).")
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split()  # tabs or spaces; also strips the \r of CRLF files
            if len(fields) != 3:
                raise DlError(f"{path} line {line_no}: expected 3 fields 'word1 word2 score', got {len(fields)}.")
            try:
                score = float(fields[2])
            except ValueError:
                raise DlError(f"{path} line {line_no}: the score {fields[2]!r} is not a number.") from None
            if not math.isfinite(score):
                raise DlError(f"{path} line {line_no}: the score {fields[2]!r} is not a finite number.")
            pairs.append(Pair(fields[0], fields[1], score, line_no))
    if not pairs:
        raise DlError(f"{path} holds no word pairs (lines 'word1 word2 score').")
    return pairs


def evaluate_word_pairs(
    wv: WordVectors, path: Path, restrict: int | None = RESTRICT, compose_unknown: bool = False
) -> dict:
    """Spearman's rho (and Pearson's r) of the pairs' cosines against their human scores.

    compose_unknown (a subword run's SubwordVectors only): a word outside the vocabulary gets its
    vector from its character n-grams, as fastText scores rare-word sets, so every pair with an
    n-gram counts; a word of the vocabulary keeps its own row at any rank (restrict is not applied).

    Returns {"spearman", "pearson", "pairs": pairs scored, "skipped": pairs with an unknown
    word, "oov_ratio": skipped / all pairs in percent (gensim's oov_ratio)}.
    """
    pairs = read_pairs(path)
    if compose_unknown and not isinstance(wv, SubwordVectors):
        raise DlError("Composing unknown words needs a subword run's vectors (model.subwords: true).")
    n = len(wv) if restrict is None or compose_unknown else min(restrict, len(wv))
    first: dict[str, int] = {}
    for i, word in enumerate(wv.words[:n]):
        first.setdefault(word.upper(), i)  # the first case variant, as gensim's reversed() dict keeps it
    units: dict[str, np.ndarray | None] = {}  # each word's unit vector, None when it has none

    def unit(word: str) -> np.ndarray | None:
        if word not in units:
            row = first.get(word.upper())
            units[word] = wv.unit[row] if row is not None else _composed_unit(wv, word) if compose_unknown else None
        return units[word]

    known = [(unit(p.first), unit(p.second), p.score) for p in pairs]
    known = [(a, b, score) for a, b, score in known if a is not None and b is not None]
    if not known:
        raise DlError(f"{path}: no pair has both words among the {n} words searched; nothing to score.")
    model = np.array([float(a @ b) for a, b, _ in known], dtype=np.float64)
    human = np.array([s for _, _, s in known], dtype=np.float64)
    skipped = len(pairs) - len(known)
    return {
        "spearman": _finite_or_none(spearman(human, model)),
        "pearson": _finite_or_none(pearson(human, model)),
        "pairs": len(known),
        "skipped": skipped,
        "oov_ratio": 100.0 * skipped / len(pairs),
    }


def _composed_unit(wv: SubwordVectors, word: str) -> np.ndarray | None:
    """The unit vector of a word outside the vocabulary, from its n-grams; None when it has none."""
    try:
        return wv.query(word)[1]
    except DlError:  # no character n-gram of min_n..max_n: skipped and counted, as an unknown word
        return None


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a correlation that is undefined (constant scores) is null."""
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- correlations


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (scipy.stats.rankdata's 'average')."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # a run of equal values starts where the value changes
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # the mean of ranks starts+1 .. ends
    result = np.empty(len(values), dtype=np.float64)
    result[order] = np.repeat(mean_rank, ends - starts)
    return result


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; NaN when either side is constant (as scipy, which also warns)."""
    dx, dy = np.asarray(x, np.float64) - np.mean(x), np.asarray(y, np.float64) - np.mean(y)
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denominator if denominator > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks (scipy.stats.spearmanr's statistic)."""
    return pearson(ranks(x), ranks(y))
