"""The part-of-speech tagger of the `tag` task (dlcli/tasks/tag.py) and its character-level word encoders.

    dl train configs/pos_lstm.yaml

The tagger (Plank et al. 2016, Lample et al. 2016): each word is its embedding joined with a
character-level encoding (CharCNN or CharLSTM over its characters, so unseen words still get a
representation from their spelling), then a bidirectional RNN over the sentence and a linear layer
per token. Sentences of a batch are padded and packed (`rnn.run_packed`), so the RNN never reads
the padding. Index 0 of the word and character vocabularies is padding.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcli.models.rnn import make_encoder, run_packed


class CharCNN(nn.Module):
    """A word's characters -> max over positions of a width-3 convolution (Ma & Hovy 2016)."""

    def __init__(self, n_chars: int, dim: int, filters: int):
        super().__init__()
        self.embed = nn.Embedding(n_chars, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, kernel_size=3, padding=1)
        self.out_size = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # (N, L) -> (N, filters)
        x = self.conv(self.embed(chars).transpose(1, 2))  # (N, filters, L)
        x = x.masked_fill((chars == 0)[:, None, :], float("-inf")).amax(dim=2)
        return torch.nan_to_num(x, neginf=0.0)  # an all-padding row (a padding word) -> 0


class CharLSTM(nn.Module):
    """A word's characters -> the final states of a BiLSTM over them (Lample et al. 2016)."""

    def __init__(self, n_chars: int, dim: int, hidden: int, impl: str = "torch"):
        super().__init__()
        self.embed = nn.Embedding(n_chars, dim, padding_idx=0)
        self.rnn = make_encoder("lstm", dim, hidden, num_layers=1, bidirectional=True, impl=impl)
        self.out_size = 2 * hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # (N, L) -> (N, 2 hidden)
        lengths = (chars != 0).sum(1).clamp(min=1)
        _, (h, _) = run_packed(self.rnn, self.embed(chars), lengths)
        return torch.cat([h[0], h[1]], dim=1)


class Tagger(nn.Module):
    """Word embedding (+ character encoding) -> RNN over the sentence -> a linear layer per token.

    forward(words (B, T), chars (B, T, L), lengths (B,)) -> logits (B, T, n_tags).

    Args:
        n_words, n_chars, n_tags: vocabulary sizes (words and characters with padding at index 0).
        embedding_dim: word embedding size.
        char_encoder: "cnn" (CharCNN), "lstm" (CharLSTM) or "none"; char_dim: character embedding
            size; char_hidden: CNN filters, or BiLSTM size per direction.
        arch: the sentence RNN's cell, "rnn", "lstm" or "gru"; impl: "torch" or "scratch" (models/rnn.py).
        hidden_size, num_layers, bidirectional: the sentence RNN's size per direction, layers, directions.
        dropout: on the RNN's inputs, between its layers and on its outputs.
    """

    def __init__(
        self,
        n_words: int,
        n_chars: int,
        n_tags: int,
        *,
        embedding_dim: int,
        char_encoder: str,
        char_dim: int,
        char_hidden: int,
        arch: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        impl: str = "torch",
    ):
        super().__init__()
        self.words = nn.Embedding(n_words, embedding_dim, padding_idx=0)
        self.chars: nn.Module | None = None
        if char_encoder == "cnn":
            self.chars = CharCNN(n_chars, char_dim, char_hidden)
        elif char_encoder == "lstm":
            self.chars = CharLSTM(n_chars, char_dim, char_hidden, impl)
        elif char_encoder != "none":
            raise ValueError(f"unknown char_encoder {char_encoder!r}; choose one of ['cnn', 'lstm', 'none']")
        in_size = embedding_dim + (self.chars.out_size if self.chars is not None else 0)
        self.rnn = make_encoder(arch, in_size, hidden_size, num_layers, bidirectional, dropout, impl)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size * (2 if bidirectional else 1), n_tags)

    def forward(self, words: torch.Tensor, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.words(words)  # (B, T, E)
        if self.chars is not None:
            b, t, length = chars.shape
            x = torch.cat([x, self.chars(chars.view(b * t, length)).view(b, t, -1)], dim=2)
        out, _ = run_packed(self.rnn, self.drop(x), lengths)
        return self.out(self.drop(out))  # (B, T, tags)
