"""Skip-gram word vectors (Mikolov et al. 2013): the two objectives, with their gradients written out.

Each word w has an input vector v_w (a row of `in_vectors`, the word vectors users keep) and
an output vector v'_w (a row of `out_vectors`). For a target w_I and a context word w_O:

    full softmax:       L = -log p(w_O | w_I),  p(w_O | w_I) = exp(v'_O . v_I) / sum_w exp(v'_w . v_I)
    negative sampling:  L = -log sigma(v'_O . v_I) - sum_k log sigma(-v'_k . v_I),  w_k ~ P_n(w)

where P_n is the unigram distribution raised to 3/4 (`noise_distribution`). The explicit
gradients are what a Hogwild CPU loop (as word2vec.c) applies without autograd; the tests hold
them equal to autograd's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SkipGram(nn.Module):
    def __init__(self, vocab_size: int, dim: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        # word2vec.c's init: inputs uniform in [-0.5/dim, 0.5/dim], outputs zero.
        self.in_vectors = nn.Parameter((torch.rand(vocab_size, dim, generator=gen) - 0.5) / dim)
        self.out_vectors = nn.Parameter(torch.zeros(vocab_size, dim))

    def softmax_loss(self, targets: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Mean over pairs of -log p(context | target) under the full softmax. targets, contexts: (B,)."""
        scores = self.in_vectors[targets] @ self.out_vectors.T  # (B, V)
        return F.cross_entropy(scores, contexts)

    def negative_sampling_loss(self, targets: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean over pairs of the negative-sampling objective. negatives: (B, K) noise word ids."""
        v_in = self.in_vectors[targets]  # (B, D)
        positive = (self.out_vectors[contexts] * v_in).sum(-1)  # (B,)
        negative = torch.einsum("bkd,bd->bk", self.out_vectors[negatives], v_in)  # (B, K)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


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


def softmax_grads(in_vectors: torch.Tensor, out_vectors: torch.Tensor, target: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """d L / d v_I and d L / d out_vectors (all V rows) of one pair's full-softmax loss.

    With p = softmax(out_vectors @ v_I): dL/dv_I = sum_w (p_w - [w = O]) v'_w, dL/dv'_w = (p_w - [w = O]) v_I.
    """
    v_in = in_vectors[target]
    error = torch.softmax(out_vectors @ v_in, dim=0)
    error[context] -= 1.0
    return error @ out_vectors, error[:, None] * v_in
