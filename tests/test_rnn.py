"""Scratch RNN/LSTM/GRU: equal to torch's fused layers (values and gradients), the lecture GRU equal to its equations."""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlcli.models.rnn import ScratchGRU, ScratchLSTM, ScratchRNN, make_rnn

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

F_IN, H, T, B = 3, 4, 5, 3
TOL = dict(atol=1e-5, rtol=1e-5)


def _pair(cell, num_layers=1, bidirectional=False, batch_first=True, dropout=0.0):
    """A torch layer and a scratch one holding the same weights (the GRU in torch's reset-after form)."""
    torch.manual_seed(0)
    reference = make_rnn(cell, F_IN, H, num_layers, bidirectional, dropout, batch_first, impl="torch")
    scratch = make_rnn(cell, F_IN, H, num_layers, bidirectional, dropout, batch_first, impl="scratch")
    if cell == "gru":
        scratch.reset_after = True
    scratch.load_state_dict(reference.state_dict())
    return reference, scratch


def _initial_state(cell, num_layers, bidirectional, batch=B):
    shape = (num_layers * (2 if bidirectional else 1), batch, H)
    if cell == "lstm":
        return torch.randn(shape).requires_grad_(), torch.randn(shape).requires_grad_()
    return torch.randn(shape).requires_grad_()


def _states(final):
    return final if isinstance(final, tuple) else (final,)


def _loss(output, final):
    """A loss that weighs every output and final-state entry differently, so no gradient can hide."""
    gen = torch.Generator().manual_seed(1)
    terms = [output, *_states(final)]
    return sum((t * torch.randn(t.shape, generator=gen)).sum() for t in terms)


