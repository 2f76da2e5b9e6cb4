"""Data for many-to-one sequence classification: generated bracket strings, and TSV files.

    python -m dlcli.data.brackets 0 1000 > brackets.tsv    # 1000 labelled strings of seed 0

The built-in task: is a string over ()[]{} (with some filler letters) balanced and properly
nested? "([]{x})" is (label 1), "([)]" is not (label 0). Answering needs order and memory: a
stack of the open brackets, which an RNN must learn to keep in its state.

The negatives are near misses of positives, so that counting cannot answer:

* cross:  swap two different brackets,           "([])" -> "([)]"   every count still matches;
* move:   take one bracket out and put it back elsewhere, "()[]" -> ")([]"   likewise;
* retype: turn a bracket into another of its direction,    "([])" -> "([})"   as many open as close;
* flip:   turn an opening bracket into a closing one or back (the only easy kind, 5 %).

So a bag of characters sits near chance: the rule "as many opening as closing brackets" calls
about 93 % of the negatives balanced, per-bracket-type counts match on about 80 % of them, and
the best counting rule ("each type opens as often as it closes") scores about 60 % overall.
Negatives keep the length of the positive they come from, so length gives nothing away either.

Real data for the same task is any `text<TAB>label` file (`read_tsv_labels`).

Determinism: string i is a pure function of (seed, i, min_len, max_len); string i is a
positive when i is even, so the classes are balanced 50/50 in every prefix of even length.
"""

from __future__ import annotations

import random
import string
import zlib
from pathlib import Path

from dlcli.data.textfile import open_text
from dlcli.errors import DlError

PAIRS = {"(": ")", "[": "]", "{": "}"}
OPENERS = tuple(PAIRS)
CLOSERS = tuple(PAIRS.values())
_OPENER_OF = {c: o for o, c in PAIRS.items()}
FILLER = string.ascii_lowercase

_FILLER_SHARE = 0.5  # of the strings that get filler letters at all
_MAX_FILLER = 0.25  # the most of a string's length that is filler
# Mostly the edits that keep every character count: those are the ones counting cannot see.
_CORRUPTIONS = (("cross", 0.45), ("move", 0.4), ("retype", 0.1), ("flip", 0.05))


def is_balanced(text: str) -> bool:
    """True when every bracket closes the last one still open, with the same type, and none stays open."""
    stack = []
    for ch in text:
        if ch in PAIRS:
            stack.append(ch)
        elif ch in _OPENER_OF:
            if not stack or stack.pop() != _OPENER_OF[ch]:
                return False
    return not stack


def _balanced(rng: random.Random, n_brackets: int) -> list[str]:
    """A random properly nested string of `n_brackets` (even) brackets of random types.

    Opens with probability 1/2 unless the depth forces it: at depth 0 it must open, and when the
    positions left equal the depth it must close. Depth then wanders like a random walk (about
    sqrt(n) deep), so the model needs a stack several entries deep.
    """
    out, stack = [], []
    for pos in range(n_brackets):
        left = n_brackets - pos
        if not stack or (len(stack) < left and rng.random() < 0.5):
            stack.append(rng.choice(OPENERS))
            out.append(stack[-1])
        else:
            out.append(PAIRS[stack.pop()])
    return out


def _positive(rng: random.Random, length: int) -> str:
    """A balanced string of exactly `length` characters: brackets, plus filler letters half the time."""
    n_filler = rng.randint(0, int(length * _MAX_FILLER)) if rng.random() < _FILLER_SHARE else 0
    if (length - n_filler) % 2:  # brackets come in pairs
        n_filler += 1
    chars = _balanced(rng, length - n_filler)
    for _ in range(n_filler):
        chars.insert(rng.randint(0, len(chars)), rng.choice(FILLER))
    return "".join(chars)


def _corrupt(rng: random.Random, text: str, kind: str) -> str:
    """One near-miss edit of the brackets of `text`; the length stays the same."""
    chars = list(text)
    at = [i for i, ch in enumerate(chars) if ch in PAIRS or ch in _OPENER_OF]
    i = rng.choice(at)
    if kind == "cross":
        j = rng.choice(at)
        chars[i], chars[j] = chars[j], chars[i]
    elif kind == "move":
        ch = chars.pop(i)
        chars.insert(rng.randint(0, len(chars)), ch)
    elif kind == "retype":
        same_direction = OPENERS if chars[i] in PAIRS else CLOSERS
        chars[i] = rng.choice([c for c in same_direction if c != chars[i]])
    else:  # flip: the counts of opening and closing brackets no longer match
        chars[i] = PAIRS[chars[i]] if chars[i] in PAIRS else _OPENER_OF[chars[i]]
    return "".join(chars)


def _negative(rng: random.Random, length: int) -> str:
    """A positive with one near-miss edit, redrawn until the edit really unbalances it."""
    kinds, weights = zip(*_CORRUPTIONS)
    text = _positive(rng, length)
    while True:
        wrong = _corrupt(rng, text, rng.choices(kinds, weights)[0])
        if not is_balanced(wrong):  # a swap of two equal brackets, "()()" -> "(())" by a move, ...
            return wrong


def bracket_sequences(seed: int, n: int, min_len: int = 2, max_len: int = 32) -> list[tuple[str, int]]:
    """`n` (string, label) pairs, label 1 when balanced; lengths uniform in [min_len, max_len] characters.

    Even i gives a positive and odd i a negative, so the classes are exactly balanced for even n.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    out = []
    for i in range(n):
        rng = random.Random(f"brackets-{seed}-{i}")  # str seeds hash stably (sha512), unlike tuples
        length = rng.randint(min_len, max_len)
        out.append((_positive(rng, length), 1) if i % 2 == 0 else (_negative(rng, length), 0))
    return out


def read_tsv_labels(path: Path | str) -> list[tuple[str, str]]:
    """(text, label) from a UTF-8 `text<TAB>label` file (plain or .gz), one example a line.

    The label is what follows the last tab, so the text may hold tabs. Blank lines are skipped;
    bytes that are not UTF-8 become U+FFFD (with a warning). There is no header line: a first line `text<TAB>label`
    would be read as an example of the label "label".
    """
    path = Path(path)
    if not path.is_file():
        raise DlError(f"Labelled text file {path} does not exist. Point data.path at a text<TAB>label file.")
    rows = []
    try:
        with open_text(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                text, tab, label = line.rstrip("\r\n").rpartition("\t")
                if not tab:
                    raise DlError(
                        f"{path}:{number}: no tab in this line: {line.strip()[:80]!r}. "
                        "Each line must be text<TAB>label."
                    )
                if not label.strip():
                    raise DlError(
                        f"{path}:{number}: the label after the tab is empty. Each line must be text<TAB>label."
                    )
                rows.append((text, label.strip()))
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz
        raise DlError(f"Cannot read {path}: {e}.") from e
    if not rows:
        raise DlError(f"{path} holds no examples. Each line must be text<TAB>label.")
    return rows


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    seed, n = (int(args[0]) if args else 0), (int(args[1]) if len(args) > 1 else 1000)
    sys.stdout.writelines(f"{text}\t{label}\n" for text, label in bracket_sequences(seed, n))
