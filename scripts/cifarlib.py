"""What bench_cifar10.py and bench_cifar_side.py share: the CIFAR-10 archive, a step-speed calibration, and
laying a recipe's schedule over a wall-clock budget.

`dl train` stops at train.max_minutes but keeps the schedule's length (the cosine is sized by epochs, not
by the clock), so a run whose epochs overrun the budget is cut with its learning rate still high. These
benches time a few training steps of the recipe's own model, optimizer and precision first (on generated
images of the run's size: no decoding), and size the schedule to the steps the budget holds, as
../shared/baselines/cifar_plain.py sizes its cosine from its first 20 steps.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import torch

from dlcli.config import apply_overrides, read_yaml, validate
from dlcli.optim import build_optimizer, parameter_groups
from dlcli.runtime import create_runtime
from dlcli.tasks import classify

from benchlib import REPO, timed_steps

ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"
TRAIN_IMAGES = 50_000  # CIFAR-10's training split; data.val_fraction of it is held out as val
# Of the budget, the share the schedule is laid over: the rest absorbs what the calibration does not
# time (per-image augmentation, the EMA update, the evaluations that train.max_minutes counts).
SCHEDULE_SHARE = 0.9


def train_images(val_fraction: float) -> int:
    """Images left to train on once val is held out (images.hold_out's rounding)."""
    return TRAIN_IMAGES - max(1, round(TRAIN_IMAGES * val_fraction))


def steps_per_epoch(val_fraction: float, batch_size: int) -> int:
    """Optimizer steps in an epoch: the loader drops the last partial batch."""
    return max(1, train_images(val_fraction) // batch_size)


def step_speed(recipe: Path, settings: dict, device: str | None, warmup: int = 2, steps: int = 5) -> tuple[float, int]:
    """(img/s of a training step, trainable parameters) of `recipe` with `settings` (--set keys) applied.

    The recipe's model, train step, optimizer (norm_weight_decay groups included), precision and memory
    format, on generated shapes images of data.image_size: what a step of the real run computes,
    without its data (already in memory there) or its augmentation."""
    raw = apply_overrides(read_yaml(recipe), [f"{key}={value}" for key, value in settings.items()])
    data = raw["data"]
    # shapes, not the archive: just enough images for the timed steps, drawn at the run's size
    raw["data"] = {"dataset": "shapes", "image_size": data["image_size"], "batch_size": data["batch_size"]}
    raw["data"] |= {
        "augment": "none",
        "train_size": (warmup + steps) * data["batch_size"],
        "val_size": 10,
        "test_size": 10,
    }
    cfg = validate(raw, classify.Config)
    runtime = create_runtime(cfg.train, device)
    torch.manual_seed(0)
    job = classify.build(cfg, runtime)
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = job.model.to(runtime.device, memory_format=memory_format).train()  # as runner._build places it
    optimizer = build_optimizer(cfg.optim, parameter_groups(model, model.parameters(), cfg.optim), runtime.device)
    batches = job.train_data.batches(0)

    def step(_: int) -> None:
        with runtime.autocast():
            loss = job.train_step(model, next(batches))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = timed_steps(step, warmup, steps, runtime.device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return steps * cfg.data.batch_size / seconds, params


def budget_steps(img_s: float, minutes: float, batch_size: int) -> int:
    """Optimizer steps that SCHEDULE_SHARE of `minutes` holds at `img_s`."""
    return max(1, int(img_s * minutes * 60 * SCHEDULE_SHARE / batch_size))


def run_steps_per_epoch(run_dir: Path) -> int:
    """The optimizer steps per epoch a run trained with, from the derived line atop its config.yaml."""
    head = (Path(run_dir) / "config.yaml").read_text(encoding="utf-8").splitlines()[0]
    return int(re.search(r"(\d+) optimizer steps per epoch", head).group(1))


def median_speed(records: list[dict]) -> float | None:
    """Median items_per_s of a run's train records, the first interval (warming up) left out when there are more."""
    speeds = [r["items_per_s"] for r in records if r.get("split") == "train" and "items_per_s" in r]
    if len(speeds) > 1:
        speeds = speeds[1:]
    return statistics.median(speeds) if speeds else None


def at_minutes(records: list[dict], minutes: float, name: str) -> float | None:
    """`name` of the last val record at or before `minutes` of the run (elapsed_s), None before the first."""
    seen = [r for r in records if r.get("split") == "val" and name in r and r["elapsed_s"] <= minutes * 60 + 1e-6]
    return seen[-1][name] if seen else None


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
