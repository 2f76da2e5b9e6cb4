"""Issue 17's side-by-side: `dl train configs/resnet_cifar10.yaml` against the plain PyTorch loop
../shared/baselines/cifar_plain.py, the same minutes of training each, one after the other, same machine.

    python scripts/bench_cifar_side.py                   # 30 + 30 minutes of training, ~70 minutes in all
    python scripts/bench_cifar_side.py --minutes 0.5 --tarball /tmp/mini.tar.gz --no-append   # a smoke test

Reports both test top-1 (10,000 test images), dl's top-1 at a third, two thirds and all of the budget
(10/20/30 minutes: the val records of metrics.jsonl by their elapsed_s; val is the 1,000 images the
recipe holds out, so these are val, not test, figures) for the weights and for train.ema's average,
which of the two best.pt took, and the plain loop's test top-1 at the same marks (it tests every epoch).

What differs on purpose: dl's budget (train.max_minutes) counts its evaluations, the plain loop's does
not; dl trains on 49,000 images (1,000 held out to choose best.pt), the plain loop on 50,000. Each lays its
schedule over the budget from its own first minutes: the plain loop from its first 20 steps' pace, dl (the
recipe's train.fit_to_minutes) from its first epoch's, validation included, in whole epochs.
The run folder is runs/cifar-side (overwritten). --no-append skips BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dlcli import threads

from benchlib import REPO, append_section, load_note, sets
from cifarlib import (
    ARCHIVE,
    at_minutes,
    fmt,
    median_speed,
    run_steps_per_epoch,
)

RECIPE = REPO / "configs" / "resnet_cifar10.yaml"
PLAIN = REPO.parent / "shared" / "baselines" / "cifar_plain.py"
# cifar_plain.py's lines: "epoch 3 step 1170 9.8 min of training, loss 1.234, test top-1 0.6543"
PLAIN_EPOCH = re.compile(r"epoch (\d+) step (\d+) ([\d.]+) min of training, loss [\d.na]+, test top-1 ([\d.]+)")
PLAIN_STEPS_PER_EPOCH = 50_000 // 128  # its batch, over the whole training split
# "final test top-1 0.8123 after 30.0 min of training, 11234 steps, 812 img/s"
PLAIN_FINAL = re.compile(r"final test top-1 ([\d.]+) after ([\d.]+) min of training, (\d+) steps, (\d+) img/s")


def marks(minutes: float) -> list[float]:
    """A third, two thirds and all of the budget: 10, 20 and 30 minutes of 30."""
    return [minutes / 3, 2 * minutes / 3, minutes]


def mark_ends(minutes: float) -> list[float]:
    """The marks as read from the records: the last one takes the run's final validation or test, which come
    after the budget is spent (dl validates when train.max_minutes stops it; the plain loop tests the epoch it cut)."""
    return [*marks(minutes)[:-1], math.inf]


def dl_settings(args: argparse.Namespace) -> dict:
    """The --set keys of dl's run: the budget and the archive (the recipe fits its schedule to the budget)."""
    settings = {"train.max_minutes": args.minutes, "data.root": str(args.tarball)}
    if args.minutes < 1:
        settings["train.log_every"] = 5  # a smoke run: a few speed readings before it stops
    return settings


def shown(settings: dict) -> str:
    """The --set flags as BENCHMARKS.md shows them: the archive relative to the repository, not this machine's path."""
    root = Path(settings["data.root"])
    return " ".join(sets(settings | {"data.root": os.path.relpath(root, REPO) if root.is_absolute() else root}))


