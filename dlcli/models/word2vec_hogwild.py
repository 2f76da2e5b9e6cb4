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
            negative sampling: 1 positive + `negative` noise words ~ unigram^0.75 (alias table),
                               drawn one prediction ahead, their rows prefetched
            hierarchical:      the inner nodes on the target's Huffman path (model.hs), the busiest
                               in each thread's own copy (`hot_nodes`)
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
from dlcli.models.huffman import HuffmanTree

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


if numba is not None:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _prefetch(typingctx, address):
        """Ask the CPU to bring the cache line at `address` in, for writing (LLVM's llvm.prefetch): a hint
        that returns at once, so the load of a row needed soon overlaps the work of now."""

        def codegen(context, builder, signature, args):
            byte_ptr = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), "llvm.prefetch.p0i8"
            )
            write, keep_in_all_levels, data_cache = ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)
            builder.call(fn, [builder.inttoptr(args[0], byte_ptr), write, keep_in_all_levels, data_cache])
            return context.get_dummy_value()

        return types.void(types.uintp), codegen

else:

    def _prefetch(address):
        pass


@_jit
def _prefetch_row(matrix, row):
    """Prefetch every cache line of matrix[row] (a 100-float row spans 7 lines of 64 bytes)."""
    start = matrix.ctypes.data + row * matrix.strides[0]
    for offset in range(0, matrix.shape[1] * matrix.itemsize, 64):
        _prefetch(np.uintp(start + offset))


# sigma(x) and log sigma(x) on a grid over [-TABLE_MAX, TABLE_MAX], interpolated linearly
# (error < 1e-5): like word2vec.c's EXP_TABLE, it spares an exp and a log per dot product,
# which would otherwise cost as much as the 100-wide dot product itself.
TABLE_MAX, TABLE_SIZE = 8.0, 4096
_GRID = np.linspace(-TABLE_MAX, TABLE_MAX, TABLE_SIZE + 1)
_SIGMOID = 1.0 / (1.0 + np.exp(-_GRID))
_LOG_SIGMOID = -np.logaddexp(0.0, -_GRID)
_SCALE = TABLE_SIZE / (2 * TABLE_MAX)


@_jit
def _sigmoid(f):
    """(sigma(f), log sigma(f)): from the tables inside the grid, exactly outside it (rare)."""
    if f <= -TABLE_MAX or f >= TABLE_MAX:
        e = math.exp(-abs(f))
        log_sigma = min(f, 0.0) - math.log1p(e)
        return math.exp(log_sigma), log_sigma
    x = (f + TABLE_MAX) * _SCALE
    i = int(x)
    frac = x - i
    sigma = _SIGMOID[i] + frac * (_SIGMOID[i + 1] - _SIGMOID[i])
    return sigma, _LOG_SIGMOID[i] + frac * (_LOG_SIGMOID[i + 1] - _LOG_SIGMOID[i])


@_jit
def _next(state):
    # word2vec.c: next_random = next_random * 25214903917 + 11 (mod 2^64)
    return state * np.uint64(25214903917) + np.uint64(11)


@_jit
def _dot(a, b):
    f = np.float32(0.0)  # float32 throughout: the loops then vectorize
    for i in range(a.shape[0]):
        f += a[i] * b[i]
    return f


@_jit
def _draw_noise(noise_prob, noise_alias, syn1, noise, state):
    """Fill noise with draws from the alias table (`alias_table`) and prefetch their rows of syn1; returns state.

    Each prediction trains with the noise words drawn during the prediction before it (`_negative_sampling`):
    their rows, random among the vocabulary's and mostly outside the caches, are then on their way while
    that prediction computes, rather than fetched when needed (a 2-core EPYC: the kernel alone ~15% faster;
    BENCHMARKS.md, "word2vec's noise rows prefetched"). The draws are the same sequence of the same
    generator, one prediction earlier.
    """
    vocab = np.uint64(noise_prob.shape[0])
    for k in range(noise.shape[0]):
        # Walker's alias method: a uniform column, then it or its alias (O(1), exact)
        state = _next(state)
        word = np.int64((state >> np.uint64(16)) % vocab)
        state = _next(state)
        if ((state >> np.uint64(40)) & np.uint64(0xFFFFFF)) / 16777216.0 >= noise_prob[word]:
            word = noise_alias[word]
        noise[k] = word
        _prefetch_row(syn1, word)
    return state


