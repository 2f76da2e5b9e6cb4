"""The Transformer's parts: attention against torch's, masks, positions, the encoder-decoder, decoding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlcli.config import ScheduleConfig
from dlcli.models.decoding import beam_search, greedy
from dlcli.models.transformer import MultiHeadAttention, Seq2SeqTransformer, TransformerLM, sinusoidal_positions
from dlcli.optim import lr_factor

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics


def copied_attention(dim: int = 16, heads: int = 4) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(dim, heads)
    theirs = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():  # random biases too, so a wrong bias slice would show
        theirs.in_proj_bias.normal_()
        theirs.out_proj.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    return ours.eval(), theirs.eval()


def test_scratch_attention_equals_torch_multihead_attention_with_padding():
    ours, theirs = copied_attention()
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = pad[2, 3:] = True
    expected, expected_w = theirs(q, kv, kv, key_padding_mask=pad, average_attn_weights=False)
    got, got_w = ours(q, kv, pad=pad, need_weights=True)  # the written-out softmax(QK^T/sqrt(d_k))V
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got_w, expected_w, atol=1e-6)
    assert torch.allclose(ours(q, kv, pad=pad)[0], expected, atol=1e-5)  # the SDPA path
    assert got_w[0, :, :, 5:].abs().max() == 0  # padded keys get no weight


def test_scratch_causal_self_attention_equals_torch():
    ours, theirs = copied_attention()
    x = torch.randn(2, 6, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected, _ = theirs(x, x, x, attn_mask=causal)
    assert torch.allclose(ours(x, causal=True, need_weights=True)[0], expected, atol=1e-5)
    assert torch.allclose(ours(x, causal=True)[0], expected, atol=1e-5)  # SDPA is_causal


def test_attention_weights_are_a_distribution_that_respects_causality():
    ours, _ = copied_attention()
    _, w = ours(torch.randn(2, 6, 16), causal=True, need_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 6), atol=1e-6)
    assert w.triu(1).abs().max() == 0  # no query sees a later key


def test_sinusoidal_positions_follow_the_paper():
    pe = sinusoidal_positions(50, 8)
    for pos in (0, 7, 49):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_is_causal_and_source_padding_changes_nothing(norm_first):
    torch.manual_seed(0)
    model = Seq2SeqTransformer(
        30, pad_id=0, dim=16, heads=2, encoder_layers=2, decoder_layers=2, ff_dim=32, dropout=0.0, norm_first=norm_first
    ).eval()
    src = torch.tensor([[5, 6, 7, 2]])
    tgt = torch.tensor([[1, 8, 9, 10]])
    logits = model(src, tgt)
    changed_future = tgt.clone()
    changed_future[0, 3] = 11
    assert torch.allclose(model(src, changed_future)[0, :3], logits[0, :3], atol=1e-5)
    padded = torch.tensor([[5, 6, 7, 2, 0, 0]])
    assert torch.allclose(model(padded, tgt), logits, atol=1e-5)
    assert logits.shape == (1, 4, 30)


def test_output_layer_is_the_shared_embedding():
    model = Seq2SeqTransformer(30, pad_id=0, dim=16, heads=2, encoder_layers=1, decoder_layers=1, ff_dim=32)
    names = [n for n, _ in model.named_parameters()]
    assert sum("embed" in n for n in names) == 1  # one matrix: source, target and output
    assert model.embed.weight[0].abs().max() == 0  # the padding row


def test_transformer_lm_state_continues_the_window():
    torch.manual_seed(0)
    lm = TransformerLM(20, context=8, dim=16, heads=2, layers=2, dropout=0.0).eval()
    x = torch.randint(0, 20, (1, 6))
    full, _ = lm(x)
    # feeding the prefix, then one token at a time with the returned state, gives the same logits
    logits, state = lm(x[:, :3])
    steps = [logits]
    for t in range(3, 6):
        logits, state = lm(x[:, t : t + 1], state)
        steps.append(logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


class MarkovModel(nn.Module):
    """A 'decoder' whose next-token distribution depends only on the last token: greedy takes
    token 3 first (0.6) but then only poor continuations, beam search finds 4 -> 5 -> EOS."""

    def __init__(self):
        super().__init__()
        table = torch.full((7, 7), 1e-6)
        table[1, 3], table[1, 4] = 0.6, 0.4  # after BOS
        table[3, 5], table[3, 6], table[3, 2] = 0.35, 0.35, 0.3  # after 3: flat
        table[4, 5] = 1.0
        table[5, 2] = 1.0
        table[6, 2] = 1.0
        self.register_buffer("logp", table.log())

    def encode(self, src):
        return torch.zeros(src.shape[0], 1, 1), src == 0

    def decode(self, tgt_in, memory, src_pad, need_weights=False):
        return self.logp[tgt_in], None


def sequence_logp(model: MarkovModel, ids: list[int]) -> float:
    path = [1, *ids, 2]
    return sum(model.logp[a, b].item() for a, b in zip(path, path[1:]))


def test_beam_search_finds_what_greedy_misses():
    model = MarkovModel()
    src = torch.tensor([[5, 2], [6, 2]])
    assert greedy(model, src, 1, 2, 0, max_len=5) == [[3, 5], [3, 5]]
    found = beam_search(model, src, 1, 2, 0, max_len=5, beam=3, length_penalty=0.0)
    assert found == [[4, 5], [4, 5]]
    assert sequence_logp(model, found[0]) > sequence_logp(model, [3, 5])
    assert beam_search(model, src, 1, 2, 0, max_len=5, beam=1) == greedy(model, src, 1, 2, 0, max_len=5)


def test_beam_search_stops_at_max_len():
    model = MarkovModel()
    out = beam_search(model, torch.tensor([[5, 2]]), 1, 2, 0, max_len=1, beam=2)
    assert len(out[0]) <= 1


def test_inverse_sqrt_schedule():
    cfg = ScheduleConfig(name="inverse_sqrt", warmup_steps=100)
    factors = [lr_factor(s, cfg, 1000, 100, 10) for s in (0, 49, 99, 100, 399, 9999)]
    assert factors[0] < factors[1] < factors[2] <= 1.0
    assert factors[3] == pytest.approx(1.0, abs=0.01)
    assert factors[4] == pytest.approx(0.5)  # sqrt(100 / 400)
    assert factors[5] == pytest.approx(0.1)
