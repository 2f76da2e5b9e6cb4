"""Text for the language tasks: tokenization and the skip-gram pairs word2vec trains on.

    dl skipgrams "The wide road shimmered in the hot sun." --window 2

Tokens are lowercased runs of letters, as in text8 (punctuation and digits are separators),
so "Don't stop." gives ["don", "t", "stop"]. Each line is a sentence: context windows never
cross a line break, as in word2vec's own reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlcli.data.textfile import open_text
from dlcli.errors import DlError

# Letters of any script (\w without digits and underscore): German and French words stay whole.
WORD = re.compile(r"[^\W\d_]+")


def tokenize(text: str, pattern: re.Pattern = WORD) -> list[str]:
    """Lowercased letter runs: 'The wide road, shimmered!' -> ['the', 'wide', 'road', 'shimmered']."""
    return pattern.findall(text.lower())


def sentences(lines: Iterable[str], pattern: re.Pattern = WORD) -> Iterator[list[str]]:
    """One token list per line that has a word."""
    for line in lines:
        tokens = pattern.findall(line.lower())
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
        raise DlError(
            f"{path} holds no text files (.txt, .gz or no suffix). Point data.path at a corpus file or folder."
        )
    raise DlError(f"Corpus {path} does not exist. Set data.path to a text file or a folder of them.")


def read_sentences(path: Path, pattern: re.Pattern = WORD) -> Iterator[list[str]]:
    """Stream token lists line by line from a file or folder, plain or gzip: larger-than-memory corpora work."""
    return sentences_from_files(corpus_files(path), pattern)


def sentences_from_files(files: Iterable[Path], pattern: re.Pattern = WORD) -> Iterator[list[str]]:
    """Bytes that are not UTF-8 become U+FFFD (counted, one warning per file; see textfile.py),
    which the tokenizer then treats as a separator."""
    for file in files:
        with open_text(file) as f:
            yield from sentences(_bounded_lines(f), pattern)


def _bounded_lines(f, limit: int = 1 << 20) -> Iterator[str]:
    """Lines, with lines over `limit` characters cut at a space: text8 is one 100 MB line."""
    rest = ""
    while True:
        line = f.readline(limit)
        if not line:
            break
        if line.endswith("\n") or len(line) < limit:
            yield rest + line
            rest = ""
            continue
        cut = line.rfind(" ")
        if cut < 0:
            rest += line
            continue
        yield rest + line[:cut]
        rest = line[cut:]
    if rest:
        yield rest
