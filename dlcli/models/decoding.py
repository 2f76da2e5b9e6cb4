"""Decoding an encoder-decoder: greedy search and batched beam search.

Both take a model with `encode(src) -> (memory, src_pad)` and `decode(tgt_in, memory, src_pad)
-> (logits, _)` (models/transformer.Seq2SeqTransformer) and return, per source sentence, the
target ids without BOS and EOS. The decoder re-reads the whole prefix at each step (no key/value
cache): simple, and cheap at sentence lengths.

Beam search keeps `beam` hypotheses per sentence, ranked by the sum of their token
log-probabilities. Each step takes the 2 x beam best extensions: those ending in EOS become
finished hypotheses, scored by sum / length^length_penalty (fairseq's normalisation; length counts
EOS), the others the next beams. A sentence is done when it has `beam` finished hypotheses; at
`max_len` every live beam is forced to end.
"""

from __future__ import annotations

import torch


def max_length(src_len: int, a: float, b: int) -> int:
    """Target tokens allowed for a source of src_len tokens: a x src_len + b (fairseq's max_len_a/b)."""
    return max(1, int(a * src_len + b))


@torch.no_grad()
def greedy(model, src: torch.Tensor, bos: int, eos: int, pad: int, max_len: int) -> list[list[int]]:
    """The most likely next token at every step, for a batch of sources (B, S)."""
    memory, src_pad = model.encode(src)
    ys = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = model.decode(ys, memory, src_pad)[0][:, -1]
        logits[:, pad] = logits[:, bos] = float("-inf")
        nxt = logits.argmax(-1).masked_fill(done, pad)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    return [_strip(row, eos, pad) for row in ys[:, 1:].tolist()]


@torch.no_grad()
def beam_search(
    model, src: torch.Tensor, bos: int, eos: int, pad: int, max_len: int, beam: int = 5, length_penalty: float = 1.0
) -> list[list[int]]:
    """The best finished hypothesis of a `beam`-wide search for each source of the batch (B, S)."""
    if beam == 1:
        return greedy(model, src, bos, eos, pad, max_len)
    B, K = src.shape[0], beam
    memory, src_pad = model.encode(src)
    memory, src_pad = memory.repeat_interleave(K, 0), src_pad.repeat_interleave(K, 0)  # row b*K + k
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=src.device)
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # all beams start equal: keep one, or the first step would pick K copies
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_len):
        logp = torch.log_softmax(model.decode(tokens, memory, src_pad)[0][:, -1].float(), dim=-1)  # (B*K, V)
        logp[:, pad] = logp[:, bos] = float("-inf")
        if step == max_len - 1:  # out of length: every live beam ends here
            eos_column = logp[:, eos].clone()
            logp.fill_(float("-inf"))
            logp[:, eos] = eos_column
        vocab = logp.shape[1]
        top_scores, top_index = (scores.view(-1, 1) + logp).view(B, K * vocab).topk(2 * K, dim=1)
        top_scores_l, top_index_l = top_scores.tolist(), top_index.tolist()
        next_rows, next_tokens = [], []
        next_scores = torch.full((B, K), float("-inf"))
        for b in range(B):
            kept = 0
            if not done[b]:
                for score, index in zip(top_scores_l[b], top_index_l[b], strict=True):
                    if score == float("-inf"):
                        break
                    row, token = b * K + index // vocab, index % vocab
                    if token == eos:
                        hypothesis = tokens[row, 1:].tolist()
                        finished[b].append((score / (len(hypothesis) + 1) ** length_penalty, hypothesis))
                        continue
                    next_rows.append(row)
                    next_tokens.append(token)
                    next_scores[b, kept] = score
                    kept += 1
                    if kept == K:
                        break
                done[b] = len(finished[b]) >= K or kept == 0
            for _ in range(K - kept):  # placeholders for a finished sentence's rows: never extended
                next_rows.append(b * K)
                next_tokens.append(pad)
        if all(done):
            break
        rows = torch.tensor(next_rows, device=src.device)
        tokens = torch.cat([tokens[rows], torch.tensor(next_tokens, device=src.device)[:, None]], dim=1)
        scores = next_scores.to(src.device)
    return [max(hyps)[1] if hyps else [] for hyps in finished]


def _strip(row: list[int], eos: int, pad: int) -> list[int]:
    if eos in row:
        row = row[: row.index(eos)]
    return [t for t in row if t != pad]