@_jit
def _negative_sampling(l1, syn1, target, noise, noise_prob, noise_alias, alpha, neu1e, state, words, dots):
    """One prediction of `target` from input vector l1: SGD on syn1's rows, gradient of l1 added to neu1e.

    Loss -log sigma(v'_t . l1) - sum_k log sigma(-v'_k . l1), k the noise words in `noise` (drawn by the
    prediction before; a draw equal to the target is skipped, as in word2vec.c), which this prediction
    refills for the next one. words, dots: scratch of at least len(noise) + 1 entries. All dot products come
    before any update: the rows' loads are then independent of each other, so the CPU has them in flight
    together rather than one cache miss after another. The result equals word2vec.c's one-by-one loop, as
    l1 does not change within a prediction: a noise word drawn twice reads its row after the first
    update, as there.
    """
    words[0] = target
    n = 1
    for k in range(noise.shape[0]):
        if noise[k] != target:
            words[n] = noise[k]
            n += 1
    state = _draw_noise(noise_prob, noise_alias, syn1, noise, state)
    for d in range(n):
        dots[d] = _dot(l1, syn1[words[d]])
    loss = 0.0
    for d in range(n):
        word = words[d]
        row = syn1[word]
        f = dots[d]
        for earlier in range(1, d):
            if words[earlier] == word:  # drawn before: this row has moved since its dot product
                f = _dot(l1, row)
                break
        sigma, log_sigma = _sigmoid(f)
        if d == 0:  # the target: -log sigma(f)
            label = 1.0
            loss -= log_sigma
        else:  # a noise word: -log sigma(-f) = f - log sigma(f)
            label = 0.0
            loss += f - log_sigma
        g = np.float32((label - sigma) * alpha)
        for i in range(l1.shape[0]):
            neu1e[i] += g * row[i]
            row[i] += g * l1[i]
    return loss, state


@_jit
def _full_softmax(l1, syn1, target, alpha, neu1e, scores):
    """One prediction of `target` under p(w | l1) = softmax(syn1 @ l1): O(V x dim) per pair."""
    vocab, dim = syn1.shape
    top = -1e30
    for w in range(vocab):
        f = _dot(l1, syn1[w])
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
def _out_row(syn1, own_rows, own_lo, row):
    """Output row `row`: from this thread's own copy when it is one of syn1[own_lo : own_lo + len(own_rows)]."""
    if own_lo <= row < own_lo + own_rows.shape[0]:
        return own_rows[row - own_lo]
    return syn1[row]


@_jit
def _hierarchical_softmax(l1, syn1, code, point, alpha, neu1e, dots, own_rows, own_lo):
    """One prediction of the word whose Huffman path is (code, point), padded with code -1.

    Loss -sum_n log sigma((1 - 2 code_n) f_n), f_n = u_n . l1; word2vec.c's g = (1 - code - sigma(f)) alpha.
    word2vec.c skips a node with |f| >= 6 (its table's edge); here every node trains, with the exact
    sigma outside the table, as the negative-sampling loop does. The path's nodes are distinct and l1
    does not change along it, so all dot products come first (their loads in flight together; dots:
    scratch as long as the path) and the result is word2vec.c's node-by-node loop. The nodes in
    own_rows' range are read and written there (`train_sentences`).
    """
    depth = 0
    while depth < code.shape[0] and code[depth] >= 0:
        dots[depth] = _dot(l1, _out_row(syn1, own_rows, own_lo, point[depth]))
        depth += 1
    loss = 0.0
    for d in range(depth):
        row = _out_row(syn1, own_rows, own_lo, point[d])
        f = dots[d]
        sigma, log_sigma = _sigmoid(f)
        # code 0: -log sigma(f); code 1: -log sigma(-f) = f - log sigma(f)
        loss += -log_sigma if code[d] == 0 else f - log_sigma
        g = np.float32((1.0 - code[d] - sigma) * alpha)
        for i in range(l1.shape[0]):
            neu1e[i] += g * row[i]
            row[i] += g * l1[i]
    return loss


