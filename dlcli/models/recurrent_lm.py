"""The recurrent language model of the `lm` task (dlcli/tasks/lm.py): embedding -> stacked RNN, LSTM or
GRU -> dropout -> linear over the vocabulary.

    dl train configs/char_lstm.yaml

Dropout acts between the recurrent layers and once more before the output layer (Zaremba et al. 2014).
`tie_weights` shares the embedding and output matrices (Press & Wolf 2017), so the embedding size must
equal the hidden size. The task's transformer LM is models/transformer.py's TransformerLM, which has
the same forward(x, state) -> (logits, state).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlcli.models.rnn import make_encoder


class RecurrentLM(nn.Module):
    """Embedding -> stacked RNN/LSTM/GRU -> dropout -> linear over the vocabulary.

    forward(x (B, T), state) -> logits (B, T, V) and the new state (h, or (h, c) for the LSTM).

    Args:
        vocab_size: tokens in the vocabulary (V).
        arch: the cell, "rnn" (Elman, tanh), "lstm" or "gru"; impl: "torch" or "scratch" (models/rnn.py).
        embedding_dim, hidden_size, num_layers: token embedding size, units per layer, stacked layers.
        dropout: between the layers and before the output layer.
        tie_weights: the output layer's weight is the embedding matrix (needs embedding_dim == hidden_size).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        arch: str,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        tie_weights: bool = False,
        impl: str = "torch",
    ):
        super().__init__()
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"tie_weights needs embedding_dim ({embedding_dim}) == hidden_size ({hidden_size})")
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        # torch's dropout acts between layers; one more before the output layer (Zaremba et al. 2014)
        self.rnn = make_encoder(arch, embedding_dim, hidden_size, num_layers, dropout=dropout, impl=impl)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        out, state = self.rnn(self.embed(x), state)  # (B, T, H)
        return self.head(self.drop(out)), state
