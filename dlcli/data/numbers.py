"""The translation task's built-in data: English number words -> German number words, 0-999999.

    python -m dlcli.data.numbers 0 5      # five pairs from seed 0, tab-separated

English is written without "and" or hyphens ("three hundred twenty one", "one thousand one");
German as one compound word, units before tens ("einundzwanzig"), so a model has to reorder:

    321    three hundred twenty one          dreihunderteinundzwanzig
    1100   one thousand one hundred          eintausendeinhundert
    17406  seventeen thousand four hundred six   siebzehntausendvierhundertsechs
"""

from __future__ import annotations

import random
import sys

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# German 1-19 as they stand inside a compound ("ein" in einhundert, einundzwanzig); eins alone
_DE_UNITS = (
    "null ein zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn "
    "sechzehn siebzehn achtzehn neunzehn"
).split()
_DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
LIMIT = 999_999


def _check(n: int) -> None:
    if not 0 <= n <= LIMIT:
        raise ValueError(f"number words are defined for 0..{LIMIT}, not {n}")


def english(n: int) -> str:
    _check(n)
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    words = (_en_below_1000(thousands) + ["thousand"] if thousands else []) + _en_below_1000(rest)
    return " ".join(words)


def _en_below_1000(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [_EN_UNITS[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, units = divmod(rest, 10)
        words += [_EN_TENS[tens]] + ([_EN_UNITS[units]] if units else [])
    elif rest:
        words.append(_EN_UNITS[rest])
    return words


def german(n: int) -> str:
    _check(n)
    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    word = (_de_below_1000(thousands) + "tausend" if thousands else "") + _de_below_1000(rest)
    # a trailing 1 is "eins" (einhunderteins, eintausendeins); "ein" only inside the compound
    return word + "s" if rest % 100 == 1 else word


def _de_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    word = _DE_UNITS[hundreds] + "hundert" if hundreds else ""
    if rest >= 20:
        tens, units = divmod(rest, 10)
        word += (_DE_UNITS[units] + "und" if units else "") + _DE_TENS[tens]
    elif rest:
        word += _DE_UNITS[rest]
    return word


def number_pairs(seed: int, n: int) -> list[tuple[str, str]]:
    """n (English, German) pairs; the number of digits is uniform in 1..6, so short numbers are not rare."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        digits = rng.randint(1, 6)
        value = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
        pairs.append((english(value), german(value)))
    return pairs


if __name__ == "__main__":
    for en, de in number_pairs(int(sys.argv[1]), int(sys.argv[2])):
        print(f"{en}\t{de}")
