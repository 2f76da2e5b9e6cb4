"""Part-of-speech tagging on UD English-EWT: test UPOS accuracy and OOV accuracy, as a user runs it.

    .venv/bin/python scripts/bench_sequence.py                      # vectors (if absent), then the tagger
    .venv/bin/python scripts/bench_sequence.py --epochs 1 --no-append   # a quick look

1. Word vectors: `dl train word2vec_text8` on ../shared/datasets/corpus (17.8M words; skip-gram,
   100 dims, 5 epochs, ~1.5 minutes) into runs/word2vec-corpus, unless that run exists.
2. The tagger: `dl train configs/pos_lstm_ud.yaml` (best dev checkpoint), then its test metrics.
Wall times are measured around each command; both run in this process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from dlcli.cli import app

from benchlib import REPO, append_section, load_note

SHARED = REPO.parent / "shared" / "datasets"


def dl(*argv: str) -> None:
    result = CliRunner().invoke(app, list(argv))
    if result.exit_code != 0:
        raise SystemExit(f"dl {shlex.join(argv)} failed ({result.exit_code}):\n{result.output[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    p.add_argument("--vectors-run", type=Path, default=REPO / "runs" / "word2vec-corpus")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "pos-ud")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's train.epochs")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    load_start = load_note()
    w2v_s = None
    if not (args.vectors_run / "vectors.bin").is_file():
        start = time.perf_counter()
        dl(
            "train",
            "word2vec_text8",
            "--out",
            str(args.vectors_run),
            "--overwrite",
            "--quiet",
            "--set",
            "data.dataset=text",
            "--set",
            f"data.path={args.corpus}",
            "--set",
            "data.sample=1e-4",
        )
        w2v_s = time.perf_counter() - start
    sets = ["--set", f"model.pretrained_vectors={args.vectors_run / 'vectors.bin'}"]
    for split, name in (
        ("train", "en_ewt-ud-train.conllu.gz"),
        ("val", "en_ewt-ud-dev.conllu"),
        ("test", "en_ewt-ud-test.conllu"),
    ):
        sets += ["--set", f"data.{split}={SHARED / 'ud_english' / name}"]
    if args.epochs:
        sets += ["--set", f"train.epochs={args.epochs}"]
    start = time.perf_counter()
    dl("train", str(REPO / "configs" / "pos_lstm_ud.yaml"), "--out", str(args.out), "--overwrite", "--quiet", *sets)
    tag_s = time.perf_counter() - start
    summary = json.loads((args.out / "summary.json").read_text())
    records = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["items_per_s"] for r in records if r["split"] == "train"][1:]
    val, test = summary["metrics"]["val"], summary["metrics"]["test"]
    row = (
        f"| {summary['epochs']} | {tag_s / 60:.1f} | {sum(rates) / max(1, len(rates)):.0f} | {val['accuracy']:.4f} | "
        f"{test['accuracy']:.4f} | {test['oov_accuracy']:.4f} | {test['oov_share']:.3f} |"
    )
    table = (
        "| epochs | tagger minutes | tokens/s | dev accuracy (best) | test UPOS accuracy | test OOV accuracy | test OOV share |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n" + row
    )
    print(table)
    if not args.no_append:
        vectors = (
            f"word2vec vectors trained first in {w2v_s / 60:.1f} min"
            if w2v_s is not None
            else f"word2vec vectors from {args.vectors_run}"
        )
        append_section(
            "bench_sequence",
            command,
            f"UD English-EWT UPOS, configs/pos_lstm_ud.yaml; {vectors}.\n\n{table}\n\n"
            f"Load: {load_start} at start, {load_note()} at the end.\n",
        )


if __name__ == "__main__":
    main()
