"""What each training augmentation costs: img/s of the classify train loop's batch preparation, and of a
whole ResNet-18 training step, with each option of data.augment, data.random_erase, train.mixup and
train.cutmix against none.

    .venv/bin/python scripts/bench_augment.py                        # 32 px, batch 128, CPU
    .venv/bin/python scripts/bench_augment.py --batches 4 --steps 2 --no-append

* preparation: `train_data.batches(0)` of the in-memory loader `dl train` builds (index, per-image v2
  transforms on uint8, normalization), then MixUp/CutMix as the train step applies them (batch_mix);
  `--batches` batches timed after one untimed.
* step: classify's own Job (`classify.build`): the same batches, its train_step (mixing, forward,
  cross-entropy with the soft targets), backward and an SGD step; `--steps` steps timed after `--warmup`.

Each option is one row, alone on top of `none` (augment none, erase 0, no mixing), so the
rows' cost over the first row is that option's cost. `--no-append` skips BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

from dlcli.config import validate
from dlcli.data.augment import batch_mix
from dlcli.data.images import Split, make_loader
from dlcli.data.synthetic import make_shapes
from dlcli.runtime import create_runtime
from dlcli.tasks import classify

from benchlib import append_section, load_note, machine, timed_steps

SEED = 0
# label -> the recipe keys it sets; the first row is the baseline.
OPTIONS = {
    "none": {},
    "random_crop": {"data": {"augment": "random_crop"}},
    "random_resized_crop": {"data": {"augment": "random_resized_crop"}},
    "trivial_augment": {"data": {"augment": "trivial_augment"}},
    "rand_augment": {"data": {"augment": "rand_augment"}},
    "auto_augment": {"data": {"augment": "auto_augment"}},
    "random_erase 0.25": {"data": {"random_erase": 0.25}},
    "mixup 0.2": {"train": {"mixup": 0.2}},
    "cutmix 1.0": {"train": {"cutmix": 1.0}},
    "mixup 0.2 + cutmix 1.0": {"train": {"mixup": 0.2, "cutmix": 1.0}},
}

console = Console(highlight=False)


@dataclass
class Row:
    option: str
    prep: float  # img/s of batch preparation
    step: float | None  # img/s of a whole training step (None: --steps 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=10, help="timed batches of preparation per option")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per option (0: preparation only)")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps before them")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated rows of: " + ", ".join(OPTIONS))
    p.add_argument("--repeats", type=int, default=3, help="rounds over all options; each row reports its medians")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    args = p.parse_args(argv)
    chosen = [o.strip() for o in args.options.split(",") if o.strip()]
    args.options = ["none", *[o for o in chosen if o != "none"]]  # the baseline row comes first
    unknown = [o for o in args.options if o not in OPTIONS]
    if unknown:
        p.error(f"unknown option(s) {unknown}; choose from {list(OPTIONS)}")
    if args.batches < 1 or args.steps < 0 or args.warmup < 1 or args.batch < 3:
        p.error("--batches and --warmup must be >= 1, --steps >= 0, --batch >= 3")
    return args


def config(option: str, args: argparse.Namespace, train_size: int) -> classify.Config:
    """The classify recipe of one row: shapes in memory, SGD, fp32 on the CPU."""
    keys = OPTIONS[option]
    raw = {
        "task": "classify",
        "seed": SEED,
        "model": {"arch": args.arch},
        "data": {
            "image_size": args.image_size,
            "batch_size": args.batch,
            "train_size": train_size,
            "val_size": 10,
            "test_size": 10,
            "augment": "none",
            **keys.get("data", {}),
        },
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "train": {"device": "cpu", "precision": "fp32", **keys.get("train", {})},
    }
    return validate(raw, classify.Config)


def prep_throughput(option: str, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace) -> float:
    """img/s of the loader's batches plus MixUp/CutMix, as the train loop gets them."""
    cfg = config(option, args, len(labels))
    runtime = create_runtime(cfg.train, "cpu")
    loader = make_loader(Split(images, labels), cfg.data, SEED, runtime, train=True)
    mix = batch_mix(cfg.train.mixup, cfg.train.cutmix, 10)
    batches = loader.batches(0)

    def step(_: int) -> None:
        x, y = next(batches)
        if mix is not None:
            mix(x, y)

    return args.batches * args.batch / timed_steps(step, 1, args.batches, runtime.device)


def step_throughput(option: str, args: argparse.Namespace) -> float:
    """img/s of classify's whole training step (batch, train_step, backward, SGD step)."""
    cfg = config(option, args, (args.warmup + args.steps) * args.batch)
    runtime = create_runtime(cfg.train, "cpu")
    torch.manual_seed(SEED)
    job = classify.build(cfg, runtime)
    model = job.model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    batches = job.train_data.batches(0)

    def step(_: int) -> None:
        loss = job.train_step(model, next(batches))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return args.steps * args.batch / timed_steps(step, args.warmup, args.steps, runtime.device)


# --------------------------------------------------------------------------- output

HEADER = ("option", "prep img/s", "prep ms/batch", "step img/s", "step vs none")


def cells(row: Row, base: Row, batch: int) -> tuple[str, ...]:
    step = ("-", "-") if row.step is None else (f"{row.step:.1f}", f"{row.step / base.step:.3f}")
    return (row.option, f"{row.prep:.0f}", f"{1000 * batch / row.prep:.2f}", *step)


def markdown_table(rows: list[Row], batch: int) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|" + "---:|" * (len(HEADER) - 1)]
    lines += ["| " + " | ".join(cells(row, rows[0], batch)) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    images, labels = make_shapes((args.batches + 1) * args.batch, args.image_size, SEED, "train")
    # Round-robin over the options, `repeats` times, medians per row: a machine that speeds up or slows
    # down during the run (caches warming, other load) then shifts every row alike, not the last ones.
    preps: dict[str, list[float]] = {option: [] for option in args.options}
    steps: dict[str, list[float]] = {option: [] for option in args.options}
    for r in range(args.repeats):
        for option in args.options:
            preps[option].append(prep_throughput(option, images, labels, args))
            if args.steps:
                steps[option].append(step_throughput(option, args))
            step_note = f", step {steps[option][-1]:.1f} img/s" if args.steps else ""
            console.print(f"  {option} {r + 1}/{args.repeats}: prep {preps[option][-1]:.0f} img/s{step_note}")
    rows = [
        Row(option, statistics.median(preps[option]), statistics.median(steps[option]) if args.steps else None)
        for option in args.options
    ]
    load_end = load_note()
    table = Table(*HEADER, title=f"augmentation cost: cpu, {args.arch}, {args.image_size} px, batch {args.batch}")
    for row in rows:
        table.add_row(*cells(row, rows[0], args.batch))
    console.print(table)
    console.print(load_end)
    if not args.no_append:
        setup = (
            f"cpu fp32, {args.arch}, {args.image_size} px, batch {args.batch}; preparation: {args.batches} timed "
            f"batches after 1; step: {args.steps} timed steps after {args.warmup}; medians of {args.repeats} rounds over all rows"
        )
        append_section(
            "bench_augment",
            command,
            f"{setup}.\n\n{markdown_table(rows, args.batch)}\n\nLoad: {load_start} at start, {load_end} at the end.\n",
        )


if __name__ == "__main__":
    main()
