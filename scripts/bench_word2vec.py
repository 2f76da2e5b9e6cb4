"""Word vectors, dl against gensim: same corpus, same parameters, the two never running at once.

    .venv/bin/python scripts/bench_word2vec.py                      # skip-gram NS, ../shared/datasets/corpus, 5 epochs
    .venv/bin/python scripts/bench_word2vec.py --models ns,hs,subwords --seeds 0,1,2   # issue 19's table (~2.5 h)
    .venv/bin/python scripts/bench_word2vec.py --epochs 1 --max-words 2000000 --no-append   # a quick look
    NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell .venv/bin/python scripts/bench_word2vec.py
        # both as on an AVX2-only CPU: dl's loop compiled for it, gensim's BLAS (its dot and axpy) on its kernels

Models (`--models`), each skip-gram (sg=1, vector_size=100, window=5, sample=1e-4, min_count=5,
alpha 0.025 -> min_alpha 1e-4, `--workers` threads):
  ns        negative sampling, negative=5: dl's word2vec against gensim's Word2Vec
  hs        hierarchical softmax (hs=1, negative=0): the same two
  subwords  fastText (min_n 3, max_n 6, `--buckets`, negative=5): dl's model.subwords against gensim's FastText
Each model trains once per seed (`--seeds`; dl's `seed`, gensim's `seed`), dl first, then gensim, on
the same tokens: the corpus lowercased and cut into `[a-z]+` words, one sentence per line (dl's cached
encoding; gensim gets the same sentences as lists of words in memory).

* words/s as gensim counts: raw corpus words x epochs / training seconds (vocabulary building and
  tokenizing are not timed on either side). dl's training seconds are the `elapsed_s` of its last
  train record in metrics.jsonl (evaluation comes after it); numba compiles dl's loop in an untimed
  warm-up run first (`warm_up`), as gensim's comes compiled.
* analogies: questions-words (../shared/datasets/analogy), 3CosAdd among the 30000 most frequent
  words, questions with other words skipped, as gensim's evaluate_word_analogies; one function
  (dlcli.vectors.evaluate_analogies, tested equal to gensim's) scores both.
* word similarity: Spearman's rho on the four files of ../shared/datasets/wordsim, pairs with a word
  outside the vocabulary skipped, as gensim's evaluate_word_pairs (dlcli.similarity, tested equal);
  for the subword models also RW over all its pairs, unknown words composed from their n-grams
  (`dl similarity --compose-unknown`; gensim FastText's wv[word], the same hashes and mean).

The tables: every run, then per model and trainer the mean over the seeds (min..max for accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data.corpus import cached_encode
from dlcli.similarity import evaluate_word_pairs
from dlcli.vectors import SubwordVectors, WordVectors, evaluate_analogies, vectors_for_run

from benchlib import REPO, append_section, load_note, machine

SHARED = REPO.parent / "shared" / "datasets"
PARAMS = dict(sg=1, vector_size=100, window=5, sample=1e-4, min_count=5)
# The objective of each model: (negative, hs, subwords)
MODELS = {"ns": (5, 0, False), "hs": (0, 1, False), "subwords": (5, 0, True)}
MIN_N, MAX_N = 3, 6
WORDSIM = ("EN-RG-65.txt", "EN-MTurk-771.txt", "EN-SimVerb-3500.txt", "EN-RW-STANFORD.txt")
RW = "EN-RW-STANFORD.txt"
console = Console(highlight=False)


@dataclass
class Result:
    model: str
    trainer: str
    seed: int
    seconds: float
    words_per_s: float
    analogy: dict
    rho: dict[str, float | None] = field(default_factory=dict)  # wordsim file -> Spearman (unknown pairs skipped)
    rw_all: dict | None = None  # subword models: RW with unknown words composed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=SHARED / "corpus", help="text file or folder (.txt/.gz)")
    p.add_argument("--questions", type=Path, default=SHARED / "analogy" / "questions-words.txt")
    p.add_argument("--wordsim", type=Path, default=SHARED / "wordsim", help="folder of the four pairs files")
    p.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "dlcli-bench-cache", help="encoded corpus cache"
    )
    p.add_argument("--models", default="ns", help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; each model trains once per seed on each side")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--restrict", type=int, default=30000)
    p.add_argument("--max-words", type=int, default=None, help="train on the first sentences up to this many words")
    p.add_argument("--skip-gensim", action="store_true")
    p.add_argument("--buckets", type=int, default=2_000_000, help="subwords: rows of the n-gram matrix (both)")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in MODELS]:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds takes integers separated by commas, got {args.seeds!r}")
    return args


def train_dl(args: argparse.Namespace, model: str, seed: int, corpus_path: Path, out: Path) -> tuple[float, Path]:
    negative, hs, subwords = MODELS[model]
    sets = {
        "seed": seed,
        "data.dataset": "text",
        "data.path": str(corpus_path),
        "data.root": str(args.cache),
        "data.token_pattern": "[a-z]+",
        "data.min_count": PARAMS["min_count"],
        "data.sample": PARAMS["sample"],
        "model.sg": PARAMS["sg"],
        "model.vector_size": PARAMS["vector_size"],
        "model.window": PARAMS["window"],
        "model.negative": negative,
        "model.hs": hs,
        "train.epochs": args.epochs,
        "train.workers": args.workers,
        "train.log_every": 50,
        "train.eval_every": args.epochs,
    }
    if subwords:
        sets |= {"model.subwords": "true", "model.min_n": MIN_N, "model.max_n": MAX_N, "model.buckets": args.buckets}
    argv = ["train", "word2vec_text8", "--out", str(out), "--overwrite", "--quiet"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, argv)
    if result.exit_code != 0:
        raise SystemExit(f"dl train failed ({result.exit_code}):\n{result.output}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["split"] == "train"][-1]["elapsed_s"], out


def warm_up(args: argparse.Namespace, sentences: list[list[str]], workdir: Path) -> None:
    """One untimed dl run on the first sentences: numba compiles dl's loop here (or loads it from its cache),
    not inside the first timed run; gensim's loop was compiled when it was installed."""
    few, words = [], 0
    for sentence in sentences:
        few.append(sentence)
        words += len(sentence)
        if words >= 20_000:
            break
    path = workdir / "warm_up.txt"
    write_sentences(path, few)
    start = time.perf_counter()
    train_dl(argparse.Namespace(**{**vars(args), "epochs": 1, "cache": workdir}), "ns", 0, path, workdir / "warm_up")
    console.print(f"dl's loop compiled or loaded in an untimed run ({time.perf_counter() - start:.0f} s)")


