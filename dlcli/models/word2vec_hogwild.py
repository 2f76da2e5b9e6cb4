"""Word2vec's CPU training loop, as word2vec.c runs it: plain SGD, one (context, target) pair
at a time, several threads updating the shared vectors without locks (Hogwild, Recht et al. 2011).

A batched PyTorch step cannot compete here: on a CPU the gather/scatter of a few hundred
thousand pairs costs far more than the 100-wide dot products. This loop is compiled by numba
(`nogil`, so Python threads run it in parallel) and does, per sentence of a batch:

    ids -> vocabulary ids (-1: below min_count, dropped) -> subsampled (keep probability)
    for each position: reduced window b ~ U{1..window} (the dynamic window)
        for each context word within b positions:
            skip-gram: the context word's input vector predicts the target's output vector
            CBOW:      the mean of the window's input vectors predicts the target
            negative sampling: 1 positive + `negative` noise words ~ unigram^0.75 (cum_table)
            full softmax:      every output vector (small vocabularies only)

Which vector is the input in skip-gram follows word2vec.c and gensim: for a pair
(target w_t, context w_c), l1 = v_{w_c} and the prediction is of w_t. The objective is
symmetric in the pairs, so this equals Mikolov et al.'s p(w_c | w_t) summed over the corpus.

The random numbers are word2vec.c's linear congruential generator, seeded per (batch, thread):
a run with one worker is exactly reproducible, and so is its resume.
"""

from __future__ import annotations

import math

import numpy as np

from dlcli.data.corpus import MAX_SENTENCE  # longer lines are cut into pieces of this many words

try:
    import numba
except ImportError:  # the batched PyTorch path still works; dl says how to get this one
    numba = None


def available() -> bool:
    return numba is not None


def _jit(fn):
    if numba is None:
        return fn
    return numba.njit(nogil=True, fastmath=True, cache=True)(fn)


@_jit
def _next(state):
    # word2vec.c: next_random = next_random * 25214903917 + 11 (mod 2^64)
    return state * np.uint64(25214903917) + np.uint64(11)


@_jit
def _negative_sampling(l1, syn1, target, negative, cum_table, alpha, neu1e, state):
    """One prediction of `target` from input vector l1: SGD on syn1's rows, gradient of l1 added to neu1e.

    Loss -log sigma(v'_t . l1) - sum_k log sigma(-v'_k . l1), k drawn from cum_table.
    """
    dim = l1.shape[0]
    loss = 0.0
    domain = cum_table[-1]
    for d in range(negative + 1):
        if d == 0:
            word = target
            label = 1.0
        else:
            state = _next(state)
            word = np.searchsorted(cum_table, np.int64((state >> np.uint64(16)) % np.uint64(domain)), side="right")
            if word == target:
                continue
            label = 0.0
        row = syn1[word]
        f = np.float32(0.0)  # float32 throughout: the loops then vectorize
        for i in range(dim):
            f += l1[i] * row[i]
        # sigma(f) and the loss (-log sigma(f) for the positive, -log sigma(-f) for noise) from one exp
        e = math.exp(-abs(f))
        sigma = 1.0 / (1.0 + e) if f >= 0 else e / (1.0 + e)
        z = -f if label == 1.0 else f
        loss += max(z, 0.0) + math.log1p(e)
        g = np.float32((label - sigma) * alpha)
        for i in range(dim):
            neu1e[i] += g * row[i]
            row[i] += g * l1[i]
    return loss, state


@_jit
def _full_softmax(l1, syn1, target, alpha, neu1e, scores):
    """One prediction of `target` under p(w | l1) = softmax(syn1 @ l1): O(V x dim) per pair."""
    vocab, dim = syn1.shape
    top = -1e30
    for w in range(vocab):
        f = np.float32(0.0)
        for i in range(dim):
            f += l1[i] * syn1[w, i]
        scores[w] = f
        top = max(top, f)
    total = 0.0
    for w in range(vocab):
        scores[w] = math.exp(scores[w] - top)
        total += scores[w]
    loss = -math.log(max(scores[target] / total, 1e-30))
    for w in range(vocab):
        g = np.float32(((1.0 if w == target else 0.0) - scores[w] / total) * alpha)
        for i in range(dim):
            neu1e[i] += g * syn1[w, i]
            syn1[w, i] += g * l1[i]
    return loss


