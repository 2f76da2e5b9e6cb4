"""A toy task written against dlcli.tasks.contract.Task only: linear regression on y = X w + noise.

tests/test_toy_task.py registers it (dlcli.tasks.TASKS, monkeypatched) and drives it through
`dl train`, `dl eval`, `dl runs` and dlcli.load_run; docs/ARCHITECTURE.md walks through it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from toy_task_config import ToyConfig

from dlcli.data.loaders import epoch_order
from dlcli.runner import Job
from dlcli.runtime import Runtime

NAME = "toyreg"
RUN_KIND = "a linear regression"
Config = ToyConfig

SPLITS = ("train", "val", "test")


def true_weights(features: int, seed: int) -> torch.Tensor:
    """The w the data is drawn from, (features,): a pure function of the recipe's seed."""
    return torch.randn(features, generator=torch.Generator().manual_seed(seed))


def make_rows(cfg: ToyConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """X (N, F) and y = X w + noise (N,) of a split, each split from its own generator."""
    n = getattr(cfg.data, f"{split}_size")
    g = torch.Generator().manual_seed(cfg.seed * len(SPLITS) + SPLITS.index(split) + 1)
    x = torch.randn(n, cfg.model.features, generator=g)
    y = x @ true_weights(cfg.model.features, cfg.seed) + cfg.data.noise * torch.randn(n, generator=g)
    return x, y


class Rows:
    """runner.Loader: len() batches per epoch; batches(epoch, start) in an order fixed by (seed, epoch),
    this rank's share (torch's DistributedSampler order), so a resumed run sees the same batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, runtime: Runtime, shuffle: bool):
        self.x, self.y, self.batch_size, self.seed, self.shuffle = x, y, batch_size, seed, shuffle
        self.rank, self.world, self.device = runtime.rank, runtime.world_size, runtime.device

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.y) / self.world) / self.batch_size)

    def batches(self, epoch: int, start: int = 0):
        order = epoch_order(len(self.y), epoch, self.seed, self.shuffle, self.rank, self.world, drop_last=False)
        for b in range(start, len(self)):
            index = torch.tensor(order[b * self.batch_size : (b + 1) * self.batch_size])
            yield self.x[index].to(self.device), self.y[index].to(self.device)  # (B, F), (B,)


def build(cfg: ToyConfig, runtime: Runtime, load_weights: bool = True) -> Job:
    loaders = {
        split: Rows(*make_rows(cfg, split), cfg.data.batch_size, cfg.seed, runtime, shuffle=split == "train")
        for split in SPLITS
    }

    def train_step(net: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": F.mse_loss(net(x).squeeze(1).float(), y)}  # the mean: the runner sums gradients of a group

    def eval_step(net: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        error = net(x).squeeze(1).float() - y
        return {"loss": (error**2).sum(), "count": torch.tensor(len(y))}  # sums: evaluate() divides by count

    return Job(
        model=nn.Linear(cfg.model.features, 1),
        train_data=loaders["train"],
        eval_data={"val": loaders["val"], "test": loaders["test"]},
        train_step=train_step,
        eval_step=eval_step,
        best_metric="loss",
        best_mode="min",
        extra={"features": cfg.model.features},
    )


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    return {"model.features": config["model"]["features"]}


def restore_model(cfg: ToyConfig, extra: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    return nn.Linear(cfg.model.features, 1), {}


def eval_notes(cfg: ToyConfig) -> dict[str, str]:
    return {}
