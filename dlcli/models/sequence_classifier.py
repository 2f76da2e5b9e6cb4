"""The sequence classifier of the `seqclass` task (dlcli/tasks/seqclass.py): a label per sequence.

    dl train configs/brackets_gru.yaml                   # many-to-one: are these brackets balanced?

The classifier reads tokens (characters or words) with an RNN over the padded-and-packed batch
(`rnn.run_packed`) and classifies the top layer's final hidden state (both directions, joined, when
bidirectional). Index 0 of the token vocabulary is padding.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcli.models.rnn import make_encoder, run_packed


class SequenceClassifier(nn.Module):
    """Embedding -> RNN -> dropout -> linear on the final state.

    forward(tokens (B, T), lengths (B,)) -> logits (B, n_labels).

    Args:
        n_tokens, n_labels: vocabulary size (padding at index 0) and classes.
        arch: the cell, "rnn", "lstm" or "gru"; impl: "torch" or "scratch" (models/rnn.py).
        embedding_dim, hidden_size, num_layers, bidirectional: the embedding and the RNN's shape.
        dropout: between the RNN's layers and on the final state.
    """

    def __init__(
        self,
        n_tokens: int,
        n_labels: int,
        *,
        arch: str,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        impl: str = "torch",
    ):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, embedding_dim, padding_idx=0)
        self.rnn = make_encoder(arch, embedding_dim, hidden_size, num_layers, bidirectional, dropout, impl)
        self.directions = 2 if bidirectional else 1
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size * self.directions, n_labels)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, state = run_packed(self.rnn, self.embed(tokens), lengths)
        h = state[0] if isinstance(state, tuple) else state  # (layers x directions, B, H)
        last = torch.cat(list(h[-self.directions :]), dim=1)  # the top layer's final state(s)
        return self.out(self.drop(last))
