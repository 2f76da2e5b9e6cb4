"""How every text reader opens its files: UTF-8, plain or gzip, bad bytes replaced and counted.

    with open_text(path) as f:        # a text stream, like open(path, "rt", encoding="utf-8")
        for line in f: ...
    text = read_text(path)            # the whole file

A corpus with a few bytes that are not UTF-8 (a Latin-1 name in a scraped text, a torn last
line) should not stop a long run, nor be read silently wrong: each byte sequence that does not
decode becomes U+FFFD, as errors="replace" does, and when the file is closed one warning says
how many there were and how to fix the file. word2vec corpora, language-model text, CoNLL-U
files, parallel text and labelled TSV files all read this way.
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from dlcli.console import warn

_HANDLER = "dlcli-count-replace"
# Undecodable byte sequences seen since the process started. Readers run one file at a time in
# the main process, so the difference across one file's `with` block is that file's count.
_replaced = 0


def _count_and_replace(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    global _replaced
    _replaced += 1
    return "\ufffd", error.end  # exactly what errors="replace" gives


codecs.register_error(_HANDLER, _count_and_replace)


@contextmanager
def open_text(path: Path, encoding: str = "utf-8", newline: str | None = None) -> Iterator[TextIO]:
    """A text stream of a plain or .gz file; warns after it is closed if bytes were replaced.

    encoding: utf-8, or utf-8-sig to drop a byte order mark.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    before = _replaced
    with opener(path, "rt", encoding=encoding, errors=_HANDLER, newline=newline) as f:
        yield f
    replaced = _replaced - before
    if replaced:
        warn(
            f"{path}: {replaced} byte sequence{'s' if replaced != 1 else ''} not UTF-8, read as U+FFFD (\ufffd). "
            "Re-encode the file as UTF-8 to keep those characters (e.g. iconv -f latin1 -t utf-8)."
        )


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as one string, read as open_text reads it."""
    with open_text(path, encoding) as f:
        return f.read()
