"""A tokenized corpus as one array of word ids, built once and read back memory-mapped.

    ids:     int32, every token of the corpus in order (ids in first-seen order)
    bounds:  int64, sentence s is ids[bounds[s]:bounds[s+1]]
    words, counts: what each id is, and how often it occurs

Tokenizing is the slow part in Python (a few million words a second), so it happens once
per corpus: the arrays are cached in a folder keyed by the corpus files' names, sizes and
modification times, and every epoch reads them at memory speed. The ids are written in chunks
and memory-mapped, so a corpus larger than memory trains. `min_count` and `max_vocab_size`
are applied afterwards, as a table from these ids to vocabulary ids (see `Vocabulary`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.data.text import corpus_files, sentences_from_files
from dlcli.errors import DlError
from dlcli.files import write_json_atomic

MAX_SENTENCE = 10000
_FLUSH_TOKENS = 1 << 22  # ids kept in memory before they are appended to the cache file


@dataclass
class EncodedCorpus:
    ids: np.ndarray
    bounds: np.ndarray
    words: list[str]
    counts: np.ndarray

    @property
    def n_words(self) -> int:
        return int(self.bounds[-1])

    @property
    def n_sentences(self) -> int:
        return len(self.bounds) - 1


def encode(sentences: Iterable[list[str]], folder: Path | None = None) -> EncodedCorpus:
    """Encode token lists; with `folder`, the ids go to folder/ids.int32 in chunks (memory-mapped)."""
    index: dict[str, int] = {}
    chunk = array("i")
    bounds = array("q", [0])
    ids_file = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        ids_file = open(folder / "ids.int32.tmp", "wb")
    kept: list[np.ndarray] = []
    total = 0
    for tokens in sentences:
        # setdefault evaluates len(index) first: a new word gets the next id
        chunk.extend([index.setdefault(word, len(index)) for word in tokens])
        # Sentences longer than MAX_SENTENCE words are cut into pieces of that many, as gensim does.
        bounds.extend(range(total + MAX_SENTENCE, total + len(tokens), MAX_SENTENCE))
        total += len(tokens)
        bounds.append(total)
        if len(chunk) >= _FLUSH_TOKENS:
            kept.append(_flush(chunk, ids_file))
            chunk = array("i")
    kept.append(_flush(chunk, ids_file))
    if total == 0:
        raise DlError(
            "The corpus holds no words (only empty lines, digits or punctuation). Give a text with words in it."
        )
    if ids_file is not None:
        ids_file.close()
        os.replace(folder / "ids.int32.tmp", folder / "ids.int32")
        ids = np.memmap(folder / "ids.int32", dtype=np.int32, mode="r")
    else:
        ids = np.concatenate(kept)
    counts = np.bincount(ids, minlength=len(index)).astype(np.int64) if ids_file is None else _count(ids, len(index))
    return EncodedCorpus(ids, np.frombuffer(bounds, dtype=np.int64).copy(), list(index), counts)


def _flush(chunk: array, ids_file) -> np.ndarray:
    values = np.frombuffer(chunk, dtype=np.int32)
    if ids_file is None:
        return values.copy()
    ids_file.write(values.tobytes())
    return values[:0]


def _count(ids: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, len(ids), _FLUSH_TOKENS):
        counts += np.bincount(ids[start : start + _FLUSH_TOKENS], minlength=n)
    return counts


def cached_encode(path: Path, cache_root: Path, token_pattern: str) -> EncodedCorpus:
    """Encode the corpus file/folder at `path` once; later calls read the cache."""
    files = corpus_files(path)
    key = hashlib.sha256(
        json.dumps(
            [token_pattern] + [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
        ).encode()
    ).hexdigest()[:16]
    folder = Path(cache_root) / f"corpus-{key}"
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        ids = np.memmap(folder / "ids.int32", dtype=np.int32, mode="r")
        return EncodedCorpus(ids, np.load(folder / "bounds.npy"), meta["words"], np.load(folder / "counts.npy"))
    try:
        corpus = encode(sentences_from_files(files, re.compile(token_pattern)), folder)
    except DlError as e:  # an empty corpus: say which one
        raise DlError(f"{path}: {e}") from None
    except (OSError, EOFError, zlib.error) as e:  # an unreadable file, a truncated or corrupt .gz
        raise DlError(f"Cannot read the corpus {path} ({e}). Check the file, or point data.path at another.") from None
    np.save(folder / "bounds.npy", corpus.bounds)
    np.save(folder / "counts.npy", corpus.counts)
    meta = {"files": [str(f) for f in files], "words": corpus.words}
    write_json_atomic(folder / "meta.json", meta)  # written last: its presence means the cache is whole
    return corpus


@dataclass
class Vocabulary:
    """The trained words: corpus ids with count >= min_count, the max_vocab_size most frequent,
    by descending count (ties in first-seen order), as word2vec.c sorts its vocabulary."""

    words: list[str]
    counts: np.ndarray  # int64, per vocabulary id
    remap: np.ndarray  # int32, corpus id -> vocabulary id, -1 when dropped

    @classmethod
    def from_corpus(cls, corpus: EncodedCorpus, min_count: int, max_vocab_size: int | None) -> Vocabulary:
        order = np.argsort(-corpus.counts, kind="stable")
        order = order[corpus.counts[order] >= min_count]
        if max_vocab_size is not None:
            order = order[:max_vocab_size]
        if len(order) == 0:
            raise DlError(
                f"The corpus has no word seen at least {min_count} times ({len(corpus.words)} distinct words). "
                "Lower data.min_count or give a larger corpus."
            )
        remap = np.full(len(corpus.words), -1, dtype=np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        return cls([corpus.words[i] for i in order], corpus.counts[order], remap)

    @classmethod
    def restored(cls, words: list[str], counts: list[int], corpus: EncodedCorpus) -> Vocabulary:
        """A vocabulary as saved (a resumed continued run), mapped onto `corpus`'s ids."""
        return cls(list(words), np.asarray(counts, dtype=np.int64), _remap(words, corpus))

    @classmethod
    def extended(
        cls, words: list[str], counts: list[int], corpus: EncodedCorpus, min_count: int, max_vocab_size: int | None
    ) -> Vocabulary:
        """A trained vocabulary grown by `corpus`, as gensim's build_vocab(update=True): the old words keep
        their ids and add their new counts; new words seen min_count times are appended, most frequent
        first (gensim appends in first-seen order), while the vocabulary has room for max_vocab_size."""
        known = set(words)
        order = np.argsort(-corpus.counts, kind="stable")
        new = [i for i in order if corpus.counts[i] >= min_count and corpus.words[i] not in known]
        if max_vocab_size is not None:
            new = new[: max(0, max_vocab_size - len(words))]
        all_words = list(words) + [corpus.words[i] for i in new]
        remap = _remap(all_words, corpus)
        grown = np.concatenate([np.asarray(counts, dtype=np.int64), np.zeros(len(new), dtype=np.int64)])
        seen = remap >= 0
        np.add.at(grown, remap[seen], corpus.counts[seen])
        return cls(all_words, grown, remap)

    def corpus_counts(self, corpus: EncodedCorpus) -> np.ndarray:
        """(V,) how often each vocabulary word occurs in `corpus` (0 for words it lacks)."""
        counts = np.zeros(len(self.words), dtype=np.int64)
        seen = self.remap >= 0
        np.add.at(counts, self.remap[seen], corpus.counts[seen])
        return counts

    def __len__(self) -> int:
        return len(self.words)

    def keep_probabilities(self, sample: float) -> np.ndarray:
        """Mikolov et al.'s subsampling of frequent words, as word2vec.c and gensim compute it.

        A word of count c among N in-vocabulary words is kept with probability
        (sqrt(c / (sample N)) + 1) * (sample N) / c, capped at 1; sample = 0 keeps every word.
        """
        if sample <= 0:
            return np.ones(len(self.counts), dtype=np.float32)
        threshold = sample * float(self.counts.sum())
        c = np.maximum(self.counts, 1).astype(np.float64)  # a continued run's old word absent from the new corpus
        return np.minimum(1.0, (np.sqrt(c / threshold) + 1.0) * threshold / c).astype(np.float32)


def _remap(words: list[str], corpus: EncodedCorpus) -> np.ndarray:
    """(corpus words,) int32: each corpus id's index in `words`, -1 where it is not one of them."""
    index = {word: i for i, word in enumerate(words)}
    return np.array([index.get(word, -1) for word in corpus.words], dtype=np.int32)
