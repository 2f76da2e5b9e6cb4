"""Optimizers and learning-rate schedules from the `optim:` and `schedule:` sections.

Schedules are stepped once per optimizer step (not per epoch), so warmup and decay are
smooth whatever the epoch length. Their length comes from `train.epochs` (or
`schedule.total_steps`), never from `train.max_steps`, so stopping early never changes the
learning rate a step sees.

`schedule.name: plateau` is the one schedule that also listens to validation: `PlateauLR` (a
LambdaLR, stepped per optimizer step like the others, so warmup works) multiplies the lr by
`schedule.factor` when the best metric stalls, as ReduceLROnPlateau does, and keeps that state in
its state_dict, so a resumed run's steps see the same lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from dlcli.config import OptimConfig, ScheduleConfig

# Layers whose parameters are a scale and shift of normalized values: decaying them towards 0 only
# fights the normalization, so torchvision's reference recipes give them (and biases) their own decay.
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def parameter_groups(model: nn.Module, params: Iterable, cfg: OptimConfig) -> list[dict] | list[nn.Parameter]:
    """`params` as they are, or, with optim.norm_weight_decay, in two groups: the normalization layers'
    parameters and every bias (decay norm_weight_decay), then the rest (decay weight_decay)."""
    params = list(params)
    if cfg.norm_weight_decay is None:
        return params
    in_norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    biases = {id(p) for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}
    norm = [p for p in params if id(p) in in_norm or id(p) in biases]
    other = [p for p in params if id(p) not in in_norm and id(p) not in biases]
    # Both groups always exist (one may be empty), so a resumed optimizer's state fits whatever the model.
    return [{"params": norm, "weight_decay": cfg.norm_weight_decay}, {"params": other}]


def build_optimizer(cfg: OptimConfig, params: Iterable, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of `params` (parameters, or groups from parameter_groups) with the section's settings."""
    params = list(params)
    # The fused kernels are the fastest on CUDA and on the CPU too (torch >= 2.4), where foreach is
    # torch's default: a ResNet-18 AdamW step took 7.1 ms fused vs 35.5 ms foreach on 2 cores, a
    # third of a 32-image 32 px training step; SGD with momentum 4.2 vs 7.0 ms.
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
            **fused,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **fused
        )
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(cfg.name)  # the config's Literal makes this unreachable


def lr_factor(step: int, cfg: ScheduleConfig, total_steps: int, warmup_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if cfg.name in ("constant", "plateau"):  # plateau's cuts are PlateauLR's, applied on top
        return 1.0
    if cfg.name == "inverse_sqrt":  # continues the warmup's peak: 1 at step == warmup_steps
        return math.sqrt(max(1, warmup_steps) / (step + 1))
    if cfg.name == "step":
        period = max(1, round(cfg.step_epochs * steps_per_epoch))
        return cfg.gamma ** (step // period)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if cfg.name == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        shape = 1.0 - progress
    return shape  # the floor (min_lr) is applied in build_scheduler, where the peak lr is known


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` (None: nothing yet) by more than `min_delta` in `mode` ("min" or "max")."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class PlateauLR(torch.optim.lr_scheduler.LambdaLR):
    """schedule.name=plateau: the lr is the peak x `ramp(step)` (the warmup, then 1) x `scale`, where `scale`
    is multiplied by schedule.factor (down to min_lr / peak) at the schedule.patience-th validation in a row
    whose best metric did not beat the best so far by more than schedule.min_delta (`observe`). The count then
    restarts and the best stays, as in torch's ReduceLROnPlateau (whose patience N - 1 is this patience N).

    A LambdaLR rather than ReduceLROnPlateau so that it is stepped per optimizer step like every schedule
    (the warmup) and its state_dict, saved in each checkpoint, holds `scale`, `best` and the count: the lr a
    step sees is the same after a resume. A cut applies at once, to the steps after the validation."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        ramp: Callable[[int], float],
        cfg: ScheduleConfig,
        floor: float,
        mode: str,
    ):
        # The state (saved by LambdaLR.state_dict, which saves the scheduler's __dict__: plain values only).
        self.scale = 1.0  # the product of the cuts so far
        self.best: float | None = None  # the best value observed (improvements by more than min_delta only)
        self.evals_without_improvement = 0  # since the best, or since the last cut
        # The recipe's rule, never taken from a checkpoint (state_dict leaves it out).
        self._rule = (cfg.factor, cfg.patience, cfg.min_delta, floor, mode)
        super().__init__(optimizer, lambda step: ramp(step) * self.scale)

    def observe(self, value: float) -> bool:
        """Count one validation's best metric; True when it cut the lr (already applied to the optimizer)."""
        factor, patience, min_delta, floor, mode = self._rule
        if improves(value, self.best, mode, min_delta):
            self.best, self.evals_without_improvement = value, 0
            return False
        self.evals_without_improvement += 1
        if self.evals_without_improvement < patience:
            return False
        scale, self.evals_without_improvement = max(self.scale * factor, floor), 0
        if scale >= self.scale:  # already at min_lr
            return False
        self.scale = scale
        # The next step's lr, as step() would have set it had the scale been this one.
        self._last_lr = [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs, strict=True)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr
        return True

    def state_dict(self) -> dict[str, Any]:
        return {key: value for key, value in super().state_dict().items() if key != "_rule"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "_rule"})


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    peak_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    best_mode: str = "min",
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, a LambdaLR stepped once per optimizer step; PlateauLR for plateau, whose cuts follow
    the task's best metric in `best_mode`."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "plateau":

        def ramp(step: int) -> float:
            return lr_factor(step, cfg, total_steps, warmup, steps_per_epoch)

        return PlateauLR(optimizer, ramp, cfg, min(cfg.min_lr / peak_lr, 1.0), best_mode)
    floor = min(cfg.min_lr / peak_lr, 1.0) if cfg.name in ("cosine", "linear") else 0.0

    def factor(step: int) -> float:
        f = lr_factor(step, cfg, total_steps, warmup, steps_per_epoch)
        if step >= warmup:
            f = floor + (1.0 - floor) * f
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def continued(rebuilt: torch.optim.lr_scheduler.LambdaLR, scheduler: torch.optim.lr_scheduler.LambdaLR):
    """`rebuilt` (build_scheduler's, of another length: train.fit_to_minutes) taking over from `scheduler` at the
    step it has reached, its state (a plateau's cuts) kept; the optimizer's lr is set again for that step."""
    rebuilt.load_state_dict(scheduler.state_dict())
    rebuilt.last_epoch -= 1
    rebuilt.step()  # back to the step reached: the lr of that step under the new length
    return rebuilt