def train_gensim(
    args: argparse.Namespace, model: str, seed: int, sentences: list[list[str]], dl_words: list[str]
) -> tuple[float, WordVectors]:
    """gensim's training on the same sentences; its vectors come back in dl's vocabulary order (dl_words)."""
    from gensim.models import FastText, Word2Vec

    negative, hs, subwords = MODELS[model]
    common = dict(
        workers=args.workers, epochs=args.epochs, seed=seed, alpha=0.025, min_alpha=1e-4, negative=negative, hs=hs
    )
    if subwords:
        trainer = FastText(min_n=MIN_N, max_n=MAX_N, bucket=args.buckets, **common, **PARAMS)
    else:
        trainer = Word2Vec(**common, **PARAMS)
    trainer.build_vocab(sentences)
    start = time.perf_counter()
    trainer.train(sentences, total_examples=trainer.corpus_count, epochs=args.epochs)
    seconds = time.perf_counter() - start
    order = rows_in_order(trainer.wv.index_to_key, dl_words)
    words, vectors = dl_words, np.asarray(trainer.wv.vectors)[order]
    if subwords:  # gensim's n-gram rows under fastText's hash, which dl's SubwordVectors composes alike (tested)
        return seconds, SubwordVectors(words, vectors, np.asarray(trainer.wv.vectors_ngrams), MIN_N, MAX_N)
    return seconds, WordVectors(words, vectors)


def rows_in_order(words: list[str], order: list[str]) -> np.ndarray:
    """The rows of `words` (gensim's vocabulary) that list `order` (dl's run's vocabulary, the same words).

    Both sort by descending count, but gensim puts equal counts last-seen first (sort_by_descending_frequency's
    lexsort on -index) and dl first-seen first; the words near rank 30000 (the analogies' restrict) share
    their counts by the hundred, so scored in its own order gensim answered other questions (7833 skipped
    against dl's 7750 on the corpus).
    """
    index = {word: i for i, word in enumerate(words)}
    if len(words) != len(order) or any(word not in index for word in order):
        raise SystemExit(f"gensim kept {len(words):,} words and dl {len(order):,}, not the same ones: not comparable")
    return np.array([index[word] for word in order], dtype=np.int64)


def score(args: argparse.Namespace, result: Result, wv: WordVectors) -> Result:
    """Analogies and the four word-similarity files, the same functions for both trainers."""
    result.analogy = evaluate_analogies(wv, args.questions, restrict=args.restrict)
    for name in WORDSIM:
        result.rho[name] = evaluate_word_pairs(wv, args.wordsim / name)["spearman"]
    if isinstance(wv, SubwordVectors):
        result.rw_all = evaluate_word_pairs(wv, args.wordsim / RW, compose_unknown=True)
    return result


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
        write_sentences(path, sentences)
    console.print(
        f"corpus: {int(bounds[-1]):,} words in {n_sentences:,} sentences, "
        f"{len(corpus.words):,} distinct ({time.perf_counter() - start:.0f} s to encode/load)"
    )
    return path, sentences, int(bounds[-1])


