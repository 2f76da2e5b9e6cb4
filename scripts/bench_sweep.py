"""dl sweep under fire: a 12-trial sweep with --jobs 2, SIGKILLed twice mid-trial and resumed.

    .venv/bin/python scripts/bench_sweep.py                 # pos_lstm at 1,000 sentences: ~10 min on 2 cores
    .venv/bin/python scripts/bench_sweep.py --trials 4 --no-append   # a quick look

The sweep (`dl sweep pos_lstm --param optim.lr=loguniform:1e-4:1e-1 --param model.hidden_size=choice:32,64,96
--trials 12 --jobs 2 --metric val.accuracy --prune median`) is started as a process and SIGKILLed as soon as
one of its trials has written a checkpoint and not finished; `dl sweep DIR --resume` continues it and is
killed the same way once more; a last resume finishes it. Then each trial that a kill cut is trained again
without a stop (`dl train TRIAL/config.yaml`, with the threads the sweep gave it) and its last.pt compared
with the cut trial's, tensor by tensor. The table of `dl sweep show` and its plot (docs/sweep.png) follow.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlcli import checkpoint, threads

from benchlib import REPO, append_section, load_note

RECIPE = ["pos_lstm", "--set", "data.train_sentences=1000", "--set", "data.val_sentences=200"]
RECIPE += ["--set", "data.test_sentences=200", "--set", "train.epochs=4"]
SPACE = ["--param", "optim.lr=loguniform:1e-4:1e-1", "--param", "model.hidden_size=choice:32,64,96"]


def dl(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlcli", *args], stderr=subprocess.PIPE, text=True)


def kill_mid_trial(sweep: subprocess.Popen, folder: Path) -> set[str]:
    """SIGKILL the sweep once a trial has a checkpoint and no summary.json; the trials cut."""
    while sweep.poll() is None:
        cut = {p.parent.parent.name for p in folder.glob("trial-*/checkpoints/last.pt")}
        cut -= {p.parent.name for p in folder.glob("trial-*/summary.json")}
        if cut:
            sweep.send_signal(signal.SIGKILL)
            sweep.wait()
            return cut
        time.sleep(0.05)
    raise SystemExit(f"the sweep ended before a trial could be cut: {sweep.stderr.read()}")


def same_weights(folder: Path, trial: str, scratch: Path) -> bool:
    """Train the trial again without a stop, with the threads the sweep gave it; last.pt equal tensor by tensor."""
    env = {**os.environ, "DL_THREADS": str(max(1, threads.count() // 2))}
    out = scratch / f"ref-{trial}"
    command = [sys.executable, "-m", "dlcli", "train", str(folder / trial / "config.yaml"), "--out", str(out), "-q"]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    cut = checkpoint.load(folder / trial / "checkpoints" / "last.pt", torch.device("cpu"))
    whole = checkpoint.load(out / "checkpoints" / "last.pt", torch.device("cpu"))
    return cut.position == whole.position and all(torch.equal(t, whole.model[k]) for k, t in cut.model.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--no-append", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    folder = scratch / "sweep"
    load, start = load_note(), time.perf_counter()
    flags = [*RECIPE, *SPACE, "--trials", str(args.trials), "--jobs", "2", "--metric", "val.accuracy"]
    cut = kill_mid_trial(dl("sweep", *flags, "--prune", "median", "--out", str(folder)), folder)
    print(f"killed 1: {sorted(cut)} cut", flush=True)
    cut2 = kill_mid_trial(dl("sweep", str(folder), "--resume"), folder)
    print(f"killed 2: {sorted(cut2)} cut", flush=True)
    last = dl("sweep", str(folder), "--resume")
    _, err = last.communicate()
    if last.returncode != 0:
        raise SystemExit(f"the last resume failed: {err}")
    sweep_s = time.perf_counter() - start
    plot = REPO / "docs" / "sweep.png"
    show = subprocess.run(
        [sys.executable, "-m", "dlcli", "sweep", "show", str(folder), "--plot", str(plot)],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dlcli", "sweep", "show", str(folder), "--json"], capture_output=True, check=True
        ).stdout
    )
    rows = [f"| {t} | {'yes' if same_weights(folder, t, scratch) else 'NO'} |" for t in sorted(cut | cut2)]
    body = "\n".join(
        [
            f"{args.trials}-trial sweep of pos_lstm (1,000 training sentences, 4 epochs), `--jobs 2`, killed twice "
            f"mid-trial (SIGKILL) and resumed: {sweep_s:.0f} s in all. Trials: "
            + ", ".join(f"{n} {state}" for state, n in report["counts"].items() if n)
            + f" of {report['planned']} planned. Load: {load} at start, {load_note()} at the end.",
            "",
            "| trial cut by a kill | its last.pt equal to the same trial trained without a stop |",
            "|---|---|",
            *rows,
            "",
            "`dl sweep show` (the plot: docs/sweep.png):",
            "",
            "```",
            show.stdout.rstrip(),
            "```",
        ]
    )
    print(body)
    if not args.no_append:
        append_section("bench_sweep", f"python scripts/bench_sweep.py --trials {args.trials}", body)


if __name__ == "__main__":
    main()
