"""The built-in translation pairs: English number words -> German compounds (DESIGN.md's spelling)."""

import pytest

from dlcli.data.numbers import english, german, number_pairs


@pytest.mark.parametrize(
    "n, en, de",
    [
        (0, "zero", "null"),
        (1, "one", "eins"),
        (12, "twelve", "zwölf"),
        (16, "sixteen", "sechzehn"),
        (17, "seventeen", "siebzehn"),
        (21, "twenty one", "einundzwanzig"),
        (30, "thirty", "dreißig"),
        (100, "one hundred", "einhundert"),
        (101, "one hundred one", "einhunderteins"),
        (321, "three hundred twenty one", "dreihunderteinundzwanzig"),
        (1000, "one thousand", "eintausend"),
        (1001, "one thousand one", "eintausendeins"),
        (1100, "one thousand one hundred", "eintausendeinhundert"),
        (17406, "seventeen thousand four hundred six", "siebzehntausendvierhundertsechs"),
        (21000, "twenty one thousand", "einundzwanzigtausend"),
        (101001, "one hundred one thousand one", "einhunderteintausendeins"),
        (
            999999,
            "nine hundred ninety nine thousand nine hundred ninety nine",
            "neunhundertneunundneunzigtausendneunhundertneunundneunzig",
        ),
    ],
)
def test_spelling(n, en, de):
    assert english(n) == en and german(n) == de


def test_every_number_has_distinct_words():
    seen_en, seen_de = set(), set()
    for n in range(0, 1_000_000, 7):
        seen_en.add(english(n))
        seen_de.add(german(n))
    assert len(seen_en) == len(seen_de) == len(range(0, 1_000_000, 7))


def test_pairs_are_seeded_and_cover_every_length():
    assert number_pairs(0, 50) == number_pairs(0, 50) != number_pairs(1, 50)
    lengths = {len(en.split()) for en, _ in number_pairs(0, 500)}
    assert min(lengths) == 1 and max(lengths) >= 8
    with pytest.raises(ValueError):
        english(1_000_000)