def run_dl(args: argparse.Namespace, settings: dict) -> dict:
    """`dl train` in a fresh process: its summary, metrics.jsonl records and the command's wall time."""
    out = REPO / "runs" / "cifar-side"
    argv = [sys.executable, "-m", "dlcli", "train", str(RECIPE), "--out", str(out), "--overwrite", "-q", "--json"]
    start = time.perf_counter()
    proc = subprocess.run([*argv, *sets(settings)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dl train failed (exit {proc.returncode})")
    command_s = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    summary, per_epoch = json.loads(proc.stdout), run_steps_per_epoch(out)
    # best.pt on the test split once more with the other data.eval_flip: what the flip at eval adds
    other = subprocess.run(
        [sys.executable, "-m", "dlcli", "eval", str(out), "--json", "--flip" if not flips(settings) else "--no-flip"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if other.returncode != 0:
        raise SystemExit(f"dl eval failed (exit {other.returncode})")
    return {
        "summary": summary,
        "records": records,
        "steps_per_epoch": per_epoch,
        "command_s": command_s,
        "other_flip_top1": json.loads(other.stdout)["metrics"]["top1"],
    }


def flips(settings: dict) -> bool:
    """Whether dl's run scores each image with its mirror image too (the recipe's data.eval_flip, or --set)."""
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    return bool(settings.get("data.eval_flip", recipe["data"].get("eval_flip", False)))


def run_plain(args: argparse.Namespace) -> dict:
    """cifar_plain.py MINUTES TARBALL in a fresh process: its final line and per-epoch test top-1."""
    # As typed in a shell: without the OpenMP spin setting importing dlcli put into this process's environment.
    env = {k: v for k, v in os.environ.items() if not (k == "GOMP_SPINCOUNT" and v == threads.SPINCOUNT)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(PLAIN), str(args.minutes), str(args.tarball)], stdout=subprocess.PIPE, text=True, env=env
    )
    print(proc.stdout, end="", flush=True)
    final = PLAIN_FINAL.search(proc.stdout)
    if proc.returncode != 0 or final is None:
        raise SystemExit(f"cifar_plain.py failed (exit {proc.returncode})")
    epochs = [(float(m[2]), float(m[3])) for m in PLAIN_EPOCH.findall(proc.stdout)]  # (minutes, test top-1)
    return {
        "test_top1": float(final[1]),
        "minutes": float(final[2]),
        "steps": int(final[3]),
        "img_s": float(final[4]),
        "at": [
            next((acc for t, acc in reversed(epochs) if t <= mark + 1e-6), None) for mark in mark_ends(args.minutes)
        ],
        "command_s": time.perf_counter() - start,
    }


def report(args: argparse.Namespace, dl: dict, plain: dict, settings: dict) -> str:
    summary, records = dl["summary"], dl["records"]
    per_epoch = dl["steps_per_epoch"]
    val = [r for r in records if r.get("split") == "val"]
    last = val[-1] if val else {}
    at_dl = [
        f"{fmt(at_minutes(records, m, 'top1'))} / {fmt(at_minutes(records, m, 'ema_top1'))}"
        for m in mark_ends(args.minutes)
    ]
    at_plain = [fmt(a) for a in plain["at"]]
    mark_names = " / ".join(f"{m:.3g}" for m in marks(args.minutes))
    wanted = summary.get("fitted_epochs", yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["train"]["epochs"])
    rows = [
        "| | `dl train configs/resnet_cifar10.yaml` | `cifar_plain.py` |",
        "|---|---:|---:|",
        f"| test top-1 (the test split) | **{summary['metrics']['test']['top1']:.4f}** | **{plain['test_top1']:.4f}** |",
        f"| dl's best.pt {'without' if flips(settings) else 'with'} the flip at eval (data.eval_flip) "
        f"| {dl['other_flip_top1']:.4f} | |",
        f"| minutes of training | {summary['wall_s'] / 60:.1f} (evaluations included) | {plain['minutes']:.1f} |",
        f"| img/s (dl: median of the log intervals) | {fmt(median_speed(records), 0)} | {plain['img_s']:.0f} |",
        f"| steps (epochs) | {summary['steps']} ({summary['steps'] / per_epoch:.2f} of {wanted}) "
        f"| {plain['steps']} ({plain['steps'] / PLAIN_STEPS_PER_EPOCH:.2f}) |",
        f"| top-1 at {mark_names} min (dl: val, weights / EMA; plain: test) | {' ; '.join(at_dl)} | {' ; '.join(at_plain)} |",
        f"| whole command, s (data loading and final test included) | {dl['command_s']:.0f} | {plain['command_s']:.0f} |",
    ]
    ema = (
        f"dl's last validation: weights {fmt(last.get('top1'))}, EMA {fmt(last.get('ema_top1'))}; best.pt took the "
        f"{summary.get('weights', 'raw')} weights."
    )
    return "\n".join([*rows, "", ema])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="minutes of training for each (default 30)")
    p.add_argument("--tarball", type=Path, default=ARCHIVE, help="the CIFAR-10 ImageFolder archive")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(["scripts/bench_cifar_side.py", *(sys.argv[1:] if argv is None else argv)])
    for needed in (args.tarball, PLAIN):
        if not needed.is_file():
            raise SystemExit(f"{needed} is missing (the shared folder beside the repository)")
    load_start = load_note()
    settings = dl_settings(args)
    print(f"dl train {RECIPE.relative_to(REPO)} {shown(settings)}", flush=True)
    dl = run_dl(args, settings)
    print(f"python {PLAIN} {args.minutes:g} {args.tarball}", flush=True)
    plain = run_plain(args)
    body = report(args, dl, plain, settings)
    print(body)
    if args.no_append:
        return
    setup = (
        f"{args.minutes:g} minutes of training each, one after the other; dl with "
        f"`{shown(settings)}`. dl's budget counts its evaluations (val each epoch, weights and EMA); "
        "the plain loop's does not. dl trains on 49,000 images (1,000 held out as val), the plain loop on 50,000."
    )
    append_section(
        "bench_cifar_side", command, f"{setup}\n\n{body}\n\nLoad: {load_start} at start, {load_note()} at the end."
    )


if __name__ == "__main__":
    main()