@_jit
def _predict(l1, syn1, target, objective, alpha, neu1e, scratch, state):
    """One prediction of `target` from l1 under the run's objective; returns (loss, state).

    objective: (hs, codes, points, noise, noise_prob, noise_alias, own_rows, own_lo) as `train_sentences`
    describes them, noise holding the pre-drawn noise words (negative sampling; empty otherwise);
    scratch: (scores, words, dots) for the objectives that read several rows (`train_sentences` sizes them).
    """
    hs, codes, points, noise, noise_prob, noise_alias, own_rows, own_lo = objective
    scores, words, dots = scratch
    if hs:
        loss = _hierarchical_softmax(l1, syn1, codes[target], points[target], alpha, neu1e, dots, own_rows, own_lo)
        return loss, state
    if noise.shape[0] > 0:
        return _negative_sampling(l1, syn1, target, noise, noise_prob, noise_alias, alpha, neu1e, state, words, dots)
    return _full_softmax(l1, syn1, target, alpha, neu1e, scores), state


@_jit
def _subsample(raw_ids, remap, keep, sentence, state):
    """The words of raw_ids that train, in order, into sentence[:n]: those in the vocabulary
    (remap >= 0), each kept with its subsampling probability. Returns (n, state)."""
    n = 0
    for raw in raw_ids:
        word = remap[raw]
        if word < 0:
            continue
        state = _next(state)
        # word2vec.c: keep when keep_probability >= a uniform 16-bit fraction. These low 16 bits of the
        # state repeat with period 2^16 and tie each draw to the one before (two adjacent words of keep
        # probability 0.002 are kept together 8x as often as independent draws keep them, never at
        # distance 2); gensim's independent draws (bits 16..47) scored 0.85 points lower in analogies over
        # three seeds (BENCHMARKS.md, bench_word2vec 2026-12-03 14:56), so dl keeps word2vec.c's.
        if keep[word] < (state & np.uint64(0xFFFF)) / 65536.0:
            continue
        sentence[n] = word
        n += 1
    return n, state


@_jit
def _add_rows(word, syn0, ngrams, sub_offsets, sub_ids, out):
    """out += the word's row and its n-gram rows (fastText's subwords); returns how many rows were added."""
    dim = out.shape[0]
    for i in range(dim):
        out[i] += syn0[word, i]
    for k in range(sub_offsets[word], sub_offsets[word + 1]):
        row = ngrams[sub_ids[k]]
        for i in range(dim):
            out[i] += row[i]
    return 1 + sub_offsets[word + 1] - sub_offsets[word]


@_jit
def _prefetch_inputs(word, syn0, ngrams, sub_offsets, sub_ids):
    """Prefetch the word's row and its n-gram rows. A word enters the windows once and is then the context of
    up to 2 x window predictions, so the first reads them from memory; fastText's ~15 n-gram rows a word,
    random among its millions, would otherwise be a stall of ~15 misses per word."""
    _prefetch_row(syn0, word)
    for k in range(sub_offsets[word], sub_offsets[word + 1]):
        _prefetch_row(ngrams, sub_ids[k])


@_jit
def _prefetch_outputs(word, syn1, hs, codes, points, own_lo, own_hi):
    """Prefetch the output rows a prediction of `word` reads first: its Huffman path's (hs; the nodes in
    [own_lo, own_hi) are the thread's own, cached copies) or its own row (negative sampling). Every
    prediction of a window has the same target, so only the window's first would wait for them."""
    if not hs:
        _prefetch_row(syn1, word)
        return
    for d in range(codes.shape[1]):
        if codes[word, d] < 0:
            break
        node = points[word, d]
        if node < own_lo or node >= own_hi:
            _prefetch_row(syn1, node)


