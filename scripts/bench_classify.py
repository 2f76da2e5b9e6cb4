"""Training throughput of `dl train` against a plain PyTorch loop, side by side in one process.

    .venv/bin/python scripts/bench_classify.py                  # resnet18, mobilenet_v2, vgg16; CPU, eager
    .venv/bin/python scripts/bench_classify.py --compile        # also both under torch.compile
    .venv/bin/python scripts/bench_classify.py --models resnet18 --steps 3 --warmup 1 --repeats 1 --no-append

Both sides train the same torchvision model (num_classes=10) with SGD (lr 0.01, momentum 0.9,
weight decay 5e-4, no Nesterov, constant lr) on the same in-memory uint8 `shapes` images, with
the same batch size, normalization (x / 255, ImageNet mean/std) and precision:

* plain: a hand-written loop over slices of the uint8 tensor; `steps` optimizer steps are timed
  with time.perf_counter after `warmup` untimed ones, with one device sync at the end.
* dl: the real `dl train resnet --set ...` through the Typer app (in-process, CliRunner), one
  epoch of exactly warmup+steps batches. Its throughput comes from metrics.jsonl: the difference
  of `elapsed_s` between the train records at step `warmup` and at step `warmup + steps` is the
  wall time of exactly those steps (evaluation, checkpoints and data generation come after or
  before and are not counted). train.log_every = gcd(warmup, steps) puts a record on both steps.

Measurements alternate plain, dl, plain, dl ... `--repeats` times and each side reports its
median, so drift in machine load hits both alike. `--no-append` skips BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data.loaders import IMAGENET_MEAN, IMAGENET_STD
from dlcli.data.synthetic import make_shapes
from dlcli.runtime import DTYPES, pick_device, pick_precision

from benchlib import append_section, load_note, machine, timed_steps

NUM_CLASSES = 10
SEED = 0
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4

console = Console(highlight=False)


@dataclass
class Row:
    model: str
    mode: str  # eager | compiled
    plain: list[float]  # images/s, one per repeat
    dl: list[float]

    @property
    def plain_median(self) -> float:
        return statistics.median(self.plain)

    @property
    def dl_median(self) -> float:
        return statistics.median(self.dl)

    @property
    def ratio(self) -> float:
        return self.dl_median / self.plain_median


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18,mobilenet_v2,vgg16", help="comma-separated torchvision archs")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps before them (>= 1)")
    p.add_argument("--repeats", type=int, default=3, help="alternating plain/dl measurements; medians reported")
    p.add_argument("--compile", action="store_true", help="also measure both under torch.compile")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1 or args.batch < 1:
        p.error("--warmup, --steps, --repeats and --batch must be >= 1")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.device = pick_device(args.device)
    args.precision = pick_precision(args.precision, args.device)
    return args


# --------------------------------------------------------------------------- the plain loop


def make_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, S, S) and labels on the device: warmup + steps batches of them."""
    count = (args.warmup + args.steps) * args.batch
    images, labels = make_shapes(count, args.image_size, SEED, "train")
    return images.to(args.device), labels.to(args.device)


def match_runtime_flags(device: torch.device) -> None:
    """The global backend flags dl's runtime sets on CUDA (TF32, cudnn autotuning), set for both sides
    from the start: otherwise the first dl run would switch them on under later plain measurements."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def plain_throughput(
    arch: str, compiled: bool, data: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace
) -> float:
    """images/s of `steps` optimizer steps of a hand-written loop, after `warmup` steps."""
    images, labels = data
    device, batch = args.device, args.batch
    torch.manual_seed(SEED)
    model = torchvision.models.get_model(arch, weights=None, num_classes=NUM_CLASSES).to(device).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def step(i: int) -> None:
        x = (images[i * batch : (i + 1) * batch].float() / 255.0 - mean) / std
        y = labels[i * batch : (i + 1) * batch]
        with autocast(device, args.precision):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return args.steps * batch / timed_steps(step, args.warmup, args.steps, device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


# --------------------------------------------------------------------------- dl train


def dl_args(arch: str, compiled: bool, out: Path, args: argparse.Namespace) -> list[str]:
    """`dl train` with the plain loop's settings: one epoch of exactly warmup + steps batches."""
    settings = {
        "seed": SEED,
        "model.arch": arch,
        "model.num_classes": NUM_CLASSES,
        "data.image_size": args.image_size,
        "data.batch_size": args.batch,
        "data.augment": "none",
        "data.train_size": (args.warmup + args.steps) * args.batch,
        "data.val_size": 10,
        "data.test_size": 10,
        "optim.name": "sgd",
        "optim.lr": LR,
        "optim.momentum": MOMENTUM,
        "optim.weight_decay": WEIGHT_DECAY,
        "optim.nesterov": "false",
        "schedule.name": "constant",
        "schedule.warmup_epochs": 0,  # the resnet recipe warms up over epoch 1
        "train.epochs": 1,
        "train.log_every": math.gcd(args.warmup, args.steps),
        "train.device": str(args.device),
        "train.precision": args.precision,
        "train.channels_last": "false",  # the plain loop is NCHW (auto means NHWC on CUDA)
        "train.compile": str(compiled).lower(),
    }
    sets = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    return ["train", "resnet", "--out", str(out), "--overwrite", "-q", "--json", *sets]


