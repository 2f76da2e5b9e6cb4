"""The Transformer of "Attention is all you need" (Vaswani et al. 2017), and a decoder-only LM.

    Seq2SeqTransformer   encoder-decoder for translation: one embedding matrix shared by the
                         source, the target and the output layer (a joint subword vocabulary)
    TransformerLM        a stack of causal self-attention blocks (GPT), for tasks/lm.py

Attention runs through torch's scaled_dot_product_attention, so a GPU uses the flash or
memory-efficient kernels; when the weights are wanted (the attention picture of `dl translate
--attention`) the same module computes softmax(QK^T / sqrt(d_k)) V written out, which is also
what a test compares with nn.MultiheadAttention.

Masks follow SDPA's convention: True marks a key a query may attend to. Padding masks arrive the
other way round, as `pad` (B, S) with True at padding positions, the form the data code has.

Layer order: post-norm as in the paper, x = LayerNorm(x + Sublayer(x)); pre-norm (`norm_first`),
x = x + Sublayer(LayerNorm(x)) with one more LayerNorm after the stack, trains without the
paper's long warmup and is what most code uses now.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim): PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(p / 10000^(2i/dim))."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


def attention_mask(
    pad: torch.Tensor | None, causal: bool, queries: int, keys: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B or 1, 1, T, S) mask, True where a query may look, or None when all may."""
    allowed = None
    if pad is not None:
        allowed = ~pad[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        # query t sees keys 0..t (+ any offset when the keys are longer: a cached prefix)
        tri = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
        allowed = tri[None, None] if allowed is None else allowed & tri
    return allowed


class MultiHeadAttention(nn.Module):
    """Q, K, V projections of d_model each, split into `heads` heads of d_k = d_model / heads,
    softmax(Q K^T / sqrt(d_k)) V per head, the heads concatenated and projected back.

    The parameters carry nn.MultiheadAttention's names and layout (in_proj_weight holds W_Q, W_K,
    W_V stacked; out_proj), so weights copy between the two with load_state_dict.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        pad: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query (B, T, D) attends to memory (B, S, D) (itself when None).

        pad: (B, S) True at padded keys. Returns the output (B, T, D) and, with need_weights, the
        attention weights (B, heads, T, S).
        """
        B, T, D = query.shape
        w, b = self.in_proj_weight, self.in_proj_bias
        if memory is None:  # self-attention: one matmul for Q, K and V
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
        else:
            q = F.linear(query, w[:D], b[:D])
            k, v = F.linear(memory, w[D:], b[D:]).chunk(2, dim=-1)
        S = k.shape[1]
        q, k, v = (t.view(B, -1, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, *, d_k)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.heads)  # (B, H, T, S)
            mask = attention_mask(pad, causal, T, S, query.device)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        elif pad is None and causal and T == S:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # no mask tensor at all
        else:
            mask = attention_mask(pad, causal, T, S, query.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(B, T, D)
        return self.out_proj(out), weights


class FeedForward(nn.Sequential):
    """Position-wise Linear(d, ff) -> ReLU (the paper) or GELU -> dropout -> Linear(ff, d)."""

    def __init__(self, dim: int, ff_dim: int, dropout: float, activation: str = "relu"):
        super().__init__(
            nn.Linear(dim, ff_dim),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, dim),
        )


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward, each in a residual branch (causal for a decoder-only LM)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, norm_first: bool, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.self_attn(self.norm1(x), pad=pad, causal=causal)[0])
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.self_attn(x, pad=pad, causal=causal)[0]))
        return self.norm2(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, attention over the encoder's output, feed-forward."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, norm_first: bool, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout, activation)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_pad: torch.Tensor | None,
        src_pad: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.norm_first:
            x = x + self.drop(self.self_attn(self.norm1(x), pad=tgt_pad, causal=True)[0])
            attended, weights = self.cross_attn(self.norm2(x), memory, pad=src_pad, need_weights=need_weights)
            x = x + self.drop(attended)
            return x + self.drop(self.ff(self.norm3(x))), weights
        x = self.norm1(x + self.drop(self.self_attn(x, pad=tgt_pad, causal=True)[0]))
        attended, weights = self.cross_attn(x, memory, pad=src_pad, need_weights=need_weights)
        x = self.norm2(x + self.drop(attended))
        return self.norm3(x + self.drop(self.ff(x))), weights


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder over one joint vocabulary; the embedding is also the output layer.

    forward(src (B, S), tgt_in (B, T)) -> logits (B, T, V) for the next target tokens. The
    embeddings are scaled by sqrt(d_model) and start at N(0, d_model^-1/2), so the tied output
    layer's first logits are small (fairseq's initialisation).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        dim: int = 512,
        heads: int = 8,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        self.dim, self.pad_id = dim, pad_id
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, 0.0, dim**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.register_buffer("positions", sinusoidal_positions(1024, dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        layer = dict(dim=dim, heads=heads, ff_dim=ff_dim, dropout=dropout, norm_first=norm_first, activation=activation)
        self.encoder = nn.ModuleList(EncoderLayer(**layer) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(**layer) for _ in range(decoder_layers))
        # pre-norm leaves the residual stream unnormalised: one LayerNorm closes each stack
        self.encoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.positions.shape[0]:  # sinusoids extend to any length
            self.positions = sinusoidal_positions(length, self.dim).to(self.positions.device)
        return self.drop(self.embed(ids) * math.sqrt(self.dim) + self.positions[:length].to(self.embed.weight.dtype))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) source ids -> the memory (B, S, D) and the source padding mask (B, S)."""
        src_pad = src == self.pad_id
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, pad=src_pad)
        return self.encoder_norm(x), src_pad

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) of the next tokens after each prefix of tgt_in, and with need_weights
        the last decoder layer's cross-attention (B, heads, T, S)."""
        tgt_pad = tgt_in == self.pad_id
        x, weights = self._embed(tgt_in), None
        for layer in self.decoder:
            x, weights = layer(x, memory, tgt_pad if tgt_pad.any() else None, src_pad, need_weights)
        return self.decoder_norm(x) @ self.embed.weight.T, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_pad = self.encode(src)
        return self.decode(tgt_in, memory, src_pad)[0]


class TransformerLM(nn.Module):
    """A decoder-only (GPT) language model: token + position embeddings, causal blocks, a head.

    forward(x (B, T), state) -> (logits (B, T, V), state) matches RecurrentLM's
    (recurrent_lm.py): here the state is the preceding tokens (up to `context - 1` of them), so
    sampling one token at a time attends to the whole window before it.
    """

    def __init__(
        self,
        vocab_size: int,
        context: int,
        dim: int = 192,
        heads: int = 4,
        layers: int = 4,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        norm_first: bool = True,
        positions: str = "learned",
        tie_weights: bool = False,
    ):
        super().__init__()
        self.context, self.dim = context, dim
        self.embed = nn.Embedding(vocab_size, dim)
        if positions == "learned":
            self.position = nn.Parameter(torch.zeros(context, dim))
            nn.init.normal_(self.position, 0.0, 0.02)
        else:
            self.register_buffer("position", sinusoidal_positions(context, dim), persistent=False)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(dim, heads, ff_dim or 4 * dim, dropout, norm_first, activation="gelu") for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.head = nn.Linear(dim, vocab_size, bias=not tie_weights)
        if tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        new = x.shape[1]
        if new > self.context:
            raise ValueError(f"{new} tokens at once exceed the model's context of {self.context}")
        tokens = x if state is None else torch.cat([state, x], dim=1)[:, -self.context :]
        h = self.drop(self.embed(tokens) + self.position[: tokens.shape[1]])
        for block in self.blocks:
            h = block(h, causal=True)
        logits = self.head(self.norm(h[:, -new:]))
        return logits, tokens[:, -(self.context - 1) :] if self.context > 1 else tokens[:, :0]
