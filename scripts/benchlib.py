"""What every bench_*.py shares: the machine line, the load note, appending to BENCHMARKS.md, `dl train` in-process."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from dlcli.cli import app

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{cpu}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def timed_steps(step, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds for `steps` calls of step(i) after `warmup` untimed ones; the device is synced at both ends."""
    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer reads the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def append_section(bench: str, command: str, body: str) -> None:
    """Append '## bench — date — machine', the command and `body` to BENCHMARKS.md."""
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = f"\n## {bench} — {date} — {machine()}\n\n```\n{command}\n```\n\n{body.strip()}\n"
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    BENCHMARKS.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")
    print(f"appended to {BENCHMARKS}")


def sets(settings: dict) -> list[str]:
    """{"train.epochs": 3} -> ["--set", "train.epochs=3"]."""
    return [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]


def train_recipe(recipe: Path, out: Path, settings: dict, live: bool = False) -> list[dict]:
    """`dl train RECIPE --out OUT --overwrite --set ...` in this process; the run's metrics.jsonl records.

    live: the Typer app called directly, so a long run shows its progress on this terminal."""
    argv = ["train", str(recipe), "--out", str(out), "--overwrite", *sets(settings)]
    if live:  # standalone_mode=False: the exit code is returned (an error is already printed)
        code, output = app(argv, standalone_mode=False) or 0, ""
    else:
        result = CliRunner().invoke(app, [*argv, "-q"])
        code, output = result.exit_code, result.output
    if code != 0:
        raise SystemExit(f"dl train failed (exit {code}):\n{output}")
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
