"""Language models: `dl train` tokens/s against a plain PyTorch loop, and a timed tiny-shakespeare run.

    .venv/bin/python scripts/bench_lm.py                              # (a) 2x384 LSTM, B 32, T 128, CPU
    .venv/bin/python scripts/bench_lm.py --steps 6 --warmup 2 --repeats 1 --hidden 128 --no-append
    .venv/bin/python scripts/bench_lm.py --full 18                    # (b) configs/char_lstm_shakespeare.yaml
    .venv/bin/python scripts/bench_lm.py --full 20 --recipe configs/transformer_lm_shakespeare.yaml

(a) Throughput. Both sides train the same network (nn.Embedding -> nn.LSTM/GRU/RNN -> dropout ->
nn.Linear, the lm task's model) with AdamW (lr 2e-3, weight decay 0.01, constant lr), gradient
clipping at 1.0 and the same batchify layout of the same token stream (the built-in corpus at
character level, only `warmup + steps` batches of it):

* plain: the loop of pytorch/examples' word_language_model: windows sliced from the (B, N/B)
  stream, the hidden state carried and detached; `steps` steps timed after `warmup` untimed ones.
* dl: the real `dl train` (in-process through the Typer app, CliRunner) with those settings for
  exactly warmup + steps steps. Its tokens/s come from metrics.jsonl: the `elapsed_s` difference of
  the train records at steps `warmup` and `warmup + steps` (log_every = gcd(warmup, steps)), i.e.
  the items_per_s of every log interval after the first; evaluation and setup are not counted.

Measurements alternate plain, dl, plain, dl ... `--repeats` times; each side reports its median.

(b) `--full MINUTES` trains configs/char_lstm_shakespeare.yaml (or `--recipe`) on `--text` (default
../shared/datasets/shakespeare/input.txt next to the repository) for about MINUTES: a short
calibration run measures tokens/s and the time of one evaluation, then the schedule's length
(schedule.total_steps = train.max_steps) is set to what fits. It reports the best validation loss,
when it was reached, and a 400-character sample (temperature 0.8, top-k 20, prompt "ROMEO:").
`--no-append` skips BENCHMARKS.md for both.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import read_yaml
from dlcli.runtime import pick_device, pick_precision
from dlcli.tasks import lm

from benchlib import REPO, append_section, load_note, machine, sets, timed_steps, train_recipe

SEED = 0
LR, WEIGHT_DECAY, CLIP = 2e-3, 0.01, 1.0
CHARS_PER_SENTENCE = 40  # the built-in corpus averages ~48 characters a line: enough sentences with this
SHAKESPEARE = REPO.parent / "shared" / "datasets" / "shakespeare" / "input.txt"
console = Console(highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="lstm", choices=["rnn", "lstm", "gru"])
    p.add_argument("--embedding", type=int, default=384)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.15)
    p.add_argument("--batch", type=int, default=32, help="streams")
    p.add_argument("--bptt", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them (>= 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument(
        "--full", type=float, metavar="MINUTES", help="(b): train the tiny-shakespeare recipe for about MINUTES"
    )
    p.add_argument("--text", type=Path, default=SHAKESPEARE, help="(b): tiny-shakespeare's input.txt")
    p.add_argument(
        "--recipe",
        type=Path,
        default=REPO / "configs" / "char_lstm_shakespeare.yaml",
        help="(b): the recipe (configs/transformer_lm_shakespeare.yaml for the transformer)",
    )
    p.add_argument(
        "--out", type=Path, default=REPO / "runs" / "bench-lm-shakespeare", help="(b): the run folder (replaced)"
    )
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    args = p.parse_args(argv)
    if min(args.warmup, args.steps, args.repeats, args.batch, args.bptt) < 1:
        p.error("--warmup, --steps, --repeats, --batch and --bptt must be >= 1")
    args.device = pick_device(args.device)
    args.precision = pick_precision(args.precision, args.device)
    return args


# --------------------------------------------------------------------------- (a) the plain loop


def data_config(args: argparse.Namespace) -> lm.LMData:
    """The built-in text, just long enough for warmup + steps windows (2% of it held out)."""
    tokens = (args.warmup + args.steps + 2) * args.batch * args.bptt
    sentences = math.ceil(tokens / CHARS_PER_SENTENCE / 0.98)
    return lm.LMData(
        dataset="builtin",
        level="char",
        batch_size=args.batch,
        bptt=args.bptt,
        eval_batch_size=args.batch,
        val_fraction=0.02,
        builtin_sentences=sentences,
    )


class PlainLM(nn.Module):
    def __init__(self, vocab: int, args: argparse.Namespace):
        super().__init__()
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[args.arch]
        self.emb = nn.Embedding(vocab, args.embedding)
        self.rnn = rnn(
            args.embedding, args.hidden, args.layers, batch_first=True, dropout=args.dropout if args.layers > 1 else 0.0
        )
        self.drop = nn.Dropout(args.dropout)
        self.out = nn.Linear(args.hidden, vocab)

    def forward(self, x, h):
        y, h = self.rnn(self.emb(x), h)
        return self.out(self.drop(y)), h


def plain_throughput(args: argparse.Namespace, vocab_size: int, train_ids: torch.Tensor) -> float:
    device, B, T = args.device, args.batch, args.bptt
    torch.manual_seed(SEED)
    n = train_ids.numel() // B
    data = train_ids[: n * B].view(B, n).to(device)  # (B, N/B): row b is stream b
    model = PlainLM(vocab_size, args).to(device).train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, **({"fused": True} if device.type == "cuda" else {})
    )
    autocast = torch.autocast(
        device.type,
        dtype=torch.bfloat16 if args.precision == "bf16" else torch.float16,
        enabled=args.precision != "fp32",
    )
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    h = None

    def step(i: int) -> None:
        nonlocal h
        x, y = data[:, i * T : (i + 1) * T], data[:, i * T + 1 : (i + 1) * T + 1]
        with autocast:
            logits, h = model(x, h)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        h = tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        scaler.step(opt)
        scaler.update()

    return args.steps * B * T / timed_steps(step, args.warmup, args.steps, device)


# --------------------------------------------------------------------------- (a) dl train


def dl_throughput(args: argparse.Namespace, data: lm.LMData) -> float:
    settings = {
        "seed": SEED,
        "model.arch": args.arch,
        "model.impl": "torch",
        "model.embedding_dim": args.embedding,
        "model.hidden_size": args.hidden,
        "model.num_layers": args.layers,
        "model.dropout": args.dropout,
        "model.tie_weights": "false",
        **{f"data.{k}": v for k, v in data.model_dump().items() if v is not None},
        "optim.name": "adamw",
        "optim.lr": LR,
        "optim.weight_decay": WEIGHT_DECAY,
        "schedule.name": "constant",
        "schedule.warmup_steps": 0,
        "train.epochs": 1,
        "train.max_steps": args.warmup + args.steps,
        "train.clip_grad_norm": CLIP,
        "train.log_every": math.gcd(args.warmup, args.steps),
        "train.device": str(args.device),
        "train.precision": args.precision,
        "train.channels_last": "false",
    }
    with tempfile.TemporaryDirectory(prefix="bench_lm_") as tmp:
        out = Path(tmp) / "run"
        argv = ["train", str(REPO / "configs" / "char_lstm.yaml"), "--out", str(out), "-q", "--json", *sets(settings)]
        result = CliRunner().invoke(app, argv)
        if result.exit_code != 0:
            raise RuntimeError(f"dl train failed (exit {result.exit_code}):\n{result.output}") from result.exception
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed_s"] for r in records if r["split"] == "train"}
    first, last = args.warmup, args.warmup + args.steps
    if first not in elapsed or last not in elapsed:
        raise RuntimeError(f"metrics.jsonl has no train record at step {first} or {last}: {sorted(elapsed)}")
    return args.steps * args.batch * args.bptt / (elapsed[last] - elapsed[first])


def throughput(args: argparse.Namespace, command: str) -> None:
    data = data_config(args)
    vocab, train_ids, _ = lm.prepare(data, SEED)
    if train_ids.numel() // args.batch < (args.warmup + args.steps) * args.bptt + 1:
        raise SystemExit(
            "internal: the built-in text is too short for the steps asked; raise CHARS_PER_SENTENCE's margin"
        )
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    plain, dl = [], []
    for r in range(args.repeats):
        plain.append(plain_throughput(args, len(vocab), train_ids))
        dl.append(dl_throughput(args, data))
        console.print(f"  {r + 1}/{args.repeats}: plain {plain[-1]:,.0f}, dl {dl[-1]:,.0f} tokens/s")
    load_end = load_note()
    shape = f"{args.arch} {args.layers}x{args.hidden} (embedding {args.embedding}, dropout {args.dropout}), vocab {len(vocab)}"
    header = ("model", "B x T", "plain tokens/s", "dl tokens/s", "dl/plain")
    row = (
        shape,
        f"{args.batch} x {args.bptt}",
        f"{statistics.median(plain):,.0f}",
        f"{statistics.median(dl):,.0f}",
        f"{statistics.median(dl) / statistics.median(plain):.3f}",
    )
    table = Table(*header, title=f"dl train vs plain loop: {args.device} {args.precision}")
    table.add_row(*row)
    console.print(table)
    console.print(load_end)
    if args.no_append:
        return
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n| " + " | ".join(row) + " |"
    each = f"plain {', '.join(f'{v:,.0f}' for v in plain)} / dl {', '.join(f'{v:,.0f}' for v in dl)}"
    append_section(
        "bench_lm",
        command,
        f"device {args.device}, precision {args.precision}, AdamW lr {LR} wd {WEIGHT_DECAY}, clip {CLIP}, {args.steps} timed steps "
        f"after {args.warmup} warmup, median of {args.repeats} alternating repeats.\n\n{md}\n\nEach repeat, tokens/s: {each}.\n\n"
        f"Load: {load_start} at start, {load_end} at the end.\n",
    )


# --------------------------------------------------------------------------- (b) tiny-shakespeare


def full(args: argparse.Namespace, command: str) -> None:
    text = args.text.resolve()
    args.recipe = args.recipe.resolve()
    if not text.is_file():
        raise SystemExit(f"--text {text}: no such file. Place tiny-shakespeare's input.txt there or pass --text PATH.")
    base = {"data.path": str(text), "train.device": str(args.device), "train.precision": args.precision}
    recipe = read_yaml(args.recipe)
    batch, bptt = recipe["data"]["batch_size"], recipe["data"]["bptt"]
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")

    # Calibration: tokens/s over steps 10-30 and the time of one evaluation.
    with tempfile.TemporaryDirectory(prefix="bench_lm_cal_") as tmp:
        records = train_recipe(args.recipe, Path(tmp) / "run", {**base, "train.max_steps": 30, "train.log_every": 10})
    train = {r["step"]: r for r in records if r["split"] == "train"}
    tokens_per_s = 20 * batch * bptt / (train[30]["elapsed_s"] - train[10]["elapsed_s"])
    eval_s = next(r for r in records if r["split"] == "val")["elapsed_s"] - train[30]["elapsed_s"]
    steps_per_epoch = _steps_per_epoch(text, batch, bptt, recipe["model"]["arch"])
    budget = args.full * 60
    steps = int(budget * tokens_per_s / (batch * bptt))
    for _ in range(3):  # leave room for one evaluation per epoch
        epochs = math.ceil(steps / steps_per_epoch)
        steps = max(1, int((budget - epochs * eval_s) * tokens_per_s / (batch * bptt)))
    epochs = math.ceil(steps / steps_per_epoch)
    console.print(
        f"calibration: {tokens_per_s:,.0f} tokens/s, evaluation {eval_s:.1f} s -> {steps} steps "
        f"({steps / steps_per_epoch:.2f} epochs of {steps_per_epoch} steps)"
    )

    settings = {**base, "train.epochs": epochs, "train.max_steps": steps, "schedule.total_steps": steps}
    started = time.perf_counter()
    records = train_recipe(args.recipe, args.out, settings, live=True)
    wall = time.perf_counter() - started
    vals = [r for r in records if r["split"] == "val"]
    best = min(vals, key=lambda r: r["loss"])
    trains = [r for r in records if r["split"] == "train"]
    run_tokens_per_s = statistics.median(r["items_per_s"] for r in trains[1:]) if len(trains) > 1 else float("nan")
    sample = lm.generate(
        args.out, prompt="ROMEO:", length=400, temperature=0.8, top_k=20, seed=SEED, device=args.device
    )
    load_end = load_note()
    body = (
        f"{args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe} on {text.name} ({args.device}, {args.precision}), sized to {args.full:g} minutes: "
        f"{steps} steps = {steps / steps_per_epoch:.2f} epochs (schedule.total_steps = train.max_steps = {steps}); "
        f"calibration {tokens_per_s:,.0f} tokens/s, median during the run {run_tokens_per_s:,.0f} tokens/s.\n\n"
        f"| best val loss | bpc | perplexity | at step | at minute | last val loss | wall min |\n|---|---|---|---|---|---|---|\n"
        f"| {best['loss']:.4f} | {best['bpc']:.3f} | {best['ppl']:.3f} | {best['step']} | {best['elapsed_s'] / 60:.1f} | "
        f"{vals[-1]['loss']:.4f} | {wall / 60:.1f} |\n\n"
        f'Sample (best checkpoint, prompt "ROMEO:", temperature 0.8, top-k 20, seed {SEED}):\n\n```\n{sample}\n```\n\n'
        f"Load: {load_start} at start, {load_end} at the end.\n"
    )
    console.print(body)
    if not args.no_append:
        append_section("bench_lm --full", command, body)


def _steps_per_epoch(text: Path, batch: int, bptt: int, arch: str) -> int:
    data = lm.LMData(dataset="text", path=str(text), batch_size=batch, bptt=bptt)
    _, train_ids, _ = lm.prepare(data, SEED)
    if arch == "transformer":
        return len(lm.WindowBatches(train_ids, batch, bptt, torch.device("cpu"), SEED))
    return (train_ids.numel() // batch - 1) // bptt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    if args.full is not None:
        full(args, command)
    else:
        throughput(args, command)


if __name__ == "__main__":
    main()