@_jit
def _spread(word, syn0, ngrams, sub_offsets, sub_ids, neu1e):
    """The input's update reaches the word's row and each n-gram row whole, as fastText's
    Model::update adds the gradient to every input row (only its supervised mode divides it)."""
    dim = neu1e.shape[0]
    for i in range(dim):
        syn0[word, i] += neu1e[i]
    for k in range(sub_offsets[word], sub_offsets[word + 1]):
        row = ngrams[sub_ids[k]]
        for i in range(dim):
            row[i] += neu1e[i]


@_jit
def train_sentences(
    syn0,
    syn1,
    raw_ids,
    bounds,
    remap,
    keep,
    noise_prob,
    noise_alias,
    codes,
    points,
    ngrams,
    sub_offsets,
    sub_ids,
    sg,
    hs,
    negative,
    window,
    alpha,
    seed,
    own_rows,
    own_lo,
):
    """Train on sentences raw_ids[bounds[s]:bounds[s+1]]; returns (loss sum, predictions, words kept).

    raw_ids: corpus-order word ids (before min_count), remap: raw id -> vocabulary id or -1,
    keep: per vocabulary id, the subsampling keep probability; noise_prob/noise_alias: the
    noise distribution as an alias table (`alias_table`); codes/points: the Huffman tree
    (models/huffman.py), read when hs (the hierarchical softmax; negative is 0 then); ngrams: fastText's
    n-gram matrix (model.subwords; zero rows for word2vec), word w's n-gram rows being
    sub_ids[sub_offsets[w]:sub_offsets[w + 1]] (models/subwords.py); own_rows: this call's own copy of the
    hierarchical softmax's rows syn1[own_lo : own_lo + len(own_rows)], trained there instead (no rows: none;
    see `hot_nodes`).
    """
    dim = syn0.shape[1]
    subwords = ngrams.shape[0] > 0
    composed = np.empty(dim, dtype=syn0.dtype)
    neu1 = np.empty(dim, dtype=syn0.dtype)
    neu1e = np.empty(dim, dtype=syn0.dtype)
    scores = np.empty(syn1.shape[0] if negative == 0 and not hs else 1, dtype=np.float64)
    sentence = np.empty(MAX_SENTENCE, dtype=np.int64)
    rows = max(negative + 1, codes.shape[1])  # the most rows one prediction reads (negative sampling or a path)
    words = np.empty(rows, dtype=np.int64)
    dots = np.empty(rows, dtype=np.float32)
    state = np.uint64(seed)
    noise = np.empty(negative, dtype=np.int64)  # the next prediction's noise words (`_negative_sampling`)
    if negative > 0:
        state = _draw_noise(noise_prob, noise_alias, syn1, noise, state)
    objective = (hs, codes, points, noise, noise_prob, noise_alias, own_rows, own_lo)
    own_hi = own_lo + own_rows.shape[0]
    scratch = (scores, words, dots)
    loss_sum = 0.0
    predictions = 0
    kept_words = 0
    for s in range(bounds.shape[0] - 1):
        start = bounds[s]
        while start < bounds[s + 1]:
            stop = min(start + MAX_SENTENCE, bounds[s + 1])
            n, state = _subsample(raw_ids[start:stop], remap, keep, sentence, state)
            start = stop
            kept_words += n
            for pos in range(n):
                state = _next(state)
                reduced = window - np.int64(state % np.uint64(window))  # in 1..window
                lo = max(0, pos - reduced)
                hi = min(n, pos + reduced + 1)
                target = sentence[pos]
                if pos + window + 1 < n:  # the word that enters the windows next: its input rows on their way
                    _prefetch_inputs(sentence[pos + window + 1], syn0, ngrams, sub_offsets, sub_ids)
                if pos + 1 < n:  # and the next window's target: its output rows
                    _prefetch_outputs(sentence[pos + 1], syn1, hs, codes, points, own_lo, own_hi)
                if sg:
                    for c in range(lo, hi):
                        if c == pos:
                            continue
                        if subwords:  # fastText: the average of the word's row and its n-grams' rows
                            composed[:] = 0.0
                            inv = np.float32(1.0 / _add_rows(sentence[c], syn0, ngrams, sub_offsets, sub_ids, composed))
                            for i in range(dim):
                                composed[i] *= inv
                            l1 = composed
                        else:
                            l1 = syn0[sentence[c]]
                        neu1e[:] = 0.0
                        loss, state = _predict(l1, syn1, target, objective, alpha, neu1e, scratch, state)
                        loss_sum += loss
                        predictions += 1
                        _spread(sentence[c], syn0, ngrams, sub_offsets, sub_ids, neu1e)
                else:
                    if hi - lo == 1:
                        continue
                    # the mean of every input row of the window: the words' and (subwords) their n-grams',
                    # all counted alike, as fastText's CBOW and gensim's cbow_mean
                    neu1[:] = 0.0
                    count = 0
                    for c in range(lo, hi):
                        if c != pos:
                            count += _add_rows(sentence[c], syn0, ngrams, sub_offsets, sub_ids, neu1)
                    inv = np.float32(1.0 / count)
                    for i in range(dim):
                        neu1[i] *= inv
                    neu1e[:] = 0.0
                    loss, state = _predict(neu1, syn1, target, objective, alpha, neu1e, scratch, state)
                    loss_sum += loss
                    predictions += 1
                    # word2vec.c adds the whole error to every context word of the window (and fastText to
                    # every n-gram row of each)
                    for c in range(lo, hi):
                        if c != pos:
                            _spread(sentence[c], syn0, ngrams, sub_offsets, sub_ids, neu1e)
    return loss_sum, predictions, kept_words


