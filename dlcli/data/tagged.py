"""Data for part-of-speech tagging: CoNLL-U files, and a generated tagged corpus for offline runs.

    python -m dlcli.data.tagged 0 2000 > tagged.conllu    # 2000 generated sentences of seed 0

Real data is CoNLL-U (Universal Dependencies, e.g. UD English EWT): one token a line with ten
tab-separated fields, sentences separated by blank lines, comments starting with '#'. The
tagger sees the syntactic words: a multiword token line (`3-4 don't`) is skipped and its
words (`3 do`, `4 n't`) kept, as UD's own word-level scores count them; empty nodes of the
enhanced graph (`8.1`) are skipped. Words keep their case: lowercasing is the tagger's choice.

The built-in corpus (`generated_tagged`) comes from a small English grammar with UD tags. Its
point is ambiguity that only context resolves: "book", "watch", "play", "train"... are NOUNs
after a determiner and VERBs after a subject, "can" is an AUX or a NOUN, "that" a DET, SCONJ or
PRON, "light" an ADJ, NOUN or VERB, "well" an ADV or INTJ. So the most frequent tag of each
word scores clearly below 100 %, while a model that reads its neighbours can get every known
word right. Made-up words with English suffixes ("korvation", "dunive", "belize") stand for
the rare words of real text: most appear once, so val/test hold words never seen in training
whose tag only their spelling gives away, which is what a character-level encoder is for.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import conllu
from conllu.exceptions import ParseException
from conllu.parser import DEFAULT_FIELD_PARSERS, parse_line

from dlcli.data.textfile import open_text
from dlcli.errors import DlError

COLUMNS = ("upos", "xpos")

# The 17 universal POS tags (https://universaldependencies.org/u/pos/).
UPOS_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)


class TaggedSentence(NamedTuple):
    """One sentence: its words and one tag per word (a plain tuple too: `words, tags = s`)."""

    words: list[str]
    tags: list[str]


# ---------------------------------------------------------------------------------------- CoNLL-U

# We read only ID, FORM and the tag: FEATS, MISC and DEPS stay strings instead of being parsed
# into dicts and lists, which makes reading EWT's train split almost twice as fast (1.2 s against 2.1 s).
_RAW = {field: (lambda line, i: line[i]) for field in ("feats", "head", "deps", "misc")}


class _CountedLines:
    """The file's lines as conllu reads them, counted, so that an error can name its line.

    conllu's parse_incr iterates over the file line by line and parses a sentence as soon as the
    blank line after it is read, so while a sentence is parsed `block` holds exactly its lines.
    The field count is checked here because conllu accepts lines with fewer fields.
    """

    def __init__(self, f, path: Path):
        self.f, self.path = f, path
        self.block: list[tuple[int, str]] = []  # (line number, line) of the sentence being parsed
        self.columns = conllu.parser.DEFAULT_FIELDS  # CoNLL-U Plus may redefine them

    def read(self, *args):  # parse_incr insists on a file-like object
        return self.f.read(*args)

    def __iter__(self) -> Iterator[str]:
        new_block = True
        for number, line in enumerate(self.f, 1):
            if not line.strip():
                new_block = True
            else:
                if new_block:
                    self.block, new_block = [], False
                self.block.append((number, line))
                self._check(number, line)
            yield line

    def _check(self, number: int, line: str) -> None:
        if line.startswith("#"):
            if line.startswith("# global.columns ="):
                self.columns = tuple(c.lower() for c in line.split("=", 1)[1].split())
            return
        n_fields = line.rstrip("\r\n").count("\t") + 1
        if n_fields != len(self.columns):
            raise DlError(
                f"{self.path}:{number}: a token line needs {len(self.columns)} tab-separated fields, "
                f"this one has {n_fields}: {line.strip()[:80]!r}. Is this a CoNLL-U file?"
            )

    def token_line(self, index: int) -> int:
        """The line number of the index-th token line of the current sentence."""
        return [n for n, line in self.block if not line.startswith("#")][index]

    def error(self, exc: Exception) -> DlError:
        """A DlError at the first line of the current sentence that conllu cannot parse."""
        fields = list(self.columns)
        for number, line in self.block:
            if line.startswith("#"):
                continue
            try:
                parse_line(line.strip(), fields, dict(DEFAULT_FIELD_PARSERS))
            except (ParseException, ValueError, IndexError) as e:
                return DlError(
                    f"{self.path}:{number}: {str(e).rstrip('.')} in {line.strip()[:80]!r}. Fix or remove that line."
                )
        start = self.block[0][0] if self.block else 1
        return DlError(f"{self.path}:{start}: the sentence starting here is not valid CoNLL-U ({exc}).")


def read_conllu(path: Path | str, column: str = "upos") -> list[TaggedSentence]:
    """The sentences of a CoNLL-U file (plain or .gz) as (words, tags), tags from `column` (upos|xpos).

    A tag of "_" (none given) stays "_"; a column that is "_" on every word is an error.
    """
    path = Path(path)
    if column not in COLUMNS:
        raise DlError(f"Unknown tag column {column!r}: choose one of {', '.join(COLUMNS)}.")
    if not path.is_file():
        raise DlError(f"CoNLL-U file {path} does not exist. Point data.path at a .conllu or .conllu.gz file.")
    try:  # utf-8-sig: a byte order mark would otherwise end up in the first ID
        with open_text(path, encoding="utf-8-sig") as f:  # bytes that are not UTF-8: U+FFFD and a warning
            lines = _CountedLines(f, path)
            sentences = list(_sentences(lines, path, column))
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt .gz, an unreadable file
        raise DlError(f"Cannot read {path}: {e}.") from e
    if not sentences:
        raise DlError(f"{path} holds no sentences. Is it a CoNLL-U file?")
    if all(tag == "_" for s in sentences for tag in s.tags):
        other = next(c for c in COLUMNS if c != column)
        raise DlError(
            f"The {column} column of {path} is empty ('_' on every word): "
            f"choose the other tag column ({other}) or a file annotated with {column}."
        )
    return sentences


def _sentences(lines: _CountedLines, path: Path, column: str) -> Iterator[TaggedSentence]:
    parsed = iter(conllu.parse_incr(lines, field_parsers=_RAW))
    while True:
        try:
            tokens = next(parsed)
        except StopIteration:
            return
        except ParseException as e:
            raise lines.error(e) from e
        if column not in lines.columns:
            raise DlError(f"{path} has no {column} column (its columns: {' '.join(lines.columns)}).")
        words, tags = [], []
        for i, token in enumerate(tokens):
            if isinstance(token["id"], tuple):  # (3, "-", 4): a multiword token; (8, ".", 1): an empty node
                continue
            if token["id"] is None:
                raise DlError(
                    f"{path}:{lines.token_line(i)}: a token line without an ID ('_'). "
                    "Give it its word number or remove it."
                )
            words.append(token["form"])
            tags.append(token[column] or "_")  # conllu reads an xpos of "_" as None
        if words:
            yield TaggedSentence(words, tags)


def to_conllu(sentences: list[TaggedSentence]) -> str:
    """Tagged sentences as minimal CoNLL-U text (ID, FORM and UPOS; the other fields "_")."""
    blocks = []
    for words, tags in sentences:
        blocks.append("".join(f"{i}\t{w}\t_\t{t}\t_\t_\t_\t_\t_\t_\n" for i, (w, t) in enumerate(zip(words, tags), 1)))
    return "\n".join(blocks)


# ------------------------------------------------------------------------------ generated corpus

DEFAULT_SENTENCES = 5000

# Ambiguous NOUN/VERB lemmas: (noun singular = verb base, noun plural = verb 3rd singular, past).
_AMBIGUOUS = (
    ("book", "books", "booked"),
    ("watch", "watches", "watched"),
    ("play", "plays", "played"),
    ("fly", "flies", "flew"),
    ("light", "lights", "lit"),
    ("duck", "ducks", "ducked"),
    ("park", "parks", "parked"),
    ("train", "trains", "trained"),
    ("run", "runs", "ran"),
    ("walk", "walks", "walked"),
    ("drink", "drinks", "drank"),
    ("call", "calls", "called"),
    ("dance", "dances", "danced"),
    ("plant", "plants", "planted"),
    ("ring", "rings", "rang"),
)
# Only nouns: (singular, plural). "saw" and "can" are a VERB and an AUX elsewhere.
_NOUNS = (
    ("dog", "dogs"),
    ("cat", "cats"),
    ("teacher", "teachers"),
    ("house", "houses"),
    ("river", "rivers"),
    ("city", "cities"),
    ("car", "cars"),
    ("child", "children"),
    ("friend", "friends"),
    ("letter", "letters"),
    ("garden", "gardens"),
    ("window", "windows"),
    ("table", "tables"),
    ("student", "students"),
    ("doctor", "doctors"),
    ("bird", "birds"),
    ("tree", "trees"),
    ("road", "roads"),
    ("school", "schools"),
    ("idea", "ideas"),
    ("song", "songs"),
    ("story", "stories"),
    ("box", "boxes"),
    ("man", "men"),
    ("woman", "women"),
    ("saw", "saws"),
    ("can", "cans"),
)
# Only verbs: (base, 3rd singular, past).
_VERBS = (
    ("see", "sees", "saw"),
    ("take", "takes", "took"),
    ("find", "finds", "found"),
    ("like", "likes", "liked"),
    ("eat", "eats", "ate"),
    ("read", "reads", "read"),
    ("open", "opens", "opened"),
    ("love", "loves", "loved"),
    ("help", "helps", "helped"),
    ("carry", "carries", "carried"),
    ("follow", "follows", "followed"),
    ("build", "builds", "built"),
    ("visit", "visits", "visited"),
    ("clean", "cleans", "cleaned"),
)
_ADJECTIVES = (
    "big",
    "small",
    "old",
    "new",
    "red",
    "green",
    "happy",
    "quiet",
    "long",
    "young",
    "dark",
    "warm",
    "cold",
    "light",
    "fast",
    "late",
    "strange",
    "busy",
)
_ADVERBS = (
    "quickly",
    "slowly",
    "often",
    "today",
    "yesterday",
    "again",
    "here",
    "there",
    "fast",
    "late",
    "well",
    "together",
)
_MID_ADVERBS = ("never", "always", "often", "also", "really", "soon")  # between AUX and VERB
_DETERMINERS = {"sg": ("the", "a", "this", "that", "every", "each"), "pl": ("the", "these", "those", "some", "all")}
_POSSESSIVES = ("my", "your", "his", "her", "our", "their", "its")  # PRON in UD
_SUBJECTS = {"sg": ("he", "she", "it"), "pl": ("I", "you", "we", "they")}  # "I" agrees like a plural
_OBJECTS = ("me", "you", "him", "her", "us", "them", "it", "that", "this")
_PROPER = ("Anna", "John", "Maria", "Tom", "Sara", "Paris", "London", "Berlin", "Boston", "Kim")
_NUMBERS = ("two", "three", "four", "five", "ten", "twenty")
_PREPOSITIONS = ("in", "on", "at", "near", "with", "from", "to", "under", "behind", "after", "like")
_MODALS = ("can", "will", "should", "must", "might", "could", "would")
_SAY_VERBS = (("think", "thinks", "thought"), ("say", "says", "said"), ("know", "knows", "knew"))
_WANT_VERBS = (("want", "wants", "wanted"), ("like", "likes", "liked"), ("need", "needs", "needed"))
_CLAUSE_LINKS = (
    ("and", "CCONJ"),
    ("but", "CCONJ"),
    ("or", "CCONJ"),
    ("because", "SCONJ"),
    ("when", "SCONJ"),
    ("if", "SCONJ"),
)
_INTERJECTIONS = ("Well", "Oh", "Yes", "No")
# Kinds of predicate and their weights; "say" (a clause inside the clause) comes last: it is
# only drawn at the top level, which bounds the recursion.
_PREDICATES = (("verb", 4), ("modal", 3), ("do", 1), ("want", 1.5), ("copula", 1.5), ("say", 1))

# Made-up words: syllables, then a suffix that gives the class away, as English suffixes do.
_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "tor",
    "vel",
    "sa",
    "bri",
    "dun",
    "fe",
    "gol",
    "ith",
    "zor",
    "qua",
    "ne",
    "pim",
    "ras",
    "tul",
    "wen",
    "dra",
    "sko",
    "ber",
    "nal",
    "quo",
    "jem",
    "fra",
    "ul",
    "tam",
)
_SUFFIXES = {
    "NOUN": ("er", "ness", "tion", "ment", "ist", "ling", "ery", "ship"),
    "ADJ": ("ous", "ful", "ive", "ish", "less", "al", "ic", "able"),
    "VERB": ("ize", "ate", "ify", "en"),
}
_INVENTED_SHARE = 0.07  # of the open-class slots (nouns, verbs, adjectives, adverbs)
_INVENTED_PROPER_SHARE = 0.5  # of the proper nouns: real text is full of unseen names


class _Sentence:
    """The grammar's state while one sentence is drawn: its rng and the (word, tag) pairs so far."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.out: list[tuple[str, str]] = []

    def add(self, word: str, tag: str) -> None:
        self.out.append((word, tag))

    def pick(self, options, tag: str) -> None:
        self.add(self.rng.choice(options), tag)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # ---- made-up words

    def _stem(self) -> str:
        return "".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(1, 2)))

    def invented_noun(self) -> tuple[str, str]:
        sg = self._stem() + self.rng.choice(_SUFFIXES["NOUN"])
        return sg, (sg + "es" if sg.endswith("s") else sg + "s")

    def invented_verb(self) -> tuple[str, str, str]:
        base = self._stem() + self.rng.choice(_SUFFIXES["VERB"])
        if base.endswith("ify"):
            return base, base[:-1] + "ies", base[:-1] + "ied"
        return base, base + "s", base + ("d" if base.endswith("e") else "ed")

    def invented_adjective(self) -> str:
        return self._stem() + self.rng.choice(_SUFFIXES["ADJ"])

    def invented_adverb(self) -> str:
        adj = self.invented_adjective()
        if adj.endswith("ic"):
            return adj + "ally"
        if adj.endswith("le"):
            return adj[:-1] + "y"
        return adj + "ly"

    # ---- lexical choices: a common word, or now and then a made-up one

    def noun(self, number: str) -> None:
        if self.chance(_INVENTED_SHARE):
            forms = self.invented_noun()
        elif self.chance(0.45):  # ambiguous lemmas are frequent, so the ambiguity matters
            forms = self.rng.choice(_AMBIGUOUS)[:2]
        else:
            forms = self.rng.choice(_NOUNS)
        self.add(forms[0] if number == "sg" else forms[1], "NOUN")

    def verb(self, form: int) -> None:
        """form: 0 base, 1 third singular present, 2 past."""
        if self.chance(_INVENTED_SHARE):
            forms = self.invented_verb()
        elif self.chance(0.5):
            forms = self.rng.choice(_AMBIGUOUS)
        else:
            forms = self.rng.choice(_VERBS)
        self.add(forms[form], "VERB")

    def adjective(self) -> None:
        self.add(self.invented_adjective() if self.chance(_INVENTED_SHARE) else self.rng.choice(_ADJECTIVES), "ADJ")

    def adverb(self) -> None:
        self.add(self.invented_adverb() if self.chance(_INVENTED_SHARE) else self.rng.choice(_ADVERBS), "ADV")

    def proper(self) -> None:
        if self.chance(_INVENTED_PROPER_SHARE):
            self.add(self._stem().capitalize() + self.rng.choice(_SYLLABLES), "PROPN")
        else:
            self.pick(_PROPER, "PROPN")

    def number(self) -> None:
        if self.chance(0.5):
            self.pick(_NUMBERS, "NUM")
        else:
            self.add(str(self.rng.randint(2, 2030)), "NUM")

    # ---- phrases

    def noun_phrase(self, number: str) -> None:
        """DET|PRON(possessive)|NUM [ADJ] NOUN: every noun phrase has a left edge that marks it."""
        r = self.rng.random()
        if number == "pl" and r < 0.2:
            self.number()
        elif r < 0.35:
            self.pick(_POSSESSIVES, "PRON")
        else:
            self.pick(_DETERMINERS[number], "DET")
        if self.chance(0.35):
            self.adjective()
        self.noun(number)

    def subject(self) -> str:
        """A subject; returns its number, with which the verb agrees."""
        number = self.rng.choice(("sg", "pl"))
        r = self.rng.random()
        if r < 0.4:
            self.pick(_SUBJECTS[number], "PRON")
        elif r < 0.55 and number == "sg":
            self.proper()
        else:
            self.noun_phrase(number)
        return number

    def obj(self) -> None:
        r = self.rng.random()
        if r < 0.2:
            self.pick(_OBJECTS, "PRON")
        elif r < 0.3:
            self.proper()
        else:
            self.noun_phrase(self.rng.choice(("sg", "pl")))

    def prepositional(self) -> None:
        self.pick(_PREPOSITIONS, "ADP")
        self.proper() if self.chance(0.2) else self.noun_phrase(self.rng.choice(("sg", "pl")))

    def tail(self) -> None:
        """Optional object-like extras after a verb."""
        if self.chance(0.35):
            self.prepositional()
        if self.chance(0.25):
            self.adverb()

    def predicate(self, number: str, depth: int) -> None:
        sg = number == "sg"
        tense = self.rng.choice((1 if sg else 0, 2))  # a verb form of _VERBS: present that agrees, or past
        kinds, weights = zip(*_PREDICATES)
        kind = self.rng.choices(kinds, weights[:-1] + ((weights[-1] if depth == 0 else 0),))[0]
        if kind == "verb":
            self.verb(tense)
            if self.chance(0.7):
                self.obj()
            self.tail()
        elif kind == "modal":
            self.pick(_MODALS, "AUX")
            if self.chance(0.2):
                self.add("not", "PART")
            elif self.chance(0.2):
                self.pick(_MID_ADVERBS, "ADV")
            self.verb(0)
            if self.chance(0.6):
                self.obj()
            self.tail()
        elif kind == "do":
            self.add(("does" if sg else "do", "did")[tense == 2], "AUX")
            self.add("not", "PART")
            self.verb(0)
            if self.chance(0.6):
                self.obj()
        elif kind == "want":
            self.add(self.rng.choice(_WANT_VERBS)[tense], "VERB")
            self.add("to", "PART")
            self.verb(0)
            if self.chance(0.6):
                self.obj()
            self.tail()
        elif kind == "copula":
            self.add(("is" if sg else "are", "was" if sg else "were")[tense == 2], "AUX")
            if self.chance(0.2):
                self.add("really", "ADV")
            self.adjective()
            if self.chance(0.3):
                self.prepositional()
        else:  # "she thinks that ...": a clause inside the clause
            self.add(self.rng.choice(_SAY_VERBS)[tense], "VERB")
            self.add("that", "SCONJ")
            self.clause(depth + 1)

    def clause(self, depth: int = 0) -> None:
        self.predicate(self.subject(), depth)

    def sentence(self) -> list[tuple[str, str]]:
        if self.chance(0.08):
            self.pick(_INTERJECTIONS, "INTJ")
            self.add(",", "PUNCT")
        self.clause()
        if self.chance(0.3):
            word, tag = self.rng.choice(_CLAUSE_LINKS)
            if word == "but" and self.chance(0.5):
                self.add(",", "PUNCT")
            self.add(word, tag)
            self.clause(depth=1)
        self.add(".", "PUNCT")
        return self.out


def _written(pairs: list[tuple[str, str]]) -> TaggedSentence:
    """'a' before a vowel becomes 'an', and the first word gets a capital, as in real text."""
    words = [w for w, _ in pairs]
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    words[0] = words[0][0].upper() + words[0][1:]
    return TaggedSentence(words, [t for _, t in pairs])


def generated_tagged(seed: int = 0, n_sentences: int = DEFAULT_SENTENCES) -> list[TaggedSentence]:
    """`n_sentences` tagged sentences of 5-20 tokens (UD tags), deterministic for `seed`.

    Sentence i depends only on (seed, i): each draws from its own `random.Random`, so asking for
    more sentences never changes the ones already produced. A draw outside 5-20 tokens is redrawn.
    """
    if n_sentences < 0:
        raise ValueError(f"n_sentences must be >= 0, got {n_sentences}")
    out = []
    for i in range(n_sentences):
        rng = random.Random(f"tagged-{seed}-{i}")  # str seeds hash stably (sha512), unlike tuples
        while not 5 <= len(pairs := _Sentence(rng).sentence()) <= 20:
            pass
        out.append(_written(pairs))
    return out


if __name__ == "__main__":
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    sys.stdout.write(to_conllu(generated_tagged(*args)))
