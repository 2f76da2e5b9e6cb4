"""word2vec.c's Huffman tree over the vocabulary, for the hierarchical softmax (Morin & Bengio 2005;
Mikolov et al. 2013, section 2.1).

Each word is a leaf; the V - 1 inner nodes each own an output vector (a row of `out_vectors`).
p(w | v_in) is the product, over the inner nodes n on the path from the root to w, of
sigma((1 - 2 code_n) <v_in, u_n>): code 0 goes one way (probability sigma(f)), code 1 the other.
Frequent words sit near the root, so a prediction costs ~log2(V) dot products, not V.

Built as word2vec.c's CreateBinaryTree: counts sorted descending, then the two smallest
unmerged nodes are merged V - 1 times, scanning the sorted leaves and the new inner nodes
(which come out in increasing count) with one pointer each; the second smallest of each merge
gets code 1. Inner node a (0-based, created a-th) is out_vectors row a; the root is V - 2.
gensim's heap-based `_build_heap` gives the same code lengths (ties may differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HuffmanTree:
    """Per word, the path from the root: codes (V, L) int8 padded with -1, points (V, L) inner-node
    rows padded with 0, lengths (V,); L is the longest code."""

    codes: np.ndarray
    points: np.ndarray
    lengths: np.ndarray
    node_counts: np.ndarray  # (V - 1,) inner node a's count, the sum of the counts below it: never decreasing in a

    def path(self, word: int) -> tuple[list[int], list[int]]:
        """(codes, inner nodes) of one word, root first."""
        n = int(self.lengths[word])
        return self.codes[word, :n].tolist(), self.points[word, :n].tolist()


def huffman_tree(counts: np.ndarray) -> HuffmanTree:
    """The tree of word2vec.c for vocabulary `counts` (any order: a continued run appends new words)."""
    counts = np.asarray(counts, dtype=np.int64)
    vocab = len(counts)
    if vocab < 2:  # word2vec.c would read past its arrays; one word needs no prediction
        return HuffmanTree(
            np.full((vocab, 1), -1, np.int8),
            np.zeros((vocab, 1), np.int64),
            np.zeros(vocab, np.int64),
            np.zeros(0, np.int64),
        )
    order = np.argsort(-counts, kind="stable")  # word2vec.c's vocabulary is sorted by count, descending
    parent, binary, merged = _merge(counts[order])
    codes_sorted, points_sorted = [], []
    for leaf in range(vocab):
        code, point, node = [], [], leaf
        while node != 2 * vocab - 2:  # up to the root
            code.append(binary[node])
            node = parent[node]
            point.append(node - vocab)  # the inner node whose branch `code` is
        codes_sorted.append(code[::-1])
        points_sorted.append(point[::-1])
    width = max(len(c) for c in codes_sorted)
    codes = np.full((vocab, width), -1, np.int8)
    points = np.zeros((vocab, width), np.int64)
    lengths = np.zeros(vocab, np.int64)
    for rank, word in enumerate(order):
        n = len(codes_sorted[rank])
        codes[word, :n], points[word, :n], lengths[word] = codes_sorted[rank], points_sorted[rank], n
    return HuffmanTree(codes, points, lengths, merged)


def _merge(sorted_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """word2vec.c's merge loop over counts sorted descending: each node's parent and branch bit, and each
    inner node's count (the two it merged)."""
    vocab = len(sorted_counts)
    count = np.concatenate([sorted_counts, np.full(vocab, np.iinfo(np.int64).max // 4)])
    parent = np.zeros(2 * vocab, np.int64)
    binary = np.zeros(2 * vocab, np.int8)
    leaf, inner = vocab - 1, vocab  # the smallest unmerged leaf; the oldest unmerged inner node
    for a in range(vocab - 1):
        smallest = []
        for _ in range(2):
            if leaf >= 0 and count[leaf] < count[inner]:
                smallest.append(leaf)
                leaf -= 1
            else:
                smallest.append(inner)
                inner += 1
        count[vocab + a] = count[smallest[0]] + count[smallest[1]]
        parent[smallest] = vocab + a
        binary[smallest[1]] = 1
    return parent, binary, count[vocab : 2 * vocab - 1].copy()
