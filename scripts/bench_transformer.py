"""Transformers: `dl train` tokens/s against a plain nn.Transformer loop, and the timed quality runs.

    .venv/bin/python scripts/bench_transformer.py                    # (a) throughput, Multi30k batches, CPU
    .venv/bin/python scripts/bench_transformer.py --full 60          # (b) configs/multi30k.yaml for ~60 minutes
    .venv/bin/python scripts/bench_transformer.py --numbers          # (c) configs/translation.yaml, timed

(a) Throughput. Both sides train the same shapes (configs/multi30k.yaml: 3+3 layers, d 256, ff
512, 8 heads, pre-norm, dropout 0.1, tied embeddings over the joint 8k BPE vocabulary) on the same
batches in the same order (the task's TokenBatches over Multi30k's training pairs, ~4k tokens),
with Adam, label smoothing 0.1 and clipping at 1.0:

* plain: torch.nn.Transformer (batch_first, norm_first) with an embedding shared with the output
  layer, written as the PyTorch tutorial / ../shared/baselines/mt_plain.py would; `steps` steps
  timed after `warmup` untimed ones.
* dl: the real `dl train configs/multi30k.yaml` (in-process, Typer's CliRunner) for warmup + steps
  steps; tokens/s from metrics.jsonl (elapsed_s between the train records at steps warmup and
  warmup + steps), so setup and evaluation are not counted.

Tokens are source + target tokens without padding (the baselines' count). Measurements
alternate plain, dl, ... `--repeats` times; each side reports its median.

(b) `--full MINUTES`: a calibration run measures tokens/s, then configs/multi30k.yaml trains for
as many epochs as fit MINUTES (evaluations included); then `dl eval --split test` (beam 5) and a
greedy pass score sacreBLEU (lowercased) on test_2016_flickr, printed with the signature.

(c) `--numbers`: configs/translation.yaml end to end, its wall time and held-out exact match.

`--no-append` skips BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
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

from dlcli.config import read_yaml
from dlcli.data import parallel
from dlcli.tasks import translate

from benchlib import REPO, append_section, load_note, machine, timed_steps, train_recipe

console = Console()
MULTI30K = REPO.parent / "shared" / "datasets" / "multi30k"
RECIPE = REPO / "configs" / "multi30k.yaml"
SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", type=Path, default=MULTI30K, help="the Multi30k folder (train/val/test_2016_flickr .de/.en.gz)"
    )
    p.add_argument("--steps", type=int, default=30, help="(a) timed optimizer steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="(a) untimed steps before them")
    p.add_argument("--repeats", type=int, default=3, help="(a) alternating repeats")
    p.add_argument("--full", type=float, metavar="MINUTES", help="(b) train configs/multi30k.yaml for about MINUTES")
    p.add_argument("--numbers", action="store_true", help="(c) train configs/translation.yaml")
    p.add_argument("--out", type=Path, default=None, help="(b)/(c) the run folder (replaced)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    args = p.parse_args(argv)
    args.device = torch.device(args.device)
    return args


# --------------------------------------------------------------------------- (a) throughput


def small_val_folder(data: Path, tmp: Path) -> Path:
    """Multi30k's training files and a 16-pair validation split (so the final evaluation of a
    short dl run is quick); no test split."""
    folder = tmp / "m30k"
    folder.mkdir()
    for lang in ("de", "en"):
        (folder / f"train.{lang}.gz").symlink_to(data / f"train.{lang}.gz")
        lines = parallel.read_lines(data / f"val.{lang}.gz")[:16]
        (folder / f"val.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


class PlainMT(nn.Module):
    def __init__(self, vocab: int, m: translate.TranslateModel):
        super().__init__()
        self.dim = m.dim
        self.emb = nn.Embedding(vocab, m.dim, padding_idx=translate.PAD)
        nn.init.normal_(self.emb.weight, 0, m.dim**-0.5)
        position = torch.arange(1024)[:, None]
        i = torch.arange(0, m.dim, 2)
        pe = torch.zeros(1024, m.dim)
        pe[:, 0::2], pe[:, 1::2] = (
            torch.sin(position / 10000 ** (i / m.dim)),
            torch.cos(position / 10000 ** (i / m.dim)),
        )
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(m.dropout)
        self.tf = nn.Transformer(
            m.dim,
            m.heads,
            m.encoder_layers,
            m.decoder_layers,
            m.ff_dim,
            m.dropout,
            batch_first=True,
            norm_first=m.norm_first,
        )

    def embed(self, x):
        return self.drop(self.emb(x) * math.sqrt(self.dim) + self.pe[: x.shape[1]])

    def forward(self, src, tgt):
        T = tgt.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)
        memory = self.tf.encoder(self.embed(src), src_key_padding_mask=src == translate.PAD)
        h = self.tf.decoder(
            self.embed(tgt),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tgt == translate.PAD,
            memory_key_padding_mask=src == translate.PAD,
        )
        return h @ self.emb.weight.T


def plain_throughput(args: argparse.Namespace, cfg: translate.Config, batches: list, vocab: int) -> float:
    torch.manual_seed(SEED)
    model = PlainMT(vocab, cfg.model).to(args.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)
    tokens = 0

    def step(i: int) -> None:
        nonlocal tokens
        batch = batches[i]
        logits = model(batch.src, batch.tgt[:, :-1])
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            batch.tgt[:, 1:].flatten(),
            ignore_index=translate.PAD,
            label_smoothing=cfg.train.label_smoothing,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
        opt.step()
        if i >= args.warmup:
            tokens += batch.tokens

    seconds = timed_steps(step, args.warmup, args.steps, args.device)
    return tokens / seconds


def dl_throughput(args: argparse.Namespace, folder: Path, batches: list) -> float:
    settings = {
        "data.dataset": "folder",
        "data.root": folder,
        "train.epochs": 1,
        "train.max_steps": args.warmup + args.steps,
        "train.log_every": math.gcd(args.warmup, args.steps),
        "train.device": str(args.device),
        "train.precision": "fp32",
    }
    with tempfile.TemporaryDirectory(prefix="bench_tf_") as tmp:
        records = train_recipe(RECIPE, Path(tmp) / "run", settings)
    elapsed = {r["step"]: r["elapsed_s"] for r in records if r["split"] == "train"}
    tokens = sum(b.tokens for b in batches[args.warmup : args.warmup + args.steps])
    return tokens / (elapsed[args.warmup + args.steps] - elapsed[args.warmup])


def throughput(args: argparse.Namespace, command: str) -> None:
    cfg = translate.Config.model_validate(read_yaml(RECIPE))
    with tempfile.TemporaryDirectory(prefix="bench_tf_data_") as tmp:
        folder = small_val_folder(args.data, Path(tmp))
        sources, targets = parallel.read_folder(folder, "train", "de", "en")
        tokenizer = translate.train_tokenizer(sources + targets, cfg.data.vocab_size)
        data = translate.TokenBatches(
            translate.encode(tokenizer, sources),
            translate.encode(tokenizer, targets),
            cfg.data.max_tokens,
            args.device,
            seed=SEED,
            split="train",
        )
        batches = list(data.batches(0))  # epoch 0's order: what dl's first steps train on
        load_start = load_note()
        console.print(f"{machine()}; {load_start}")
        plain, dl = [], []
        for r in range(args.repeats):
            plain.append(plain_throughput(args, cfg, batches, tokenizer.get_vocab_size()))
            dl.append(dl_throughput(args, folder, batches))
            console.print(f"  {r + 1}/{args.repeats}: plain {plain[-1]:,.0f}, dl {dl[-1]:,.0f} tokens/s")
    load_end = load_note()
    m = cfg.model
    header = ("model", "batch", "plain nn.Transformer tokens/s", "dl tokens/s", "dl/plain")
    row = (
        f"{m.encoder_layers}+{m.decoder_layers} layers, d {m.dim}, ff {m.ff_dim}, {m.heads} heads, pre-norm",
        f"{cfg.data.max_tokens} tokens",
        f"{statistics.median(plain):,.0f}",
        f"{statistics.median(dl):,.0f}",
        f"{statistics.median(dl) / statistics.median(plain):.3f}",
    )
    table = Table(*header, title=f"dl train vs plain nn.Transformer loop ({args.device}, fp32)")
    table.add_row(*row)
    console.print(table)
    if args.no_append:
        return
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n| " + " | ".join(row) + " |"
    each = ", ".join(f"{p:,.0f}/{d:,.0f}" for p, d in zip(plain, dl, strict=True))
    append_section(
        "bench_transformer",
        command,
        f"Multi30k training batches, {args.steps} timed steps after {args.warmup}, median of {args.repeats} "
        f"alternating repeats.\n\n{md}\n\nEach repeat, plain/dl tokens/s: {each}.\n\n"
        f"Load: {load_start} at start, {load_end} at the end.\n",
    )


# --------------------------------------------------------------------------- (b) Multi30k quality


def bleu_of(run: Path, beam: int, data: Path) -> tuple[float, str, float]:
    """sacreBLEU (lowercased) of the run's translations of test_2016_flickr, the signature, and seconds."""
    sources, references = parallel.multi30k(data, "test")
    started = time.perf_counter()
    hypotheses = [r["translation"] for r in translate.translate(run, sources, beam=beam, device="cpu")]
    seconds = time.perf_counter() - started
    scorer = translate.bleu_scorer()
    score = scorer.corpus_score(hypotheses, [references])
    return score.score, str(scorer.get_signature()), seconds