# The hierarchical softmax's busiest rows, trained apart by each thread. Every prediction updates the root's
# row and most update the few nodes below it; threads sharing those rows pass their cache lines from core to
# core on nearly every prediction, which cost 2 threads up to half their speed (BENCHMARKS.md, "word2vec's
# hierarchical softmax on 2 threads"). The nodes on the paths of at least HOT_SHARE of the corpus's words are
# hit hundreds of times per thread and batch: their rows settle within a batch, so each thread's own copy,
# averaged with the others' after it, is what the shared row would have become (`tasks/word2vec.hogwild_step`).
# Even the 16 busiest nodes of a 70k-word vocabulary gave most of the speed; 2% picks 61 of its 72,739.
HOT_SHARE = 0.02


def hot_nodes(tree: HuffmanTree) -> tuple[int, int]:
    """[lo, hi): the inner nodes whose rows each thread trains in its own copy: those on the paths of at least
    HOT_SHARE of the words counted. Word2vec.c creates inner node a a-th, in increasing count (`huffman_tree`),
    so they are the last rows, up to the root V - 2, whose count is every word's."""
    counts = tree.node_counts
    if len(counts) == 0:
        return 0, 0
    return int(np.searchsorted(counts, HOT_SHARE * counts[-1])), len(counts)


def alias_table(counts: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """The noise distribution counts^exponent as Walker's alias table (Vose's construction).

    Draw: column i uniform in [0, V), then i with probability prob[i], else alias[i]. It is
    exact and O(1); word2vec.c's 10^8-entry unigram table and gensim's binary search over a
    cumulative table each cost a cache miss or ~17 of them per draw.
    """
    weights = counts.astype(np.float64) ** exponent
    scaled = weights / weights.sum() * len(weights)
    prob = np.ones(len(weights), dtype=np.float32)
    alias = np.arange(len(weights), dtype=np.int64)
    small = [i for i in range(len(weights)) if scaled[i] < 1.0]
    large = [i for i in range(len(weights)) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias  # what is left over has prob 1 (up to rounding)
