"""The twelve classifier recipes' architectures on the full CIFAR-10, at one equal wall budget each.

    python scripts/bench_cifar10.py                          # CPU: 12 x 5 minutes, ~90 minutes in all
    python scripts/bench_cifar10.py --minutes 1              # one GPU: ~20 minutes in all
    python scripts/bench_cifar10.py --archs resnet,mobilenet --max-steps 3 --no-append \\
        --tarball /tmp/mini.tar.gz --plot /tmp/archs.png     # a smoke test (a small archive of the same layout)
    python scripts/bench_cifar10.py --dry-run                # what would run, nothing trained

Each bundled shapes recipe of the twelve (configs/<name>.yaml: its arch, optimizer, lr, batch and
weight decay) trains on ../shared/datasets/cifar10/cifar10-jpeg.tar.gz (train/ and test/; 2% of train
held out as val), in a fresh process, one after the other, with `train.max_minutes: --minutes`. Its
input is 32 px, or the smallest size dl accepts for the arch (classify.min_input_size: AlexNet 63,
Inception v3 75), upscaled from 32 and stated in the table. So that each arch's learning rate
anneals within the budget, the child process first times 5 training steps of that recipe (after 2)
and lays the schedule over the steps 90% of the budget holds (cifarlib.py): schedule.total_steps and
train.max_steps, with 5% of them as warmup; max_minutes still stops a slow run on time.

The table (arch, test top-1 of best.pt, img/s of training, parameters, input size, epochs reached) goes
to BENCHMARKS.md (benchlib.append_section; --no-append skips it) and the picture (test top-1 against
img/s, log x, one labelled point per arch) to docs/cifar10_archs.png when all twelve run (--plot).
Per arch, beyond the budget: decoding the 60,000 JPEGs (~1 minute on 2 cores, more at 63/75 px),
the calibration, and the final test of 10,000 images (up to ~2 minutes for the big nets on a CPU).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchlib import REPO, append_section, load_note, machine, train_recipe
from cifarlib import ARCHIVE, budget_steps, fmt, median_speed, run_steps_per_epoch, step_speed, steps_per_epoch

CONFIGS = REPO / "configs"
# The twelve classifier recipes, in the README's order.
RECIPES = (
    "alexnet",
    "vgg16",
    "squeezenet",
    "densenet",
    "inception",
    "googlenet",
    "resnet",
    "resnext",
    "wide_resnet",
    "shufflenet",
    "mobilenet",
    "mnasnet",
)
VAL_FRACTION = 0.02  # 1,000 of the 50,000 training images choose best.pt; the 10,000 test images score it
RESULT = "RESULT "  # the child's last stdout line: RESULT {json}


def recipe_arch(recipe: str) -> str:
    return yaml.safe_load((CONFIGS / f"{recipe}.yaml").read_text(encoding="utf-8"))["model"]["arch"]


def input_size(arch: str) -> int:
    """CIFAR-10's 32 px, or the smallest size dl accepts for `arch` (classify.check_model's minimum)."""
    from dlcli.tasks import classify

    return max(32, classify.min_input_size(arch))


def base_settings(recipe: str, tarball: Path) -> dict:
    """The --set keys that move a shapes recipe onto the CIFAR-10 archive."""
    return {
        "data.dataset": "imagefolder",
        "data.root": str(tarball),
        "data.image_size": input_size(recipe_arch(recipe)),
        "data.val_fraction": VAL_FRACTION,
        "data.augment": "random_crop",  # crop + flip for every arch (resnet.yaml has none: shapes vary already)
        "model.aux_logits": "auto",  # Inception v3's head needs 299 px; GoogLeNet's keep training at any size
        "name": f"{recipe}-cifar10-bench",
    }


# --------------------------------------------------------------------------- one arch (a child process)


def run_one(args: argparse.Namespace) -> dict:
    """Calibrate, then `dl train` the recipe over the budget; the row of the table."""
    recipe = args.one
    settings = base_settings(recipe, Path(args.tarball))
    img_s, params = step_speed(CONFIGS / f"{recipe}.yaml", settings, args.device)
    batch = yaml.safe_load((CONFIGS / f"{recipe}.yaml").read_text(encoding="utf-8"))["data"]["batch_size"]
    per_epoch = steps_per_epoch(VAL_FRACTION, batch)
    total = budget_steps(img_s, args.minutes, batch)
    stop = min(total, args.max_steps) if args.max_steps else total
    settings |= {
        "schedule.total_steps": total,
        "schedule.warmup_steps": max(1, total // 20),
        "train.epochs": -(-total // per_epoch),  # ceil: the loop runs until max_steps or max_minutes
        "train.max_steps": stop,
        "train.max_minutes": args.minutes,
        "train.log_every": max(1, min(50, stop // 10)),
    }
    if args.device:
        settings["train.device"] = args.device
    print(
        f"{recipe}: calibrated {img_s:.0f} img/s, schedule over {total} steps ({total / per_epoch:.2f} epochs)",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as folder:
        records = train_recipe(CONFIGS / f"{recipe}.yaml", Path(folder) / recipe, settings)
        summary = json.loads((Path(folder) / recipe / "summary.json").read_text(encoding="utf-8"))
        trained_per_epoch = run_steps_per_epoch(Path(folder) / recipe)  # of the archive given, the smoke test's too
    return {
        "recipe": recipe,
        "arch": recipe_arch(recipe),
        "size": settings["data.image_size"],
        "batch": batch,
        "params": params,
        "calibrated_img_s": img_s,
        "img_s": median_speed(records),
        "steps": summary["steps"],
        "epochs": summary["steps"] / trained_per_epoch,
        "test_top1": summary["metrics"]["test"]["top1"],
        "wall_s": summary["wall_s"],
    }


# --------------------------------------------------------------------------- all of them (the parent)


def child(recipe: str, args: argparse.Namespace) -> dict:
    """One arch in a fresh process (its own memory, threads and allocator): its row, or the failure."""
    argv = [sys.executable, __file__, "--one", recipe, "--minutes", str(args.minutes), "--tarball", str(args.tarball)]
    argv += ["--max-steps", str(args.max_steps)] if args.max_steps else []
    argv += ["--device", args.device] if args.device else []
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)  # stderr: the child's progress, live
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        return {"recipe": recipe, "arch": recipe_arch(recipe), "failed": f"exit {proc.returncode}"}
    return json.loads(lines[-1][len(RESULT) :])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| arch (recipe) | test top-1 | img/s | parameters | input px | batch | epochs reached |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: -r.get("test_top1", -1)):
        if "failed" in r:
            lines.append(f"| {r['arch']} ({r['recipe']}) | failed ({r['failed']}) | | | | | |")
            continue
        lines.append(
            f"| {r['arch']} ({r['recipe']}) | {r['test_top1']:.4f} | {fmt(r['img_s'], 0)} | {r['params'] / 1e6:.1f}M "
            f"| {r['size']} | {r['batch']} | {r['epochs']:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, minutes: float) -> Path:
    """Test top-1 against training img/s (log x), one labelled point per arch."""
    from dlcli.plots import new_figure, save_figure

    done = [r for r in rows if "failed" not in r and r["img_s"]]
    fig = new_figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.scatter([r["img_s"] for r in done], [r["test_top1"] for r in done])
    for r in done:
        ax.annotate(
            f"{r['arch']} ({r['size']} px)",
            (r["img_s"], r["test_top1"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())  # 300, not 3 x 10^2
    ax.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
    ax.set_xlabel("training img/s (log scale)")
    ax.set_ylabel("CIFAR-10 test top-1")
    ax.set_title(f"{minutes:g} minutes of training each, {machine()}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="wall budget per arch (default 5 on a CPU; 1 on a GPU)")
    p.add_argument("--archs", default=",".join(RECIPES), help="comma-separated recipe names (default: all twelve)")
    p.add_argument("--tarball", type=Path, default=ARCHIVE, help="the CIFAR-10 ImageFolder archive")
    p.add_argument("--max-steps", type=int, default=None, help="stop each run after this many steps (smoke tests)")
    p.add_argument("--device", default=None, help="dl's --device (default: auto)")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="where the picture goes (default: docs/cifar10_archs.png when all twelve run; none for a subset, "
        "which would replace the README's picture of twelve with fewer)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would run; train nothing")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process: one recipe
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in args.archs if a not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        print(RESULT + json.dumps(run_one(args)), flush=True)
        return
    command = "python " + shlex.join(["scripts/bench_cifar10.py", *(sys.argv[1:] if argv is None else argv)])
    if args.dry_run:
        for recipe in args.archs:
            print(
                f"{recipe}: {recipe_arch(recipe)} at {input_size(recipe_arch(recipe))} px, {args.minutes:g} min, "
                f"configs/{recipe}.yaml with {base_settings(recipe, args.tarball)}"
            )
        return
    if not args.tarball.is_file():
        raise SystemExit(f"{args.tarball} is missing (the shared datasets folder beside the repository)")
    load_start = load_note()
    rows = []
    for recipe in args.archs:
        rows.append(child(recipe, args))
        print(f"{recipe}: {rows[-1]}", flush=True)
    table = markdown_table(rows)
    print(table)
    if args.plot is None and args.archs == list(RECIPES):
        args.plot = REPO / "docs" / "cifar10_archs.png"
    picture = plot(rows, args.plot, args.minutes) if args.plot is not None else None
    if picture is not None:
        print(f"wrote {picture}")
    if args.no_append:
        return
    steps = f", at most {args.max_steps} steps each" if args.max_steps else ""
    body = "\n".join(
        [
            f"Full CIFAR-10 ({args.tarball.name}: 49,000 train, 1,000 val held out, 10,000 test), each bundled "
            f"recipe's arch, optimizer and batch; {args.minutes:g} minutes of training each (train.max_minutes, "
            f"evaluations included){steps}, the schedule laid over the steps 90% of it held at the calibrated speed "
            "(scripts/cifarlib.py). Test top-1 of best.pt; img/s the median of the run's log intervals; upscaled "
            "inputs where the arch needs them.",
            "",
            table,
            "",
            *(
                [
                    f"![test top-1 against img/s]({picture.relative_to(REPO) if picture.is_relative_to(REPO) else picture})",
                    "",
                ]
                if picture is not None
                else []
            ),
            f"Load: {load_start} at start, {load_note()} at the end.",
        ]
    )
    append_section("bench_cifar10", command, body)


if __name__ == "__main__":
    main()
