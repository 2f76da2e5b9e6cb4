"""Skip-gram word vectors (Mikolov et al. 2013): the two objectives, with their gradients written out.

Each word w has an input vector v_w (a row of `in_vectors`, the word vectors users keep) and
an output vector v'_w (a row of `out_vectors`). For a target w_I and a context word w_O:

    full softmax:       L = -log p(w_O | w_I),  p(w_O | w_I) = exp(v'_O . v_I) / sum_w exp(v'_w . v_I)
    negative sampling:  L = -log sigma(v'_O . v_I) - sum_k log sigma(-v'_k . v_I),  w_k ~ P_n(w)
    hierarchical:       L = -sum_{n on O's path} log sigma((1 - 2 code_n) u_n . v_I)

where P_n is the unigram distribution raised to 3/4 (`noise_distribution`) and the path is the
inner nodes n (rows u_n of `out_vectors`) from the root of the Huffman tree to O (models/huffman.py). The explicit
gradients are what a Hogwild CPU loop (as word2vec.c) applies without autograd; the tests hold
them equal to autograd's.

FastText adds fastText's n-gram matrix (Bojanowski et al. 2017): v_I is then the mean of the word's
row and its character n-grams' rows (models/subwords.py), and dL/dv_I is added whole to each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class SkipGram(nn.Module):
    def __init__(self, vocab_size: int, dim: int, seed: int = 0):
        super().__init__()
        # inputs random (input_rows), outputs zero, as word2vec.c, gensim and fastText start
        self.in_vectors = nn.Parameter(input_rows(torch.Generator().manual_seed(seed), vocab_size, dim))
        self.out_vectors = nn.Parameter(torch.zeros(vocab_size, dim))

    def softmax_loss(self, targets: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Mean over pairs of -log p(context | target) under the full softmax. targets, contexts: (B,)."""
        scores = self.in_vectors[targets] @ self.out_vectors.T  # (B, V)
        return F.cross_entropy(scores, contexts)

    def negative_sampling_loss(
        self, targets: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Mean over pairs of the negative-sampling objective. negatives: (B, K) noise word ids."""
        v_in = self.in_vectors[targets]  # (B, D)
        positive = (self.out_vectors[contexts] * v_in).sum(-1)  # (B,)
        negative = torch.einsum("bkd,bd->bk", self.out_vectors[negatives], v_in)  # (B, K)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()

    def hierarchical_softmax_loss(
        self, targets: torch.Tensor, contexts: torch.Tensor, codes: torch.Tensor, points: torch.Tensor
    ) -> torch.Tensor:
        """Mean over pairs of the hierarchical softmax loss. codes, points: (V, L) of the Huffman tree
        (codes padded with -1), indexed by the context word."""
        code, point = codes[contexts], points[contexts]  # (B, L)
        f = torch.einsum("bld,bd->bl", self.out_vectors[point], self.in_vectors[targets])  # (B, L)
        # word2vec.c: label 1 - code, so code 0 is probability sigma(f) and code 1 is sigma(-f)
        return -(F.logsigmoid((1 - 2 * code) * f) * (code >= 0)).sum(-1).mean()


class FastText(SkipGram):
    """Skip-gram/CBOW with fastText's subwords (Bojanowski et al. 2017): in_vectors hold the words' own
    rows and ngram_vectors the `buckets` rows their character n-grams hash into (models/subwords.py).
    A word's input vector is the mean of its row and its n-grams' rows."""

    def __init__(self, vocab_size: int, dim: int, buckets: int, seed: int = 0):
        super().__init__(vocab_size, dim, seed)
        # fastText draws its whole input matrix (words, then buckets) from one stream: the bucket rows
        # follow the word rows SkipGram drew from the same seed
        gen = torch.Generator().manual_seed(seed)
        input_rows(gen, vocab_size, dim)
        self.ngram_vectors = nn.Parameter(input_rows(gen, buckets, dim))


def input_rows(gen: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    """Input vectors' init: uniform in [-1/dim, 1/dim], as gensim (prep_vectors) and fastText start.

    word2vec.c draws half that range; with it dl's skip-gram scored 0.22 points below this init over
    three seeds on ../shared/datasets/corpus (BENCHMARKS.md, word2vec accuracy experiments)."""
    return (torch.rand(rows, dim, generator=gen) * 2 - 1) / dim


def noise_distribution(counts: torch.Tensor, exponent: float = 0.75) -> torch.Tensor:
    """P_n(w) proportional to count(w)^exponent (3/4 in the paper; gensim's ns_exponent)."""
    weights = counts.double() ** exponent
    return (weights / weights.sum()).float()


def negative_sampling_grads(
    in_vectors: torch.Tensor, out_vectors: torch.Tensor, target: int, context: int, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """d L / d v_I and d L / d v'_w (for [context, *negatives]) of one pair's negative-sampling loss.

    With s_O = v'_O . v_I and s_k = v'_k . v_I:
        dL/dv_I  = (sigma(s_O) - 1) v'_O + sum_k sigma(s_k) v'_k
        dL/dv'_O = (sigma(s_O) - 1) v_I,      dL/dv'_k = sigma(s_k) v_I
    (a noise word drawn twice gets both terms, as the sum over k says).
    """
    words = torch.cat([torch.tensor([context]), negatives])  # (1 + K,)
    labels = torch.zeros(len(words))
    labels[0] = 1.0
    v_in = in_vectors[target]  # (D,)
    v_out = out_vectors[words]  # (1 + K, D)
    error = torch.sigmoid(v_out @ v_in) - labels  # (1 + K,): sigma(s) - 1 for the context, sigma(s) for noise
    return error @ v_out, error[:, None] * v_in


def softmax_grads(
    in_vectors: torch.Tensor, out_vectors: torch.Tensor, target: int, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """d L / d v_I and d L / d out_vectors (all V rows) of one pair's full-softmax loss.

    With p = softmax(out_vectors @ v_I): dL/dv_I = sum_w (p_w - [w = O]) v'_w, dL/dv'_w = (p_w - [w = O]) v_I.
    """
    v_in = in_vectors[target]
    error = torch.softmax(out_vectors @ v_in, dim=0)
    error[context] -= 1.0
    return error @ out_vectors, error[:, None] * v_in


def hierarchical_softmax_grads(
    in_vectors: torch.Tensor, out_vectors: torch.Tensor, target: int, code: list[int], point: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """d L / d v_I and d L / d u_n (for the path's nodes `point`) of one pair's hierarchical softmax loss.

    With f_n = u_n . v_I: dL/df_n = sigma(f_n) - (1 - code_n), so
        dL/dv_I = sum_n (sigma(f_n) - 1 + code_n) u_n,    dL/du_n = (sigma(f_n) - 1 + code_n) v_I
    (word2vec.c's g = (1 - code - sigma(f)) alpha is -alpha times this).
    """
    v_in = in_vectors[target]
    nodes = out_vectors[torch.tensor(point)]  # (L, D)
    error = torch.sigmoid(nodes @ v_in) - 1 + torch.tensor(code, dtype=v_in.dtype)  # (L,)
    return error @ nodes, error[:, None] * v_in


# --------------------------------------------------------------------------- batched SGD (the GPU path)


@dataclass
class SubwordRows:
    """models/subwords.SubwordTable on the device: word w's n-gram rows are ids[offsets[w]:offsets[w + 1]]."""

    offsets: torch.Tensor  # (V + 1,) int64
    ids: torch.Tensor  # (total,) int64

    def expand(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For words (P,): (owner (M,), rows (M,), counts (P,)): every n-gram row of every word, and the
        position in `words` it belongs to; counts: n-grams per word."""
        starts = self.offsets[words]
        counts = self.offsets[words + 1] - starts
        owner = torch.repeat_interleave(torch.arange(len(words), device=words.device), counts)
        first = torch.cumsum(counts, 0) - counts  # where each word's n-grams start in the (M,) output
        position = torch.arange(len(owner), device=words.device) - first[owner] + starts[owner]
        return owner, self.ids[position], counts


def _compose(model: SkipGram, words: torch.Tensor, subwords: SubwordRows | None):
    """Input vectors (P, D) of words (P,): their rows, or (fastText) the mean of each row and its n-grams'
    rows; and what _spread needs to send the update back to every one of those rows."""
    l1 = model.in_vectors.data[words]
    if subwords is None:
        return l1, None
    owner, rows, counts = subwords.expand(words)
    l1.index_add_(0, owner, model.ngram_vectors.data[rows])
    return l1 / (1 + counts[:, None]), (owner, rows)


def _spread(model: SkipGram, words: torch.Tensor, pieces, neu1e: torch.Tensor) -> None:
    """The update neu1e (P, D) to each word's row and, whole, to each of its n-gram rows (fastText)."""
    model.in_vectors.data.index_add_(0, words, neu1e)
    if pieces is not None:
        owner, rows = pieces
        model.ngram_vectors.data.index_add_(0, rows, neu1e[owner])


@torch.no_grad()
def batched_update(
    model: SkipGram,
    words: torch.Tensor,
    lengths: torch.Tensor,
    keep: torch.Tensor,
    noise_cdf: torch.Tensor,
    gen: torch.Generator,
    sg: bool,
    window: int,
    negative: int,
    lr: float,
    pairs_per_update: int = 4096,
    tree: tuple[torch.Tensor, torch.Tensor] | None = None,
    subwords: SubwordRows | None = None,
) -> torch.Tensor:
    """SGD on the pairs of a batch of sentences, `pairs_per_update` predictions at a time.

    words: (N,) vocabulary ids in corpus order, -1 for dropped words; lengths: (S,) sentence
    lengths summing to N. The same SGD as word2vec.c, except that the predictions of one update
    read the vectors before any of them is applied (index_add_ sums their updates). That
    staleness is why updates stay small: a frequent noise word is drawn hundreds of times in
    32k predictions, and the sum of that many same-sign steps diverges at word2vec's lr
    (measured: 32768 diverges at lr 0.025; 4096 and 8192 match the Hogwild loop's accuracy).
    tree: the Huffman tree's (codes, points) (V, L) on the device for the hierarchical softmax
    (model.hs; negative is 0 then), else None. subwords: the vocabulary's n-gram rows when model is a
    FastText (model.subwords). Returns the mean loss per prediction.
    """
    center, context, words = _pairs(words, lengths, keep, gen, window)
    if len(center) == 0:
        return torch.zeros((), device=words.device)
    if sg:
        # word2vec.c's skip-gram: the context word's input vector predicts the center word
        inputs, targets = words[context], words[center]
        noise = _draw_noise(noise_cdf, len(targets), negative, gen)
        loss_sum = torch.zeros((), device=words.device, dtype=torch.float64)
        syn1 = model.out_vectors.data
        for lo in range(0, len(targets), pairs_per_update):
            chunk = slice(lo, lo + pairs_per_update)
            l1, pieces = _compose(model, inputs[chunk], subwords)
            neu1e, loss = _predict(l1, targets[chunk], None if noise is None else noise[chunk], syn1, lr, tree)
            _spread(model, inputs[chunk], pieces, neu1e)
            loss_sum += loss
        return (loss_sum / len(targets)).float()
    return _cbow(model, words, center, context, noise_cdf, gen, negative, lr, pairs_per_update, tree, subwords)


def _pairs(words, lengths, keep, gen, window):
    """(center, context) positions of the kept words, and the kept words: subsampling and the dynamic window."""
    device = words.device
    sentence = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    kept = (words >= 0) & (torch.rand(words.shape, generator=gen, device=device) < keep[words.clamp(min=0)])
    words, sentence = words[kept], sentence[kept]
    n = len(words)
    # The dynamic window: a reduced width in 1..window per position; a pair (i, j) is in when
    # |i - j| <= width of the position that predicts, and both lie in one sentence.
    width = torch.randint(1, window + 1, (n,), generator=gen, device=device)
    position = torch.arange(n, device=device)
    centers, contexts = [position[:0]], [position[:0]]
    for offset in range(1, min(window, n - 1) + 1):
        left, right = position[:-offset], position[offset:]
        same = sentence[:-offset] == sentence[offset:]
        forward, backward = same & (offset <= width[:-offset]), same & (offset <= width[offset:])
        centers += [left[forward], right[backward]]
        contexts += [right[forward], left[backward]]
    return torch.cat(centers), torch.cat(contexts), words


def _draw_noise(noise_cdf, count, negative, gen):
    if negative == 0:
        return None
    uniform = torch.rand(count, negative, generator=gen, device=noise_cdf.device, dtype=noise_cdf.dtype)
    return torch.searchsorted(noise_cdf, uniform, right=True).clamp_(max=len(noise_cdf) - 1)


def _cbow(model, words, center, context, noise_cdf, gen, negative, lr, pairs_per_update, tree, subwords=None):
    """CBOW: the mean of the window's input vectors predicts the center; its error goes to each context word.
    With subwords, the mean is over every row of the window (words' and n-grams' alike), as fastText's."""
    device, n = words.device, len(words)
    syn0, syn1 = model.in_vectors.data, model.out_vectors.data
    total, predictions = torch.zeros((), device=device, dtype=torch.float64), 0
    count = torch.bincount(center, minlength=n)
    predicting = torch.nonzero(count).squeeze(1)
    noise = _draw_noise(noise_cdf, len(predicting), negative, gen)
    for lo in range(0, len(predicting), pairs_per_update):
        chunk = predicting[lo : lo + pairs_per_update]
        slot = torch.full((n,), -1, device=device, dtype=torch.long)
        slot[chunk] = torch.arange(len(chunk), device=device)
        member = slot[center] >= 0
        rows, ctx = slot[center[member]], words[context[member]]
        l1 = torch.zeros(len(chunk), syn0.shape[1], device=device).index_add_(0, rows, syn0[ctx])
        inputs = count[chunk]  # rows averaged per prediction: the context words, and (subwords) their n-grams
        if subwords is not None:
            owner, ngram_rows, ngrams = subwords.expand(ctx)
            l1.index_add_(0, rows[owner], model.ngram_vectors.data[ngram_rows])
            inputs = inputs + torch.zeros_like(inputs).index_add_(0, rows, ngrams)
        l1 /= inputs[:, None]
        chunk_noise = None if noise is None else noise[lo : lo + pairs_per_update]
        neu1e, loss = _predict(l1, words[chunk], chunk_noise, syn1, lr, tree)
        syn0.index_add_(0, ctx, neu1e[rows])
        if subwords is not None:
            model.ngram_vectors.data.index_add_(0, ngram_rows, neu1e[rows[owner]])
        total += loss
        predictions += len(chunk)
    return (total / max(1, predictions)).float()


def _predict(l1, targets, noise, syn1, lr, tree=None):
    """Predict `targets` (P,) from inputs l1 (P, D): updates syn1 in place, returns (-lr dL/dl1, loss sum).

    noise: (P, K) noise words (negative sampling), or None for the full softmax or, with `tree`
    (codes, points), the hierarchical softmax.
    """
    if tree is not None:
        return _predict_hierarchical(l1, targets, tree, syn1, lr)
    if noise is None:
        scores = l1 @ syn1.T  # (P, V): the full softmax
        loss = F.cross_entropy(scores, targets, reduction="sum")
        error = -torch.softmax(scores, dim=1)
        error[torch.arange(len(targets), device=l1.device), targets] += 1.0
        error *= lr
        neu1e = error @ syn1
        syn1 += error.T @ l1
        return neu1e, loss.double()
    words = torch.cat([targets[:, None], noise], dim=1)  # (P, 1 + K)
    live = words != targets[:, None]  # as word2vec.c: a noise draw of the target is skipped...
    live[:, 0] = True  # ...but the target itself is the positive
    out = syn1[words]  # (P, 1 + K, D)
    f = torch.bmm(out, l1[:, :, None]).squeeze(2)  # (P, 1 + K)
    # With s = +f for the positive and -f for noise, each term's loss is -log sigma(s) and
    # -lr dL/df = lr (label - sigma(f)) = lr sigma(-s) sign.
    sign = torch.full((1, words.shape[1]), -1.0, device=l1.device)
    sign[0, 0] = 1.0
    s = f * sign
    loss = -(F.logsigmoid(s) * live).sum()
    g = torch.sigmoid(-s) * sign * live * lr  # (P, 1 + K)
    neu1e = torch.bmm(g[:, None, :], out).squeeze(1)  # (P, D)
    syn1.index_add_(0, words.flatten(), (g[:, :, None] * l1[:, None, :]).reshape(-1, l1.shape[1]))
    return neu1e, loss.double()


def _predict_hierarchical(l1, targets, tree, syn1, lr):
    """The hierarchical softmax of _predict: each target's path nodes (padded to L, masked) at once."""
    code, point = tree[0][targets], tree[1][targets]  # (P, L)
    live = code >= 0
    code = code.to(l1.dtype)
    out = syn1[point]  # (P, L, D)
    f = torch.bmm(out, l1[:, :, None]).squeeze(2)  # (P, L)
    loss = -(F.logsigmoid((1 - 2 * code) * f) * live).sum()
    g = (1 - code - torch.sigmoid(f)) * live * lr  # word2vec.c: g = (1 - code - sigma(f)) alpha
    neu1e = torch.bmm(g[:, None, :], out).squeeze(1)  # (P, D)
    syn1.index_add_(0, point.flatten(), (g[:, :, None] * l1[:, None, :]).reshape(-1, l1.shape[1]))
    return neu1e, loss.double()