def dl_throughput(arch: str, compiled: bool, args: argparse.Namespace) -> float:
    """images/s of `dl train`'s steps warmup+1 .. warmup+steps, from its metrics.jsonl."""
    with tempfile.TemporaryDirectory(prefix="bench_classify_") as tmp:
        out = Path(tmp) / "run"
        result = CliRunner().invoke(app, dl_args(arch, compiled, out, args))
        if result.exit_code != 0:
            raise RuntimeError(f"dl train failed (exit {result.exit_code}):\n{result.output}") from result.exception
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed_s"] for r in records if r["split"] == "train"}
    first, last = args.warmup, args.warmup + args.steps
    if first not in elapsed or last not in elapsed:
        raise RuntimeError(f"metrics.jsonl has no train record at step {first} or {last}: {sorted(elapsed)}")
    return args.steps * args.batch / (elapsed[last] - elapsed[first])


# --------------------------------------------------------------------------- measuring


def measure(arch: str, compiled: bool, data: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace) -> Row:
    """Alternate plain and dl `repeats` times, so drift in machine load hits both alike."""
    row = Row(arch, "compiled" if compiled else "eager", [], [])
    for r in range(args.repeats):
        fresh_compile_caches(compiled)
        row.plain.append(plain_throughput(arch, compiled, data, args))
        fresh_compile_caches(compiled)
        row.dl.append(dl_throughput(arch, compiled, args))
        console.print(
            f"  {arch} {row.mode} {r + 1}/{args.repeats}: plain {row.plain[-1]:.1f}, dl {row.dl[-1]:.1f} img/s"
        )
    return row


def fresh_compile_caches(compiled: bool) -> None:
    """Each compiled measurement compiles from scratch (and never hits dynamo's recompile limit)."""
    if compiled:
        torch._dynamo.reset()


# --------------------------------------------------------------------------- output

HEADER = ("model", "mode", "plain img/s", "dl img/s", "dl/plain")


def cells(row: Row) -> tuple[str, ...]:
    return (row.model, row.mode, f"{row.plain_median:.1f}", f"{row.dl_median:.1f}", f"{row.ratio:.3f}")


def print_table(rows: list[Row], title: str) -> None:
    table = Table(*HEADER, title=title)
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def repeats_line(rows: list[Row]) -> str:
    """Every measurement, in run order: the spread tells how much to trust the medians."""

    def values(xs: list[float]) -> str:
        return ", ".join(f"{x:.1f}" for x in xs)

    return "; ".join(f"{r.model} {r.mode}: plain {values(r.plain)} / dl {values(r.dl)}" for r in rows)


def append_benchmarks(rows: list[Row], args: argparse.Namespace, command: str, loads: tuple[str, str]) -> None:
    setup = (
        f"device {args.device}, precision {args.precision}, image size {args.image_size}, batch {args.batch}, "
        f"{args.steps} timed steps after {args.warmup} warmup, median of {args.repeats} alternating repeats"
    )
    append_section(
        "bench_classify",
        command,
        f"{setup}.\n\n{markdown_table(rows)}\n\nEach repeat, img/s: {repeats_line(rows)}.\n\n"
        f"Load: {loads[0]} at start, {loads[1]} at the end.\n",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    match_runtime_flags(args.device)
    data = make_data(args)
    modes = [False, True] if args.compile else [False]
    rows = [measure(arch, compiled, data, args) for arch in args.models for compiled in modes]
    load_end = load_note()
    print_table(
        rows, f"dl train vs plain loop: {args.device} {args.precision}, {args.image_size} px, batch {args.batch}"
    )
    console.print(load_end)
    if not args.no_append:
        append_benchmarks(rows, args, command, (load_start, load_end))


if __name__ == "__main__":
    main()
