"""Recurrent layers written from their equations, and `make_rnn`, which returns torch's fused layer or these.

For input x_t and previous state h_{t-1} (sigma is the logistic sigmoid, * elementwise):

    Elman RNN:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM:       i, f, g, o = sigma(.), sigma(.), tanh(.), sigma(.)  of  W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
                c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    GRU:        z_t = sigma(W_z . [h_{t-1}, x_t])                  update gate
                r_t = sigma(W_r . [h_{t-1}, x_t])                  reset gate
                h~_t = tanh(W . [r_t * h_{t-1}, x_t])              candidate
                h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

The parameters are named and laid out as torch's (weight_ih_l{k}{_reverse}: (G*H, F), weight_hh_l{k}:
(G*H, H), bias_ih_l{k}, bias_hh_l{k}: (G*H,), gates stacked in torch's order: LSTM i, f, g, o; GRU r, z, n),
so `scratch.load_state_dict(torch_layer.state_dict())` works both ways. torch.nn.GRU differs from the
lecture's GRU in two ways:

  1. Its update gate is used the other way round: torch's h_t = (1 - z) * n + z * h_{t-1}. ScratchGRU keeps
     torch's weights as they are and takes the lecture's z as 1 - sigma(W_iz x + b_iz + W_hz h + b_hz);
     in lecture terms W_z = -[W_hz, W_iz] and its bias -(b_iz + b_hz).
  2. It applies r after the hidden matmul: torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), where
     the lecture has W_hn (r * h). These are different functions, so ScratchGRU computes the lecture's form
     by default (reset_after=False) and torch's with reset_after=True (Keras' name for the same switch);
     only the latter equals torch.nn.GRU after loading its state_dict.

The scratch layers accept what torch's do (batch_first, num_layers, bidirectional, dropout between layers,
an initial state, PackedSequence) plus a `lengths` tensor; padded steps leave the state alone, so the
reverse direction starts at each sequence's last real token. Tests: `pytest tests/test_rnn.py`.

`make_encoder` and `run_packed` are what the recurrent models (recurrent_lm.py, tagger.py,
sequence_classifier.py) build their layers with and run them by over padded batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

State = tuple[torch.Tensor, ...]  # (h,) for the Elman RNN and the GRU, (h, c) for the LSTM; each (B, H)


class _ScratchRecurrent(nn.Module):
    """The layer stack shared by the three cells; a subclass sets `gates`, `state_count` and `cell`."""

    gates = 1  # rows of W_ih per hidden unit: 1 Elman, 4 LSTM (i, f, g, o), 3 GRU (r, z, n)
    state_count = 1  # tensors in the recurrent state: 1 (h), 2 for the LSTM (h, c)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout, self.bidirectional = batch_first, dropout, bidirectional
        self.num_directions = 2 if bidirectional else 1
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            # layers above the first read both directions of the layer below: (T, B, D * H)
            features = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                name = f"l{layer}{suffix}"
                self.register_parameter(f"weight_ih_{name}", nn.Parameter(torch.empty(rows, features)))
                self.register_parameter(f"weight_hh_{name}", nn.Parameter(torch.empty(rows, hidden_size)))
                self.register_parameter(f"bias_ih_{name}", nn.Parameter(torch.empty(rows)))
                self.register_parameter(f"bias_hh_{name}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's init: every weight and bias uniform in [-1/sqrt(H), 1/sqrt(H)]
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"][: self.num_directions]

    def cell(self, x_proj: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor) -> State:
        """One time step. x_proj: (B, G*H) = W_ih x_t + b_ih, precomputed for all steps at once."""
        raise NotImplementedError

    def forward(self, input, hx=None, lengths: torch.Tensor | None = None):
        """As torch's RNN/LSTM/GRU: (output, h_n), or (output, (h_n, c_n)) for the LSTM.

        input: (B, T, F) if batch_first else (T, B, F), (T, F) unbatched, or a PackedSequence (then the
        output is one too). lengths: (B,) real lengths of a padded batch; padded outputs are zero.
        hx: (L*D, B, H), a tuple (h_0, c_0) for the LSTM, or None for zeros.
        """
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            if lengths is not None:
                raise ValueError("pass lengths or a PackedSequence, not both")
            x, lengths = pad_packed_sequence(packed)  # (T, B, F) and (B,), in the caller's batch order
        else:
            x = input.transpose(0, 1) if self.batch_first and input.dim() == 3 else input
        unbatched = x.dim() == 2
        if unbatched:  # (T, F) -> (T, 1, F), and the state (L*D, H) -> (L*D, 1, H)
            x = x.unsqueeze(1)
            hx = None if hx is None else tuple(s.unsqueeze(1) for s in _as_tuple(hx))
        states = self._initial_state(hx, x)
        mask = None if lengths is None else _step_mask(lengths, x)
        output, finals = self._run_layers(x, states, mask)
        final = tuple(torch.stack(parts) for parts in zip(*finals))  # each (L*D, B, H), index layer * D + direction

        if packed is not None:
            output = _repack(output, packed)
        elif unbatched:
            output, final = output.squeeze(1), tuple(s.squeeze(1) for s in final)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (final if self.state_count == 2 else final[0])

    def _run_layers(
        self, x: torch.Tensor, states: State, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[State]]:
        """The stack, time-major. x: (T, B, F); states: each (L*D, B, H).

        Returns the top layer's output (T, B, D*H) and every layer's and direction's last state.
        """
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes()):
                index = layer * self.num_directions + direction
                state = tuple(s[index] for s in states)
                out, last = self._run_direction(x, state, f"l{layer}{suffix}", reverse=bool(direction), mask=mask)
                outputs.append(out)
                finals.append(last)
            x = torch.cat(outputs, dim=-1)  # (T, B, D*H)
            # as torch: dropout on each layer's output except the last, in train mode only
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
        return x, finals

    def _run_direction(
        self, x: torch.Tensor, state: State, name: str, reverse: bool, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, State]:
        """One direction of one layer over all steps. x: (T, B, F) -> outputs (T, B, H) and the last state."""
        w_ih, w_hh = getattr(self, f"weight_ih_{name}"), getattr(self, f"weight_hh_{name}")
        b_ih, b_hh = getattr(self, f"bias_ih_{name}"), getattr(self, f"bias_hh_{name}")
        # the input half of every gate does not depend on h: one matmul for all T steps
        x_proj = x @ w_ih.T + b_ih  # (T, B, G*H)
        steps = range(len(x) - 1, -1, -1) if reverse else range(len(x))
        outputs = [None] * len(x)
        for t in steps:
            new = self.cell(x_proj[t], state, w_hh, b_hh)
            if mask is not None:
                # a padded step keeps the state, so the reverse pass starts at the last real token
                new = tuple(torch.where(mask[t], n, s) for n, s in zip(new, state))
            state = new
            outputs[t] = state[0]
        output = torch.stack(outputs)  # (T, B, H)
        if mask is not None:
            output = output * mask  # zeros at padded steps, as pad_packed_sequence gives
        return output, state

    def _initial_state(self, hx, x: torch.Tensor) -> State:
        """hx as a tuple of (L*D, B, H) tensors, zeros when None; x: (T, B, F)."""
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        if hx is None:
            return (x.new_zeros(shape),) * self.state_count
        states = _as_tuple(hx)
        if len(states) != self.state_count or any(tuple(s.shape) != shape for s in states):
            got = [tuple(s.shape) for s in states]
            name = type(self).__name__
            raise ValueError(
                f"{name} expects an initial state of {self.state_count} tensor(s) of shape {shape}, got {got}"
            )
        return states

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}, "
            f"dropout={self.dropout}, bidirectional={self.bidirectional}"
        )


class ScratchRNN(_ScratchRecurrent):
    """Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh). Same parameters as torch.nn.RNN."""

    def cell(self, x_proj, state, w_hh, b_hh):
        (h,) = state
        return (torch.tanh(x_proj + h @ w_hh.T + b_hh),)


class ScratchLSTM(_ScratchRecurrent):
    """LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000). Same parameters as torch.nn.LSTM."""

    gates, state_count = 4, 2

    def cell(self, x_proj, state, w_hh, b_hh):
        h, c = state
        i, f, g, o = (x_proj + h @ w_hh.T + b_hh).chunk(4, dim=-1)  # each (B, H), in torch's order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ScratchGRU(_ScratchRecurrent):
    """GRU (Cho et al. 2014) as the lecture writes it; reset_after=True gives torch.nn.GRU's variant.

    The parameters are torch's (gates r, z, n), with torch's sign of z: see the module docstring.
    """

    gates = 3

    def __init__(self, *args, reset_after: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after

    def cell(self, x_proj, state, w_hh, b_hh):
        (h,) = state
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)  # each (B, H): W_i* x_t + b_i*
        w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)  # each (H, H)
        b_hr, b_hz, b_hn = b_hh.chunk(3)
        r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
        # torch's z gates the old state (h_t = (1 - z) n + z h_{t-1}); the lecture's z gates the new one,
        # so the lecture's z is 1 - torch's z, read from the same weights.
        z = 1 - torch.sigmoid(x_z + h @ w_hz.T + b_hz)
        if self.reset_after:
            n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn))  # torch: r scales W_hn h + b_hn
        else:
            n = torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)  # lecture: r scales h before W_hn
        return ((1 - z) * h + z * n,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"


def _as_tuple(hx) -> State:
    return tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)


def _step_mask(lengths: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(T, B, 1) booleans, True where step t is a real token of sequence b. x: (T, B, F)."""
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (x.shape[1],):
        raise ValueError(f"lengths must have shape ({x.shape[1]},), one per sequence, got {tuple(lengths.shape)}")
    return (torch.arange(len(x), device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)


def _repack(output: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Pack output (T, B, H), in the caller's batch order, exactly as `like` was packed.

    A PackedSequence stores step t of the batch_sizes[t] longest sequences, longest first:
    rows of sorted_indices order, so .data lines up row for row with torch's output.
    """
    if like.sorted_indices is not None:
        output = output[:, like.sorted_indices]
    data = torch.cat([output[t, :n] for t, n in enumerate(like.batch_sizes.tolist())])  # (sum of lengths, H)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


# --------------------------------------------------------------------------- the constructor

# cell name -> (torch's fused layer, the scratch one)
RNN_CELLS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "rnn": (nn.RNN, ScratchRNN),
    "lstm": (nn.LSTM, ScratchLSTM),
    "gru": (nn.GRU, ScratchGRU),
}
RNN_IMPLS = ("torch", "scratch")


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    batch_first: bool = True,
    impl: str = "torch",
) -> nn.Module:
    """A recurrent layer with torch's interface: (output, h_n), or (output, (h_n, c_n)) for "lstm".

    Args:
        cell: "rnn" (Elman, tanh), "lstm" or "gru".
        input_size, hidden_size: features in and per direction out.
        num_layers, bidirectional, dropout, batch_first: as torch.nn.RNN; dropout acts between layers.
        impl: "torch" for torch.nn.RNN/LSTM/GRU (fused; cuDNN on GPU), "scratch" for the layers above.
            The scratch GRU is the lecture's (reset_after=False), a different function from torch's;
            build ScratchGRU(..., reset_after=True) for torch's.
    """
    if cell not in RNN_CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(RNN_CELLS)}")
    if impl not in RNN_IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {list(RNN_IMPLS)}")
    fused, scratch = RNN_CELLS[cell]
    layer = fused if impl == "torch" else scratch
    return layer(
        input_size,
        hidden_size,
        num_layers=num_layers,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=bidirectional,
    )


def make_encoder(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    impl: str = "torch",
) -> nn.Module:
    """`make_rnn`, batch-first, whose dropout acts only when there are layers to act between (one layer: none;
    torch warns about dropout on a single layer)."""
    return make_rnn(
        cell,
        input_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0,
        batch_first=True,
        impl=impl,
    )


# --------------------------------------------------------------------------- padded batches


def run_packed(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
    """rnn over a padded batch (B, T, F) of true `lengths`: (padded output (B, T, H'), final state)."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state
