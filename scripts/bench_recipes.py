"""How long the offline recipes take on this machine, beside the machine yardstick, scaled to others.

    python scripts/bench_recipes.py                       # every quick offline recipe
    python scripts/bench_recipes.py resnet                # what `make demo` trains

Machines of one kind differ 3-5x (a 2-core AMD EPYC with AVX2 only ran the plain ResNet-18 step
at ~60 img/s, the developers' Intel at ~290), so a bare time says little. Each recipe is trained as
`dl train RECIPE -q --json` in a fresh process, between two runs of the yardstick
../shared/baselines/step_plain.py (a plain PyTorch ResNet-18 training step, 64 px, batch 64); the
table gives the times here and scaled to a machine whose yardstick reads 60 img/s:
seconds x (yardstick here / 60). Run it on a quiet machine: one heavy process at a time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, append_section, load_note

YARDSTICK = REPO.parent / "shared" / "baselines" / "step_plain.py"
REFERENCE_IMG_S = 60.0  # the slow machine of issue 15: a 2-core AMD EPYC, AVX2 only
# The recipes that run offline in minutes (`dl configs` lists them all; the others are benchmarks).
QUICK = ["resnet", "word2vec", "pos_lstm", "brackets_gru", "char_lstm", "word_lstm", "transformer_lm", "translation"]


def yardstick() -> float:
    """The plain ResNet-18 step's img/s (the script prints '... : 291.3 img/s (2 threads)')."""
    out = subprocess.run([sys.executable, str(YARDSTICK)], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"([\d.]+) img/s", out).group(1))


def train(recipe: str, folder: Path) -> dict:
    """`dl train RECIPE` in a fresh process: its summary, plus the whole command's wall time."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dlcli", "train", recipe, "--out", str(folder / recipe), "-q", "--json"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"dl train {recipe} failed (exit {proc.returncode}):\n{proc.stderr}")
    return {**json.loads(proc.stdout), "command_s": time.perf_counter() - start}


def headline(summary: dict) -> str:
    """The split and metric a reader checks: test (else val), the first of these names it has."""
    metrics = summary["metrics"]
    split = "test" if "test" in metrics else "val"
    for name in ("top1", "accuracy", "exact", "analogy_accuracy", "bleu", "loss"):
        if name in metrics[split]:
            return f"{split} {name} {metrics[split][name]:.4f}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=QUICK, help="bundled recipe names (default: the quick ones)")
    args = parser.parse_args()
    if not YARDSTICK.is_file():
        raise SystemExit(f"the yardstick {YARDSTICK} is missing (it lives in the shared folder beside the repository)")
    load = load_note()
    before = yardstick()
    with tempfile.TemporaryDirectory() as folder:
        summaries = {recipe: train(recipe, Path(folder)) for recipe in args.recipes}
    after = yardstick()
    speed = statistics.mean([before, after])
    scale = speed / REFERENCE_IMG_S
    rows = [
        "| recipe | training s | whole command s | scaled to a 60 img/s machine: training s | result |",
        "|---|---:|---:|---:|---|",
    ]
    for recipe, s in summaries.items():
        rows.append(
            f"| {recipe} | {s['wall_s']:.1f} | {s['command_s']:.1f} | {s['wall_s'] * scale:.0f} | {headline(s)} |"
        )
    body = "\n".join(
        [
            f"Yardstick (../shared/baselines/step_plain.py: resnet18 64 px batch 64, fp32) before / after: "
            f"{before:.1f} / {after:.1f} img/s; scale = {speed:.1f} / {REFERENCE_IMG_S:.0f} = {scale:.2f}.",
            "",
            *rows,
            "",
            f"Load: {load} at start, {load_note()} at the end.",
        ]
    )
    print(body)
    append_section("bench_recipes", "python scripts/bench_recipes.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