def write_sentences(path: Path, sentences: list[list[str]]) -> None:
    """A corpus file dl reads back as exactly these sentences: one a line, words split by spaces."""
    path.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    for variable in ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE"):  # what the code was compiled or dispatched for
        if value := os.environ.get(variable):
            command = f"{variable}={value} {command}"
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path, sentences, n_words = corpus_for_both(args, Path(tmp))
        warm_up(args, sentences, Path(tmp))
        for model in args.models:
            for seed in args.seeds:
                seconds, out = train_dl(args, model, seed, corpus_path, Path(tmp) / "dl")
                row = Result(model, "dl (hogwild, numba)", seed, seconds, n_words * args.epochs / seconds, {})
                dl_vectors = vectors_for_run(out)
                results.append(score(args, row, dl_vectors))
                dl_words = dl_vectors.words  # gensim's vectors are scored in this order
                del dl_vectors
                console.print(_line(results[-1]))
                if args.skip_gensim:
                    continue
                import gensim

                seconds, wv = train_gensim(args, model, seed, sentences, dl_words)
                name = f"gensim {gensim.__version__}" + (" FastText" if MODELS[model][2] else "")
                row = Result(model, name, seed, seconds, n_words * args.epochs / seconds, {})
                results.append(score(args, row, wv))
                console.print(_line(results[-1]))
                del wv
    load_end = load_note()
    tables = f"{summary_table(results)}\n\nEvery run:\n\n{runs_table(results)}"
    console.print(tables)
    console.print(load_end)
    if not args.no_append:
        body = (
            f"{n_words:,} corpus words x {args.epochs} epochs, {args.workers} workers, "
            f"{', '.join(f'{k}={v}' for k, v in PARAMS.items())}; ns: negative=5, hs: hs=1 negative=0, "
            f"subwords: negative=5 min_n={MIN_N} max_n={MAX_N} buckets={args.buckets}; seeds {args.seeds}; "
            f"questions-words restricted to {args.restrict}; wordsim rho with unknown pairs skipped, "
            "RW all: unknown words composed from n-grams.\n\n"
            + tables
            + f"\n\nLoad: {load_start} at start, {load_end} at the end.\n"
        )
        append_section("bench_word2vec", command, body)


def _line(r: Result) -> str:
    rho = ", ".join(f"{name.split('-')[1]} {_rho(v)}" for name, v in r.rho.items())
    rw_all = f", RW all {_rho(r.rw_all['spearman'])} ({r.rw_all['pairs']} pairs)" if r.rw_all else ""
    return (
        f"{r.model} {r.trainer} seed {r.seed}: {r.seconds:.1f} s, {r.words_per_s:,.0f} words/s, "
        f"analogies {100 * r.analogy['accuracy']:.2f}%, rho {rho}{rw_all}"
    )


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summary_table(results: list[Result]) -> str:
    """Per model and trainer, the mean over its seeds; speed also as a ratio to gensim's on the same model."""
    head = ["model", "trainer", "seeds", "words/s", "vs gensim", "analogies (min..max)"]
    head += [name.split("-")[1] for name in WORDSIM] + ["RW all (pairs)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.model, r.trainer), []).append(r)
    gensim_speed = {m: _mean([r.words_per_s for r in g]) for (m, t), g in groups.items() if t.startswith("gensim")}
    for (model, trainer), runs in groups.items():
        speed = _mean([r.words_per_s for r in runs])
        ratio = f"{speed / gensim_speed[model]:.2f}x" if model in gensim_speed else "-"
        accuracy = [100 * r.analogy["accuracy"] for r in runs]
        cells = [model, trainer, str(len(runs)), f"{speed:,.0f}", ratio]
        cells.append(f"{statistics.fmean(accuracy):.2f}% ({min(accuracy):.2f}..{max(accuracy):.2f})")
        cells += [_rho(_mean([r.rho[name] for r in runs])) for name in WORDSIM]
        rw_all = [r.rw_all for r in runs if r.rw_all]
        cells.append(f"{_rho(_mean([a['spearman'] for a in rw_all]))} ({rw_all[0]['pairs']})" if rw_all else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(results: list[Result]) -> str:
    head = ["model", "trainer", "seed", "train s", "words/s", "analogies", "correct/total", "skipped"]
    head += [name.split("-")[1] for name in WORDSIM] + ["RW all"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in results:
        cells = [r.model, r.trainer, str(r.seed), f"{r.seconds:.1f}", f"{r.words_per_s:,.0f}"]
        cells += [f"{100 * r.analogy['accuracy']:.2f}%", f"{r.analogy['correct']}/{r.analogy['total']}"]
        cells += [str(r.analogy["skipped"])] + [_rho(r.rho[name]) for name in WORDSIM]
        cells.append(_rho(r.rw_all["spearman"]) if r.rw_all else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