def full(args: argparse.Namespace, command: str) -> None:
    out = args.out or REPO / "runs" / "bench-multi30k"
    base = {"data.root": args.data.resolve(), "train.device": str(args.device)}
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    with tempfile.TemporaryDirectory(prefix="bench_tf_cal_") as tmp:
        folder = small_val_folder(args.data.resolve(), Path(tmp))
        records = train_recipe(
            RECIPE,
            Path(tmp) / "run",
            {**base, "data.dataset": "folder", "data.root": folder, "train.max_steps": 40, "train.log_every": 10},
        )
    train = {r["step"]: r for r in records if r["split"] == "train"}
    tokens_per_s = statistics.median(r["items_per_s"] for s, r in train.items() if s > 10)
    recipe = read_yaml(RECIPE)
    cfg = translate.Config.model_validate(recipe)
    splits = translate.load_splits(cfg.data.model_copy(update={"root": str(args.data.resolve())}), SEED)
    tokenizer = translate.train_tokenizer(splits["train"][0] + splits["train"][1], cfg.data.vocab_size)
    epoch_tokens = sum(len(ids) + 1 for ids in translate.encode(tokenizer, splits["train"][0]))
    epoch_tokens += sum(len(ids) + 2 for ids in translate.encode(tokenizer, splits["train"][1]))
    # Sized for 85% of the calibrated speed (other work on the cores slows a long run), with
    # train.max_minutes as the hard stop; the cosine schedule spans the planned epochs.
    epoch_s = epoch_tokens / (0.85 * tokens_per_s)
    val_s = 45.0  # a greedy pass over the 1014 validation sentences on 2 busy cores, measured
    epochs = max(1, int(args.full * 60 / (epoch_s + val_s / cfg.train.eval_every)))
    console.print(
        f"calibration: {tokens_per_s:,.0f} tokens/s, {epoch_tokens:,} tokens per epoch ({epoch_s / 60:.1f} min "
        f"at 85%) -> {epochs} epochs, stopped at {args.full:g} minutes at the latest"
    )
    started = time.perf_counter()
    records = train_recipe(RECIPE, out, {**base, "train.epochs": epochs, "train.max_minutes": args.full}, live=True)
    wall = time.perf_counter() - started
    trains = [r for r in records if r["split"] == "train"]
    vals = [r for r in records if r["split"] == "val"]
    test = next(r for r in records if r["split"] == "test")
    train_min = vals[-1]["elapsed_s"] / 60
    finished_epochs = max(r["epoch"] for r in trains)
    run_tokens_per_s = statistics.median(r["items_per_s"] for r in trains[1:])
    greedy_bleu, signature, greedy_s = bleu_of(out, 1, args.data.resolve())
    beam_bleu, _, beam_s = bleu_of(out, 5, args.data.resolve())
    load_end = load_note()
    example = translate.translate(out, ["Ein Mann fährt Fahrrad."], beam=5, device="cpu")[0]["translation"]
    body = (
        f"configs/multi30k.yaml on {args.data.name} ({args.device}), {epochs} epochs planned for {args.full:g} minutes "
        f"(train.max_minutes={args.full:g}), trained {trains[-1]['step']} steps into epoch {finished_epochs}; "
        f"calibration {tokens_per_s:,.0f} tokens/s, median during the run {run_tokens_per_s:,.0f} tokens/s.\n\n"
        "| test_2016_flickr sacreBLEU (lc), beam 5 | greedy | val BLEU (greedy, last) | training min | wall min (with evals, test) |\n"
        "|---|---|---|---|---|\n"
        f"| **{beam_bleu:.2f}** | {greedy_bleu:.2f} | {vals[-1].get('bleu', float('nan')):.2f} | {train_min:.1f} | {wall / 60:.1f} |\n\n"
        f"Signature: `{signature}`. Decoding the 1000 test sentences on the CPU: beam 5 {beam_s:.0f} s, greedy {greedy_s:.0f} s. "
        f"The run's own test record (best checkpoint by val BLEU, beam 5): BLEU {test.get('bleu', float('nan')):.2f}.\n\n"
        f'`dl translate "Ein Mann fährt Fahrrad." --beam 5` -> {example!r}\n\n'
        f"Load: {load_start} at start, {load_end} at the end.\n"
    )
    console.print(body)
    if not args.no_append:
        append_section("bench_transformer --full", command, body)


