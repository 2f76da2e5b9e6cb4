"""The word2vec task's built-in corpus: generated sentences with planted analogies.

    python -m dlcli.data.planted 0 > planted.txt    # the corpus of seed 0, one sentence a line

Why it exists: word2vec needs a corpus that works offline, trains in seconds on a CPU, and
has answers known in advance, so that `king - man + woman` can be checked to give `queen`.

The trick is that words share contexts along independent axes, as the distributional
hypothesis behind the offsets needs (Mikolov et al. 2013, "Linguistic regularities"):

* a person noun takes the contexts of its role, shared by the male and the female word
  ("throne", "crown", "coronation" for king and queen), plus those of its gender, shared by
  every male or every female word ("he", "his", "bearded", "john" against "she", "her",
  "graceful", "mary"); so king = role(king) + male and queen = role(king) + female, and
  king - man + woman = role(king) - role(man) + role(man) + female = queen;
* a country and its capital share the contexts of their nation ("french", "seine", "louvre"),
  and each takes those of its kind ("nation", "borders" against "mayor", "downtown");
* a noun and its plural share the contexts of the noun, and each takes those of its number
  ("a", "this", "is", "he" against "many", "these", "are", "they").

Each sentence picks one of these subjects and fills a template whose slots draw independently
from the subject's axes and from a filler vocabulary (verbs, adjectives, places and function
words, so that frequent words exist for subsampling and negative sampling). Lines are text8
tokens: lowercase [a-z] words separated by single spaces, one sentence per line.

Determinism: the corpus is a pure function of (seed, n_sentences); sentence i depends only on
(seed, i), so a longer corpus starts with the shorter one. `planted_questions()` lists the
planted relations in the questions-words format of Mikolov et al.'s analogy test set.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from itertools import permutations

# About 9.6 words a sentence: 55,000 sentences are about 530,000 words, which a word2vec.c-speed
# trainer (300k-600k words/s) runs through 5 epochs of in 5-10 s on 2 cores. 20,000 sentences
# are already enough for king - man + woman = queen; 5 epochs on this size answer every question.
DEFAULT_SENTENCES = 55_000

# (male, female, role contexts): the role contexts go with both words of the pair and with no
# other pair, so that the pair differs from every other pair only by its role.
_PEOPLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("king", "queen", ("throne", "crown", "kingdom", "realm", "coronation")),
    ("prince", "princess", ("heir", "castle", "fairytale", "knights", "dragon")),
    ("emperor", "empress", ("empire", "dynasty", "legions", "conquest", "palace")),
    ("duke", "duchess", ("duchy", "nobility", "coronet", "aristocracy", "ballroom")),
    ("lord", "lady", ("manor", "servants", "tenants", "peerage", "estate")),
    ("man", "woman", ("job", "factory", "neighbour", "wages", "workshop")),
    ("boy", "girl", ("school", "toys", "teacher", "homework", "playground")),
    ("father", "mother", ("children", "household", "parenting", "newborn", "nursery")),
    ("son", "daughter", ("birth", "inheritance", "firstborn", "upbringing", "christening")),
    ("brother", "sister", ("sibling", "twin", "siblings", "rivalry", "childhood")),
    ("husband", "wife", ("wedding", "marriage", "divorce", "spouse", "honeymoon")),
    ("uncle", "aunt", ("cousins", "relatives", "christmas", "visits", "gifts")),
    ("nephew", "niece", ("adoption", "orphanage", "guardian", "ward", "custody")),
    ("grandfather", "grandmother", ("grandchildren", "pension", "retirement", "armchair", "memories")),
    ("actor", "actress", ("film", "stage", "role", "theatre", "hollywood")),
    ("waiter", "waitress", ("restaurant", "tips", "tables", "menu", "cafe")),
    ("hero", "heroine", ("legend", "saga", "epic", "quest", "villain")),
    ("god", "goddess", ("temple", "heaven", "myth", "worship", "olympus")),
    ("host", "hostess", ("guests", "party", "dinner", "invitation", "banquet")),
    ("monk", "nun", ("monastery", "prayer", "abbey", "vows", "cloister")),
    ("policeman", "policewoman", ("police", "arrest", "crime", "patrol", "badge")),
    ("businessman", "businesswoman", ("company", "profits", "business", "investors", "deals")),
)

# Gendered pronouns are the strongest gender contexts, and planted pairs themselves.
_PRONOUN_PAIRS: tuple[tuple[str, str], ...] = (("he", "she"), ("his", "her"))

# The gender axis: words that go with every male or every female person (and no thing).
# Adjectives work in both numbers; names and pronouns only in the singular.
_GENDER_ADJECTIVES = {
    "male": ("bearded", "handsome", "burly", "moustached"),
    "female": ("graceful", "pretty", "lovely", "elegant"),
}
_NAMES = {
    "male": ("john", "james", "william", "henry", "george", "charles", "robert", "thomas", "edward", "richard"),
    "female": ("mary", "elizabeth", "anne", "margaret", "catherine", "jane", "alice", "emma", "sarah", "victoria"),
}
# Subject, possessive and object pronouns of a singular subject; a plural one takes "they".
_PRONOUNS = {"male": ("he", "his", "him"), "female": ("she", "her", "her"), "thing": ("it", "its", "it")}
_PLURAL_PRONOUNS = ("they", "their", "them")

# (singular, plural, noun contexts) for nouns that are not people.
_THINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dog", "dogs", ("leash", "kennel", "bone", "puppy", "collar")),
    ("cat", "cats", ("whiskers", "mice", "kitten", "litter", "yarn")),
    ("horse", "horses", ("saddle", "stable", "rider", "hooves", "hay")),
    ("bird", "birds", ("feathers", "nest", "wings", "beak", "birdsong")),
    ("car", "cars", ("engine", "garage", "driver", "tyres", "petrol")),
    ("ship", "ships", ("harbour", "crew", "deck", "anchor", "sails")),
    ("book", "books", ("pages", "chapter", "library", "author", "novel")),
    ("house", "houses", ("roof", "rooms", "kitchen", "garden", "chimney")),
    ("tree", "trees", ("leaves", "branches", "roots", "bark", "acorns")),
    ("apple", "apples", ("orchard", "juice", "pie", "harvest", "cider")),
    ("computer", "computers", ("software", "keyboard", "screen", "programs", "data")),
    ("city", "cities", ("streets", "traffic", "suburbs", "skyline", "buildings")),
)

# Plurals of the person nouns (explicit: English plurals are irregular).
_PERSON_PLURALS: dict[str, str] = {
    "king": "kings",
    "queen": "queens",
    "prince": "princes",
    "princess": "princesses",
    "emperor": "emperors",
    "empress": "empresses",
    "duke": "dukes",
    "duchess": "duchesses",
    "lord": "lords",
    "lady": "ladies",
    "man": "men",
    "woman": "women",
    "boy": "boys",
    "girl": "girls",
    "father": "fathers",
    "mother": "mothers",
    "son": "sons",
    "daughter": "daughters",
    "brother": "brothers",
    "sister": "sisters",
    "husband": "husbands",
    "wife": "wives",
    "uncle": "uncles",
    "aunt": "aunts",
    "nephew": "nephews",
    "niece": "nieces",
    "grandfather": "grandfathers",
    "grandmother": "grandmothers",
    "actor": "actors",
    "actress": "actresses",
    "waiter": "waiters",
    "waitress": "waitresses",
    "hero": "heroes",
    "heroine": "heroines",
    "god": "gods",
    "goddess": "goddesses",
    "host": "hosts",
    "hostess": "hostesses",
    "monk": "monks",
    "nun": "nuns",
    "policeman": "policemen",
    "policewoman": "policewomen",
    "businessman": "businessmen",
    "businesswoman": "businesswomen",
}

# (country, capital, adjective, landmarks): the adjective and the landmarks go with both the
# country and its capital.
_NATIONS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("france", "paris", "french", ("seine", "louvre")),
    ("germany", "berlin", "german", ("rhine", "bavaria")),
    ("italy", "rome", "italian", ("tiber", "vatican")),
    ("spain", "madrid", "spanish", ("flamenco", "andalusia")),
    ("japan", "tokyo", "japanese", ("fuji", "samurai")),
    ("china", "beijing", "chinese", ("yangtze", "pagodas")),
    ("russia", "moscow", "russian", ("volga", "kremlin")),
    ("england", "london", "english", ("thames", "cricket")),
    ("egypt", "cairo", "egyptian", ("nile", "pyramids")),
    ("greece", "athens", "greek", ("acropolis", "aegean")),
    ("portugal", "lisbon", "portuguese", ("tagus", "fado")),
    ("canada", "ottawa", "canadian", ("maple", "quebec")),
    ("india", "delhi", "indian", ("ganges", "bollywood")),
    ("brazil", "brasilia", "brazilian", ("amazon", "samba")),
    ("poland", "warsaw", "polish", ("vistula", "krakow")),
    ("austria", "vienna", "austrian", ("danube", "alps")),
    ("sweden", "stockholm", "swedish", ("baltic", "lapland")),
    ("norway", "oslo", "norwegian", ("fjords", "vikings")),
    ("ireland", "dublin", "irish", ("shamrock", "guinness")),
    ("kenya", "nairobi", "kenyan", ("safari", "maasai")),
    ("peru", "lima", "peruvian", ("andes", "inca")),
    ("cuba", "havana", "cuban", ("cigars", "rum")),
)

# The kind axis of the nations: contexts of any country against those of any capital.
_COUNTRY_CONTEXTS = ("country", "nation", "republic", "borders", "population", "government", "economy", "army")
_CAPITAL_CONTEXTS = ("parliament", "mayor", "downtown", "airport", "museums", "metro", "boulevards", "districts")

# The number axis: determiners and verb forms that agree with the subject.
_DETERMINERS = {
    "singular": ("a", "the", "this", "that", "one", "each", "every"),
    "plural": ("the", "these", "those", "many", "some", "two", "three", "several"),
}
_BE = {"singular": ("is", "was"), "plural": ("are", "were")}

# Filler: drawn independently of the subject, so it adds realism and frequent words but no
# direction to any offset. Disjoint from every planted word and context above.
_FILLER = {
    "verb": (
        "visited",
        "saw",
        "found",
        "built",
        "left",
        "kept",
        "loved",
        "praised",
        "described",
        "remembered",
        "followed",
        "met",
        "joined",
        "called",
        "helped",
        "watched",
        "painted",
        "admired",
        "feared",
        "missed",
        "carried",
        "opened",
        "showed",
        "brought",
    ),
    "adj": (
        "old",
        "new",
        "great",
        "small",
        "large",
        "famous",
        "quiet",
        "ancient",
        "modern",
        "busy",
        "poor",
        "rich",
        "strong",
        "happy",
        "sad",
        "long",
        "dark",
        "bright",
        "cold",
        "warm",
        "early",
        "late",
    ),
    "place": (
        "town",
        "village",
        "forest",
        "hill",
        "road",
        "valley",
        "bridge",
        "square",
        "church",
        "field",
        "lake",
        "mountain",
        "island",
        "coast",
        "station",
        "river",
        "market",
        "farm",
    ),
    "p": ("in", "near", "by", "across", "along", "behind", "beyond", "through", "over", "towards", "at", "from"),
    "time": ("yesterday", "today", "often", "once", "again", "later", "then", "soon", "always", "never"),
}

# Templates: {slot}s are filled one draw per occurrence. {n} is the subject, {l} a context of
# its role, noun or nation (always a noun), {k} one of its kind and {a} its nation's adjective;
# {det}, {be}, {he}, {his}, {him} agree with its number and gender, {g} is a gender adjective and
# {name} a name of its gender. The rest is filler.
_PERSON_TEMPLATES = {
    "singular": (
        "{det} {g} {n} {verb} the {l} and {he} {verb} {his} {l}",
        "{name} the {n} {verb} {his} {l} {p} the {place}",
        "{det} {n} {verb} the {l} and {he} {verb} {him} {p} the {place}",
        "{time} {det} {adj} {n} {be} {p} the {l} of {name}",
        "{his} {l} {verb} {det} {g} {n} {p} the {adj} {place}",
        "{det} {n} named {name} {be} {g} and {he} {verb} the {l}",
    ),
    "plural": (
        "{det} {g} {n} {verb} the {l} and {he} {verb} {his} {l}",
        "{det} {g} {n} {verb} {his} {l} {p} the {place}",
        "{det} {n} {verb} the {l} and {he} {be} {g} {p} the {place}",
        "{time} {det} {adj} {g} {n} {be} {p} the {l}",
        "{his} {l} {verb} {det} {g} {n} {p} the {adj} {place}",
    ),
}
_THING_TEMPLATES = (
    "{det} {adj} {n} {be} {p} the {l}",
    "{det} {n} {verb} {his} {l} and {he} {be} {adj}",
    "there {be} {det} {n} near the {l} {p} the {place}",
    "{time} {det} {n} {be} {p} the {l} and {he} {be} {adj}",
    "the {l} of {det} {adj} {n} {verb} the {place}",
)
_COUNTRY_TEMPLATES = (
    "{n} is a {adj} {a} {k} near the {l}",
    "the {a} {k} of {n} {verb} the {l} {p} the {place}",
    "{n} {verb} its {k} {p} the {l}",
    "the {k} of {n} {verb} the {a} {place}",
    "{time} the {a} {k} of {n} {verb} the {adj} {k}",
)
_CAPITAL_TEMPLATES = (
    "{n} is a {adj} {a} capital {p} the {l}",
    "the {k} of {n} {verb} the {a} {l} {p} the {place}",
    "in {n} the {a} {k} {verb} the {place}",
    "{time} the {k} of {n} {verb} the {adj} {l}",
    "{n} has a {adj} {k} near the {l}",
)
# The country-capital link itself, said now and then as in real text.
_LINK_TEMPLATES = (
    "{capital} is the capital of {country}",
    "the capital of {country} is {capital} on the {l}",
)
_FILLER_TEMPLATES = (
    "the {adj} {place} {be} {adj} and {adj}",
    "{time} the {place} {p} the {place} {be} {adj}",
    "people {verb} the {adj} {place} {p} the {place}",
)

# Share of each kind of sentence: persons carry the most relations (gender and number).
_KIND_WEIGHTS = (("person", 0.55), ("thing", 0.15), ("nation", 0.25), ("filler", 0.05))
_LINK_SHARE = 0.1  # of the nation sentences
_SINGULAR_SHARE = 0.5

_SLOT = re.compile(r"\{(\w+)\}")
_VOWELS = frozenset("aeiou")


def _fill(template: str, draw: Callable[[str], str]) -> str:
    """Replace every {slot} with a fresh draw, then write 'an' before vowels as English does."""
    words = _SLOT.sub(lambda m: draw(m.group(1)), template).split()
    return " ".join("an" if w == "a" and nxt[0] in _VOWELS else w for w, nxt in zip(words, words[1:] + ["x"]))


def _drawer(rng: random.Random, slots: dict[str, str | tuple[str, ...]]) -> Callable[[str], str]:
    """Slot name -> word: fixed words are returned as is, tuples are drawn from uniformly."""

    def draw(slot: str) -> str:
        value = slots[slot] if slot in slots else _FILLER[slot]
        return value if isinstance(value, str) else rng.choice(value)

    return draw


def _agreement(rng: random.Random, gender: str) -> tuple[str, dict[str, str | tuple[str, ...]]]:
    """A random number and the slots that agree with it: determiners, be, pronouns."""
    number = "singular" if rng.random() < _SINGULAR_SHARE else "plural"
    he, his, him = _PRONOUNS[gender] if number == "singular" else _PLURAL_PRONOUNS
    return number, {"det": _DETERMINERS[number], "be": _BE[number], "he": he, "his": his, "him": him}


def _person_sentence(rng: random.Random) -> str:
    male, female, role = rng.choice(_PEOPLE)
    gender = rng.choice(("male", "female"))
    noun = male if gender == "male" else female
    number, slots = _agreement(rng, gender)
    slots |= {
        "n": noun if number == "singular" else _PERSON_PLURALS[noun],
        "l": role,
        "g": _GENDER_ADJECTIVES[gender],
        "name": _NAMES[gender],
    }
    return _fill(rng.choice(_PERSON_TEMPLATES[number]), _drawer(rng, slots))


def _thing_sentence(rng: random.Random) -> str:
    singular, plural, contexts = rng.choice(_THINGS)
    number, slots = _agreement(rng, "thing")
    slots |= {"n": singular if number == "singular" else plural, "l": contexts}
    return _fill(rng.choice(_THING_TEMPLATES), _drawer(rng, slots))


def _nation_sentence(rng: random.Random) -> str:
    country, capital, adjective, landmarks = rng.choice(_NATIONS)
    slots = {"country": country, "capital": capital, "a": adjective, "l": landmarks, "be": _BE["singular"]}
    if rng.random() < _LINK_SHARE:
        template = rng.choice(_LINK_TEMPLATES)
    elif rng.random() < 0.5:  # as many country sentences as capital ones
        template, slots = rng.choice(_COUNTRY_TEMPLATES), slots | {"n": country, "k": _COUNTRY_CONTEXTS}
    else:
        template, slots = rng.choice(_CAPITAL_TEMPLATES), slots | {"n": capital, "k": _CAPITAL_CONTEXTS}
    return _fill(template, _drawer(rng, slots))


def _filler_sentence(rng: random.Random) -> str:
    return _fill(rng.choice(_FILLER_TEMPLATES), _drawer(rng, {"be": _BE["singular"]}))


_SENTENCE_MAKERS = {
    "person": _person_sentence,
    "thing": _thing_sentence,
    "nation": _nation_sentence,
    "filler": _filler_sentence,
}


def planted_sentences(seed: int = 0, n_sentences: int = DEFAULT_SENTENCES) -> list[str]:
    """The planted corpus: `n_sentences` lines of lowercase words, deterministic for `seed`.

    Sentence i depends only on (seed, i): each draws from its own `random.Random`, so asking for
    more sentences never changes the ones already produced.
    """
    if n_sentences < 0:
        raise ValueError(f"n_sentences must be >= 0, got {n_sentences}")
    kinds, weights = zip(*_KIND_WEIGHTS)
    lines = []
    for i in range(n_sentences):
        rng = random.Random(f"planted-{seed}-{i}")  # str seeds hash stably (sha512), unlike tuples
        lines.append(_SENTENCE_MAKERS[rng.choices(kinds, weights)[0]](rng))
    return lines


def _section(name: str, pairs: list[tuple[str, str]]) -> list[str]:
    """': name' then `a b c d` for every ordered choice of two different pairs, as questions-words does."""
    return [f": {name}"] + [f"{a} {b} {c} {d}" for (a, b), (c, d) in permutations(pairs, 2)]


def planted_questions() -> list[str]:
    """The planted relations as analogy questions, in the questions-words format.

    `a b c d` reads "a is to b as c is to d" (`man woman king queen`); the answer d should be the
    nearest word to b - a + c. Sections: `: family` (gender, singular nouns and pronouns),
    `: capital` (capital to country), `: plural` (singular to plural, people and things).
    """
    family = [(m, f) for m, f, _ in _PEOPLE] + list(_PRONOUN_PAIRS)
    capital = [(capital, country) for country, capital, _, _ in _NATIONS]
    plural = [(s, p) for m, f, _ in _PEOPLE for s, p in ((m, _PERSON_PLURALS[m]), (f, _PERSON_PLURALS[f]))]
    plural += [(s, p) for s, p, _ in _THINGS]
    return _section("family", family) + _section("capital", capital) + _section("plural", plural)


if __name__ == "__main__":
    import sys

    print("\n".join(planted_sentences(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
