"""Text for the language tasks: tokenization and the skip-gram pairs word2vec trains on.

    dl skipgrams "The wide road shimmered in the hot sun." --window 2

Tokens are lowercased runs of letters, as in text8 (punctuation and digits are separators),
so "Don't stop." gives ["don", "t", "stop"]. Each line is a sentence: context windows never
cross a line break, as in word2vec's own reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Letters of any script (\w without digits and underscore): German and French words stay whole.
_WORD = re.compile(r"[^\W\d_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased letter runs: 'The wide road, shimmered!' -> ['the', 'wide', 'road', 'shimmered']."""
    return _WORD.findall(text.lower())


def sentences(text: str) -> Iterator[list[str]]:
    """One token list per non-empty line."""
    for line in text.splitlines():
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