def _assert_same_grads(reference, scratch, *leaves_pairs):
    for name, p in reference.named_parameters():
        torch.testing.assert_close(dict(scratch.named_parameters())[name].grad, p.grad, **TOL, msg=name)
    for want, got in leaves_pairs:
        torch.testing.assert_close(got.grad, want.grad, **TOL)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_scratch_equals_torch(cell, num_layers, bidirectional, batch_first):
    reference, scratch = _pair(cell, num_layers, bidirectional, batch_first)
    x = torch.randn((B, T, F_IN) if batch_first else (T, B, F_IN))
    hx = _initial_state(cell, num_layers, bidirectional)
    leaves = []
    results = []
    for layer in (reference, scratch):
        xi = x.clone().requires_grad_()
        hi = tuple(s.detach().clone().requires_grad_() for s in _states(hx))
        output, final = layer(xi, hi if cell == "lstm" else hi[0])
        _loss(output, final).backward()
        leaves.append((xi, *hi))
        results.append((output, final))
    (want_out, want_final), (got_out, got_final) = results
    assert got_out.shape == want_out.shape
    torch.testing.assert_close(got_out, want_out, **TOL)
    assert type(got_final) is type(want_final)
    for got, want in zip(_states(got_final), _states(want_final)):
        torch.testing.assert_close(got, want, **TOL)
    _assert_same_grads(reference, scratch, *zip(*leaves))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_input_equals_torch(cell, bidirectional):
    reference, scratch = _pair(cell, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([2, T, 4])  # unsorted, one full-length
    x = torch.randn(B, T, F_IN)
    results, inputs = [], []
    for layer in (reference, scratch):
        xi = x.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, batch_first=True, enforce_sorted=False)
        output, final = layer(packed)
        _loss(pad_packed_sequence(output, batch_first=True)[0], final).backward()
        results.append((output, final))
        inputs.append(xi)
    (want_out, want_final), (got_out, got_final) = results
    # the same PackedSequence, row for row
    torch.testing.assert_close(got_out.data, want_out.data, **TOL)
    assert torch.equal(got_out.batch_sizes, want_out.batch_sizes)
    assert torch.equal(got_out.unsorted_indices, want_out.unsorted_indices)
    for got, want in zip(_states(got_final), _states(want_final)):
        torch.testing.assert_close(got, want, **TOL)
    _assert_same_grads(reference, scratch, (inputs[0], inputs[1]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lengths_equal_packed_and_zero_the_padding(cell):
    _, scratch = _pair(cell, num_layers=2, bidirectional=True)
    lengths = torch.tensor([2, T, 4])
    x = torch.randn(B, T, F_IN)
    packed_out, packed_final = scratch(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    output, final = scratch(x, lengths=lengths)
    torch.testing.assert_close(output, pad_packed_sequence(packed_out, batch_first=True)[0])
    for got, want in zip(_states(final), _states(packed_final)):
        torch.testing.assert_close(got, want)
    assert output[0, 2:].abs().sum() == 0


def test_padding_does_not_reach_the_reverse_direction():
    # a sequence run alone equals the same sequence padded with garbage and given its length
    _, scratch = _pair("lstm", num_layers=2, bidirectional=True)
    x = torch.randn(1, 3, F_IN)
    padded = torch.cat([x, 100 * torch.randn(1, 2, F_IN)], dim=1)
    alone, (h_alone, c_alone) = scratch(x)
    output, (h_n, c_n) = scratch(padded, lengths=torch.tensor([3]))
    torch.testing.assert_close(output[:, :3], alone)
    torch.testing.assert_close(h_n, h_alone)
    torch.testing.assert_close(c_n, c_alone)


def test_unbatched_input_equals_torch():
    reference, scratch = _pair("gru", num_layers=2, bidirectional=True)
    x, h0 = torch.randn(T, F_IN), torch.randn(4, H)
    for got, want in zip(scratch(x, h0), reference(x, h0)):
        torch.testing.assert_close(got, want, **TOL)


def test_bad_initial_state_names_the_shape():
    scratch = ScratchLSTM(F_IN, H, num_layers=2)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        scratch(torch.randn(T, B, F_IN), (torch.zeros(1, B, H), torch.zeros(1, B, H)))


# --------------------------------------------------------------------------- the lecture GRU


def _lecture_gru(gru: ScratchGRU, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The lecture's four equations, one step at a time. x: (B, T, F), h: (B, H) -> (B, T, H).

    The lecture's matrices act on [h_{t-1}, x_t] with the bias folded in; from torch-layout weights:
    W_r = [W_hr, W_ir], W = [W_hn, W_in], and W_z = -[W_hz, W_iz] since the lecture's z is 1 - torch's.
    """
    w_ir, w_iz, w_in = gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = gru.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh_l0.chunk(3)
    W_r, b_r = torch.cat([w_hr, w_ir], 1), b_ir + b_hr
    W_z, b_z = -torch.cat([w_hz, w_iz], 1), -(b_iz + b_hz)
    W, b = torch.cat([w_hn, w_in], 1), b_in + b_hn
    outputs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        z = torch.sigmoid(torch.cat([h, x_t], 1) @ W_z.T + b_z)
        r = torch.sigmoid(torch.cat([h, x_t], 1) @ W_r.T + b_r)
        h_tilde = torch.tanh(torch.cat([r * h, x_t], 1) @ W.T + b)
        h = (1 - z) * h + z * h_tilde
        outputs.append(h)
    return torch.stack(outputs, 1)


def test_lecture_gru_equals_its_equations():
    torch.manual_seed(0)
    gru = ScratchGRU(F_IN, H, batch_first=True)
    assert not gru.reset_after  # the lecture's form is the default
    x, h0 = torch.randn(B, T, F_IN), torch.randn(1, B, H)
    output, h_n = gru(x, h0)
    want = _lecture_gru(gru, x, h0[0])
    torch.testing.assert_close(output, want, **TOL)
    torch.testing.assert_close(h_n[0], want[:, -1], **TOL)


def test_lecture_gru_is_not_torchs():
    reference, scratch = _pair("gru")
    scratch.reset_after = False
    x = torch.randn(B, T, F_IN)
    assert not torch.allclose(scratch(x)[0], reference(x)[0], atol=1e-3)


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_gradcheck(reset_after):
    torch.manual_seed(0)
    gru = ScratchGRU(2, 3, bidirectional=True, batch_first=True, reset_after=reset_after).double()
    names = [name for name, _ in gru.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in gru.parameters())
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)

    def run(x, h0, *params):
        output, h_n = functional_call(gru, dict(zip(names, params)), (x, h0))
        return output, h_n

    assert torch.autograd.gradcheck(run, (x, h0, *params))


# --------------------------------------------------------------------------- dropout and the constructor


def test_dropout_between_layers_in_train_mode_only():
    reference, scratch = _pair("lstm", num_layers=2, dropout=0.5)
    x = torch.randn(B, T, F_IN)
    scratch.eval(), reference.eval()
    torch.testing.assert_close(scratch(x)[0], scratch(x)[0])
    torch.testing.assert_close(scratch(x)[0], reference(x)[0], **TOL)
    scratch.train()
    assert not torch.allclose(scratch(x)[0], scratch(x)[0])
    # none after the last layer: a one-layer stack is deterministic even in train mode
    single = ScratchLSTM(F_IN, H, dropout=0.5).train()
    torch.testing.assert_close(single(x)[0], single(x)[0])


@pytest.mark.parametrize(
    "cell, fused, scratch", [("rnn", nn.RNN, ScratchRNN), ("lstm", nn.LSTM, ScratchLSTM), ("gru", nn.GRU, ScratchGRU)]
)
def test_make_rnn_returns_the_right_class(cell, fused, scratch):
    layer = make_rnn(cell, F_IN, H, num_layers=2, bidirectional=True, dropout=0.1)
    assert type(layer) is fused and layer.batch_first and layer.num_layers == 2 and layer.bidirectional
    layer = make_rnn(cell, F_IN, H, num_layers=2, bidirectional=True, dropout=0.1, impl="scratch")
    assert type(layer) is scratch and layer.batch_first and layer.dropout == 0.1
    output, _ = layer(torch.randn(B, T, F_IN))
    assert output.shape == (B, T, 2 * H)


def test_make_rnn_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose one of.*'gru'"):
        make_rnn("transformer", F_IN, H)
    with pytest.raises(ValueError, match="choose one of.*'scratch'"):
        make_rnn("gru", F_IN, H, impl="cudnn")
