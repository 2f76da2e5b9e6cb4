"""fastText's character n-grams (Bojanowski et al. 2017, section 3.2): which bucket rows make up a word.

A word w is written `<w>` and cut into its character n-grams, min_n <= n <= max_n (3 to 6 in the
paper); each n-gram is hashed into one of `buckets` rows of an n-gram matrix (2,000,000 in fastText
and gensim), so rare and unseen words share rows with the words they resemble:

    "where", n = 3:  <wh  whe  her  ere  re>   (and "<where>" itself when max_n >= 7)

As fastText's Dictionary::computeSubwords and gensim's compute_ngrams_bytes: n counts characters
(UTF-8 code points, never splitting one), the hash runs over the n-gram's UTF-8 bytes, an n-gram
that occurs twice in a word counts twice, and a 1-gram of `<` or `>` alone is left out. The hash is
fastText's 32-bit FNV-1a with the C++ code's quirk: each byte is a signed `char`, so a byte >= 128
is sign-extended to 32 bits before the xor (gensim's ft_hash_bytes keeps it, and so does dl: the
bucket of a non-ASCII n-gram is then the one fastText's own .bin files use).

A word's input vector is then the average of its own row and its n-grams' rows (`compose`), and
an out-of-vocabulary word's the average of its n-grams' rows alone (`compose_unseen`). Numpy only:
the query commands read these without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FNV_OFFSET, FNV_PRIME, MASK32 = 2166136261, 16777619, 0xFFFFFFFF
COMPOSE_CHUNK = 8192  # words per gather in compose


def _byte_term(byte: int) -> int:
    """What fastText xors in for one byte: the byte as a signed char, widened to uint32."""
    return byte | 0xFFFFFF00 if byte >= 128 else byte


def ngram_hashes(word: str, min_n: int, max_n: int, buckets: int) -> list[int]:
    """The bucket rows of `word`'s character n-grams, in fastText's order (by start, then length).

    Each start's hash is extended one character at a time, so a word costs O(len x max_n) byte
    steps, not one full hash per n-gram.
    """
    raw = f"<{word}>".encode()
    starts = [i for i, b in enumerate(raw) if b & 0xC0 != 0x80]  # a byte 10xxxxxx continues a character
    ends = [*starts[1:], len(raw)]  # the end of character k is the start of character k + 1
    rows = []
    for k, start in enumerate(starts):
        h, pos = FNV_OFFSET, start
        for n in range(1, max_n + 1):
            if k + n > len(starts):
                break
            end = ends[k + n - 1]
            for byte in raw[pos:end]:
                h = ((h ^ _byte_term(byte)) * FNV_PRIME) & MASK32
            pos = end
            if n >= min_n and not (n == 1 and (k == 0 or end == len(raw))):
                rows.append(h % buckets)
    return rows


@dataclass
class SubwordTable:
    """Every vocabulary word's n-gram rows, concatenated: word i's are ids[offsets[i]:offsets[i + 1]]."""

    offsets: np.ndarray  # (V + 1,) int64
    ids: np.ndarray  # (total,) int64, rows of the n-gram matrix

    @property
    def counts(self) -> np.ndarray:
        """(V,) n-grams per word."""
        return np.diff(self.offsets)

    def rows(self, word: int) -> np.ndarray:
        return self.ids[self.offsets[word] : self.offsets[word + 1]]


def subword_table(words: list[str], min_n: int, max_n: int, buckets: int) -> SubwordTable:
    """The n-gram rows of a vocabulary (gensim's buckets_word, as one flat array)."""
    per_word = [ngram_hashes(word, min_n, max_n, buckets) for word in words]
    offsets = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum([len(rows) for rows in per_word], out=offsets[1:])
    ids = np.fromiter((row for rows in per_word for row in rows), dtype=np.int64, count=int(offsets[-1]))
    return SubwordTable(offsets, ids)


def compose(word_vectors: np.ndarray, ngram_vectors: np.ndarray, table: SubwordTable) -> np.ndarray:
    """(V, D) vectors of the vocabulary: (v_w + sum of w's n-gram rows) / (1 + number of n-grams).

    This is fastText's input vector of a word (Model::computeHidden averages the word's row and its
    subwords' rows) and gensim's wv[word] (FastTextKeyedVectors.adjust_vectors).
    """
    summed = word_vectors.astype(np.float32, copy=True)
    counts = table.counts
    for lo in range(0, len(summed), COMPOSE_CHUNK):  # (chunk n-grams, D) gathered at a time, not all at once
        hi = min(lo + COMPOSE_CHUNK, len(summed))
        has = np.flatnonzero(counts[lo:hi]) + lo  # reduceat would give an empty group its neighbour's row
        if len(has):
            first = table.offsets[lo]
            gathered = ngram_vectors[table.ids[first : table.offsets[hi]]]
            summed[has] += np.add.reduceat(gathered, table.offsets[has] - first, axis=0)
    return summed / (1.0 + counts[:, None]).astype(np.float32)


def compose_unseen(word: str, ngram_vectors: np.ndarray, min_n: int, max_n: int) -> np.ndarray | None:
    """An out-of-vocabulary word's vector: the mean of its n-gram rows, as gensim's wv[word] for an
    unseen word and fastText's getWordVector; None when the word has no n-gram of min_n..max_n."""
    rows = ngram_hashes(word, min_n, max_n, len(ngram_vectors))
    if not rows:
        return None
    return np.asarray(ngram_vectors[rows], dtype=np.float32).sum(axis=0) / np.float32(len(rows))
