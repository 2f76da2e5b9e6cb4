"""Word2vec speed and quality: `dl train` against gensim, same corpus, same parameters, one run.

    .venv/bin/python scripts/bench_word2vec.py             # ../shared/datasets/corpus, 5 epochs
    .venv/bin/python scripts/bench_word2vec.py --epochs 1 --max-words 2000000 --no-append   # a quick look
    .venv/bin/python scripts/bench_word2vec.py --subwords  # fastText: model.subwords against gensim's FastText

Both train skip-gram with negative sampling (sg=1, vector_size=100, window=5, negative=5,
sample=1e-4, min_count=5, alpha 0.025 -> min_alpha 1e-4, `--workers` threads) on the same
tokens: the corpus lowercased and cut into `[a-z]+` words, one sentence per line. The corpus is
tokenized once (dl's cached encoding); gensim gets the same sentences as lists of words in memory.

* words/s as gensim counts: raw corpus words x epochs / training seconds (vocabulary building
  and tokenizing are not timed on either side). dl's training seconds are the `elapsed_s` of
  its last train record in metrics.jsonl (evaluation comes after it).
* accuracy: questions-words (../shared/datasets/analogy), 3CosAdd among the 30000 most frequent
  words, questions with other words skipped, as gensim's evaluate_word_analogies; one function
  (dlcli.vectors.evaluate_analogies, tested equal to gensim's) scores both.

dl runs first, then gensim; they never overlap (2 cores).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data.corpus import cached_encode
from dlcli.vectors import WordVectors, evaluate_analogies, vectors_for_run

from benchlib import REPO, append_section, load_note, machine

SHARED = REPO.parent / "shared" / "datasets"
PARAMS = dict(sg=1, vector_size=100, window=5, negative=5, sample=1e-4, min_count=5)
console = Console(highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=SHARED / "corpus", help="text file or folder (.txt/.gz)")
    p.add_argument("--questions", type=Path, default=SHARED / "analogy" / "questions-words.txt")
    p.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "dlcli-bench-cache", help="encoded corpus cache"
    )
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--restrict", type=int, default=30000)
    p.add_argument("--max-words", type=int, default=None, help="train on the first sentences up to this many words")
    p.add_argument("--skip-gensim", action="store_true")
    p.add_argument(
        "--subwords", action="store_true", help="fastText (min_n 3, max_n 6): dl's model.subwords vs gensim's FastText"
    )
    p.add_argument("--buckets", type=int, default=2_000_000, help="with --subwords: rows of the n-gram matrix (both)")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    return p.parse_args(argv)


def train_dl(args: argparse.Namespace, corpus_path: Path, out: Path) -> tuple[float, dict]:
    sets = {
        "data.dataset": "text",
        "data.path": str(corpus_path),
        "data.root": str(args.cache),
        "data.token_pattern": "[a-z]+",
        "data.min_count": PARAMS["min_count"],
        "data.sample": PARAMS["sample"],
        "model.sg": PARAMS["sg"],
        "model.vector_size": PARAMS["vector_size"],
        "model.window": PARAMS["window"],
        "model.negative": PARAMS["negative"],
        "train.epochs": args.epochs,
        "train.workers": args.workers,
        "train.log_every": 50,
        "train.eval_every": args.epochs,
    }
    if args.subwords:
        sets.update({"model.subwords": "true", "model.min_n": 3, "model.max_n": 6, "model.buckets": args.buckets})
    argv = ["train", "word2vec_text8", "--out", str(out), "--overwrite", "--quiet"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, argv)
    if result.exit_code != 0:
        raise SystemExit(f"dl train failed ({result.exit_code}):\n{result.output}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_s = [r for r in records if r["split"] == "train"][-1]["elapsed_s"]
    return train_s, json.loads((out / "summary.json").read_text())


def train_gensim(args: argparse.Namespace, sentences: list[list[str]]) -> tuple[float, WordVectors]:
    from gensim.models import FastText, Word2Vec

    common = dict(workers=args.workers, epochs=args.epochs, seed=0, alpha=0.025, min_alpha=1e-4, **PARAMS)
    if args.subwords:
        model = FastText(min_n=3, max_n=6, bucket=args.buckets, **common)
    else:
        model = Word2Vec(**common)
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=args.epochs)
    seconds = time.perf_counter() - start
    return seconds, WordVectors(list(model.wv.index_to_key), np.asarray(model.wv.vectors))


def corpus_for_both(args: argparse.Namespace, workdir: Path) -> tuple[Path, list[list[str]], int]:
    """The corpus file dl reads and the same sentences as word lists (cut to --max-words)."""
    start = time.perf_counter()
    corpus = cached_encode(args.corpus, args.cache, "[a-z]+")
    n_sentences = corpus.n_sentences
    if args.max_words:
        n_sentences = int(np.searchsorted(corpus.bounds, args.max_words, side="right")) - 1
    words = np.array(corpus.words, dtype=object)
    ids, bounds = np.asarray(corpus.ids[: corpus.bounds[n_sentences]]), corpus.bounds[: n_sentences + 1]
    sentences = [words[ids[bounds[s] : bounds[s + 1]]].tolist() for s in range(n_sentences)]
    path = args.corpus
    if args.max_words:  # dl reads a file holding exactly those sentences
        path = workdir / "corpus.txt"
        path.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    console.print(
        f"corpus: {int(bounds[-1]):,} words in {n_sentences:,} sentences, "
        f"{len(corpus.words):,} distinct ({time.perf_counter() - start:.0f} s to encode/load)"
    )
    return path, sentences, int(bounds[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path, sentences, n_words = corpus_for_both(args, Path(tmp))
        dl_s, summary = train_dl(args, corpus_path, Path(tmp) / "dl")
        dl_eval = evaluate_analogies(vectors_for_run(Path(tmp) / "dl"), args.questions, restrict=args.restrict)
        name = "dl subwords (hogwild, numba)" if args.subwords else "dl (hogwild, numba)"
        rows.append((name, dl_s, n_words * args.epochs / dl_s, dl_eval))
        console.print(f"dl: {dl_s:.1f} s, accuracy {dl_eval['accuracy']:.4f}")
        if not args.skip_gensim:
            import gensim

            g_s, g_vectors = train_gensim(args, sentences)
            g_eval = evaluate_analogies(g_vectors, args.questions, restrict=args.restrict)
            name = f"gensim {gensim.__version__}" + (" FastText" if args.subwords else "")
            rows.append((name, g_s, n_words * args.epochs / g_s, g_eval))
    load_end = load_note()
    table = render(rows)
    console.print(table)
    console.print(load_end)
    if not args.no_append:
        body = (
            f"{n_words:,} corpus words x {args.epochs} epochs, {args.workers} workers, "
            f"{', '.join(f'{k}={v}' for k, v in PARAMS.items())}"
            + (f", subwords min_n=3 max_n=6 buckets={args.buckets}" if args.subwords else "")
            + f"; questions-words restricted to {args.restrict}.\n\n"
            + markdown(rows)
            + f"\n\nLoad: {load_start} at start, {load_end} at the end.\n"
        )
        append_section("bench_word2vec", command, body)


def render(rows) -> Table:
    table = Table(title="word2vec: dl vs gensim")
    for name in ("trainer", "train s", "words/s", "vs gensim", "accuracy", "correct/total", "skipped"):
        table.add_column(name)
    for cells in _cells(rows):
        table.add_row(*cells)
    return table


def markdown(rows) -> str:
    lines = [
        "| trainer | train s | words/s | vs gensim | accuracy | correct/total | skipped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows)]
    return "\n".join(lines)


def _cells(rows):
    reference = rows[-1][2] if len(rows) > 1 else None
    for name, seconds, rate, ev in rows:
        ratio = f"{rate / reference:.2f}x" if reference else "-"
        yield (
            name,
            f"{seconds:.1f}",
            f"{rate:,.0f}",
            ratio,
            f"{100 * ev['accuracy']:.1f}%",
            f"{ev['correct']}/{ev['total']}",
            str(ev["skipped"]),
        )


if __name__ == "__main__":
    main()