# --------------------------------------------------------------------------- (c) the number task


def numbers(args: argparse.Namespace, command: str) -> None:
    out = args.out or REPO / "runs" / "bench-numbers"
    load_start = load_note()
    started = time.perf_counter()
    records = train_recipe(REPO / "configs" / "translation.yaml", out, {"train.device": str(args.device)}, live=True)
    wall = time.perf_counter() - started
    vals = [r for r in records if r["split"] == "val"]
    test = next(r for r in records if r["split"] == "test")
    train_s = vals[-1]["elapsed_s"]
    example = translate.translate(
        out, ["three hundred twenty one", "nine hundred ninety nine thousand seventeen"], device="cpu"
    )
    body = (
        f"configs/translation.yaml ({args.device}): held-out numbers.\n\n"
        "| test exact match (beam 5) | test chrF | val exact (greedy, last) | training min (incl. val) | wall min |\n"
        "|---|---|---|---|---|\n"
        f"| **{test['exact']:.4f}** | {test['chrf']:.2f} | {vals[-1]['exact']:.4f} | {train_s / 60:.2f} | {wall / 60:.2f} |\n\n"
        + "".join(f"- `{e['source']}` -> `{e['translation']}`\n" for e in example)
        + f"\nLoad: {load_start} at start, {load_note()} at the end.\n"
    )
    console.print(body)
    if not args.no_append:
        append_section("bench_transformer --numbers", command, body)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    if args.full is not None:
        full(args, command)
    elif args.numbers:
        numbers(args, command)
    else:
        throughput(args, command)


if __name__ == "__main__":
    main()
