"""Text for the language tasks: tokenization and the skip-gram pairs word2vec trains on.

    dl skipgrams "The wide road shimmered in the hot sun." --window 2

Tokens are lowercased runs of letters, as in text8 (punctuation and digits are separators),
so "Don't stop." gives ["don", "t", "stop"]. Each line is a sentence: context windows never
cross a line break, as in word2vec's own reader.
"""

from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dlcli.errors import DlError

# Letters of any script (\w without digits and underscore): German and French words stay whole.
_WORD = re.compile(r"[^\W\d_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased letter runs: 'The wide road, shimmered!' -> ['the', 'wide', 'road', 'shimmered']."""
    return _WORD.findall(text.lower())


def sentences(lines: Iterable[str]) -> Iterator[list[str]]:
    """One token list per line that has a word."""
    for line in lines:
        tokens = tokenize(line)
        if tokens:
            yield tokens


def skipgram_pairs(tokens: list[str], window: int) -> list[tuple[str, str]]:
    """(target, context) for every context word within `window` positions of each target, in text order.

    Mikolov et al. (2013): for target w_t the contexts are w_{t-c} .. w_{t+c} except w_t itself.
    This is the fixed window; training draws a reduced width per target (the dynamic window).
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    pairs = []
    for t, target in enumerate(tokens):
        for c in range(max(0, t - window), min(len(tokens), t + window + 1)):
            if c != t:
                pairs.append((target, tokens[c]))
    return pairs


# --------------------------------------------------------------------------- corpora and vocabularies


def corpus_files(path: Path) -> list[Path]:
    """A text file, or every .txt/.gz file in a folder (sorted), as word2vec corpora come."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".gz", ""))
        if files:
            return files
        raise DlError(f"{path} holds no text files (.txt, .gz or no suffix). Point data.path at a corpus file or folder.")
    raise DlError(f"Corpus {path} does not exist. Set data.path to a text file or a folder of them.")


def read_sentences(path: Path) -> Iterator[list[str]]:
    """Stream token lists line by line from a file or folder, plain or gzip: larger-than-memory corpora work.

    Bytes that are not UTF-8 are replaced (U+FFFD), which the tokenizer then treats as a separator.
    """
    for file in corpus_files(path):
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", errors="replace") as lines:
            yield from sentences(lines)


@dataclass
class Vocab:
    """Words by descending count (ties in first-seen order), with their counts."""

    words: list[str]
    counts: list[int]

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 5, max_vocab_size: int | None = None) -> Vocab:
        """Count every token, drop words seen fewer than min_count times, keep the max_vocab_size most frequent."""
        counter: Counter[str] = Counter()
        for tokens in sentences:
            counter.update(tokens)
        kept = [(word, count) for word, count in counter.most_common() if count >= min_count]
        if max_vocab_size is not None:
            kept = kept[:max_vocab_size]
        if not kept:
            raise DlError(
                f"The corpus has no word seen at least {min_count} times ({len(counter)} distinct words). "
                "Lower data.min_count or give a larger corpus."
            )
        return cls([w for w, _ in kept], [c for _, c in kept])

    def keep_probabilities(self, sample: float) -> list[float]:
        """Mikolov et al.'s subsampling of frequent words, as word2vec.c and gensim compute it.

        A word of count c in a corpus of N (in-vocabulary) words is kept with probability
        (sqrt(c / (sample N)) + 1) * (sample N) / c, capped at 1; sample = 0 keeps every word.
        """
        if sample <= 0:
            return [1.0] * len(self.counts)
        threshold = sample * sum(self.counts)
        return [min(1.0, (math.sqrt(c / threshold) + 1.0) * threshold / c) for c in self.counts]
