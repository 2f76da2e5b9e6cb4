"""train.ema: an exponential moving average of the weights, scored beside them at each validation.

    dl train resnet --set train.ema=0.999 --set train.ema_warmup=500

After each optimizer step that updates the weights (not one dropped by train.on_nonfinite=skip), the
average moves toward them (Polyak & Juditsky 1992; the decay form of TensorFlow's and timm's EMA):

    ema_t = w_t                                        for t <= max(1, ema_warmup)   (a copy)
    ema_t = decay * ema_(t-1) + (1 - decay) * w_t      after

torch.optim.swa_utils.AveragedModel keeps it, with use_buffers=True so that BatchNorm's running
statistics are averaged too (they then match the averaged weights). The warmup is torchvision's
(references/classification/train.py resets its EMA's n_averaged through the LR warmup, so the
average copies the weights while they still change fast), counted here in optimizer steps.

Under DDP each rank averages its unwrapped model: the weights are the same on every rank after the
gradient all-reduce, so their averages are too. BatchNorm buffers are each rank's own until DDP
copies rank 0's at the next forward, so `for_evaluation` takes rank 0's averaged buffers: every rank
scores the average rank 0 saves in its checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dlcli.runtime import Runtime


class WeightEMA:
    """The moving average of a model's weights and buffers (train.ema, train.ema_warmup)."""

    def __init__(self, model: nn.Module, decay: float, warmup: int):
        # A copy of the model, kept on its device; n_averaged stays a CPU tensor (no host sync to read it).
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.module.requires_grad_(False)
        self.warmup = warmup

    @property
    def module(self) -> nn.Module:
        """The averaged model (shaped as the trained one)."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        """Averaging updates since the last copy (AveragedModel.n_averaged): 0 means the next update copies."""
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module, step: int) -> None:
        """Move the average toward `model`'s weights after optimizer step `step` (1-based)."""
        self.averaged.update_parameters(model)
        if step < self.warmup:
            self.averaged.n_averaged.zero_()  # still warming up: the next update copies again

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Restore a checkpoint's average (Record.ema, Record.ema_updates)."""
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(updates)

    def for_evaluation(self, runtime: Runtime) -> nn.Module:
        """The averaged model, its buffers rank 0's under DDP (see the module's docstring)."""
        runtime.broadcast_from_main(list(self.module.buffers()))
        return self.module