@_jit
def train_sentences(syn0, syn1, raw_ids, bounds, remap, keep, cum_table, sg, negative, window, alpha, seed):
    """Train on sentences raw_ids[bounds[s]:bounds[s+1]]; returns (loss sum, predictions, words kept).

    raw_ids: corpus-order word ids (before min_count), remap: raw id -> vocabulary id or -1,
    keep: per vocabulary id, the subsampling keep probability.
    """
    dim = syn0.shape[1]
    neu1 = np.empty(dim, dtype=syn0.dtype)
    neu1e = np.empty(dim, dtype=syn0.dtype)
    scores = np.empty(syn1.shape[0] if negative == 0 else 1, dtype=np.float64)
    sentence = np.empty(MAX_SENTENCE, dtype=np.int64)
    state = np.uint64(seed)
    loss_sum = 0.0
    predictions = 0
    kept_words = 0
    for s in range(bounds.shape[0] - 1):
        start = bounds[s]
        while start < bounds[s + 1]:
            stop = min(start + MAX_SENTENCE, bounds[s + 1])
            n = 0
            for j in range(start, stop):
                word = remap[raw_ids[j]]
                if word < 0:
                    continue
                state = _next(state)
                # word2vec.c: keep when keep_probability >= a uniform 16-bit fraction
                if keep[word] < (state & np.uint64(0xFFFF)) / 65536.0:
                    continue
                sentence[n] = word
                n += 1
            start = stop
            kept_words += n
            for pos in range(n):
                state = _next(state)
                reduced = window - np.int64(state % np.uint64(window))  # in 1..window
                lo = max(0, pos - reduced)
                hi = min(n, pos + reduced + 1)
                target = sentence[pos]
                if sg:
                    for c in range(lo, hi):
                        if c == pos:
                            continue
                        l1 = syn0[sentence[c]]
                        neu1e[:] = 0.0
                        if negative > 0:
                            loss, state = _negative_sampling(l1, syn1, target, negative, cum_table, alpha, neu1e, state)
                        else:
                            loss = _full_softmax(l1, syn1, target, alpha, neu1e, scores)
                        loss_sum += loss
                        predictions += 1
                        for i in range(dim):
                            l1[i] += neu1e[i]
                else:
                    count = hi - lo - 1
                    if count == 0:
                        continue
                    neu1[:] = 0.0
                    for c in range(lo, hi):
                        if c != pos:
                            for i in range(dim):
                                neu1[i] += syn0[sentence[c], i]
                    inv = np.float32(1.0 / count)
                    for i in range(dim):
                        neu1[i] *= inv  # cbow_mean, gensim's default
                    neu1e[:] = 0.0
                    if negative > 0:
                        loss, state = _negative_sampling(neu1, syn1, target, negative, cum_table, alpha, neu1e, state)
                    else:
                        loss = _full_softmax(neu1, syn1, target, alpha, neu1e, scores)
                    loss_sum += loss
                    predictions += 1
                    # word2vec.c adds the whole error to every context word of the window
                    for c in range(lo, hi):
                        if c != pos:
                            for i in range(dim):
                                syn0[sentence[c], i] += neu1e[i]
    return loss_sum, predictions, kept_words


def cum_table(counts: np.ndarray, exponent: float, domain: int = 2**31 - 1) -> np.ndarray:
    """Cumulative unigram^exponent table scaled to [0, domain], as gensim's make_cum_table."""
    weights = counts.astype(np.float64) ** exponent
    return np.round(np.cumsum(weights) / weights.sum() * domain).astype(np.int64)
