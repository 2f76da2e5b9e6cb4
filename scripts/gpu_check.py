"""One GPU check for every trainer: a few hundred steps per precision, loss must fall.

    bash scripts/gpu_check.sh            # on a machine with a CUDA GPU; under 8 minutes
    bash scripts/gpu_check.sh --only subwords --set seed=1 --set train.pairs_per_update=8192

For each case it runs the real `dl train` path in this process, asserts that the training
loss fell, and prints throughput (median items/s over the log intervals after the first two,
which hold cuDNN autotuning and compilation) and peak GPU memory. The table is written to
$OUT/gpu_check.md when OUT is set, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.similarity import evaluate_word_pairs
from dlcli.vectors import SubwordVectors, vectors_for_run

from bench_word2vec import RW
from bench_word2vec import WORDSIM as WORDSIM_FILES

# (label, recipe, unit, --set overrides). Later trainers add their rows here.
CLASSIFY = [
    "data.image_size=64",
    "data.batch_size=256",
    "data.train_size=10240",
    "data.val_size=512",
    "data.test_size=512",
    "train.epochs=5",
    "train.log_every=20",
    "optim.lr=0.2",
]
CASES = [
    ("resnet18 fp32 NCHW", "resnet", "img/s", CLASSIFY + ["train.precision=fp32", "train.channels_last=false"]),
    ("resnet18 fp32 (TF32) channels_last", "resnet", "img/s", CLASSIFY + ["train.precision=fp32"]),
    ("resnet18 bf16 channels_last", "resnet", "img/s", CLASSIFY + ["train.precision=bf16"]),
    ("resnet18 fp16 channels_last", "resnet", "img/s", CLASSIFY + ["train.precision=fp16"]),
    (
        "resnet18 fp32 (TF32) compile reduce-overhead",
        "resnet",
        "img/s",
        CLASSIFY + ["train.precision=fp32", "train.compile=true", "train.compile_mode=reduce-overhead"],
    ),
    (
        "resnet18 bf16 compile reduce-overhead",
        "resnet",
        "img/s",
        CLASSIFY + ["train.precision=bf16", "train.compile=true", "train.compile_mode=reduce-overhead"],
    ),
]
# word2vec's batched GPU path: on the Wikipedia corpus when it was carried to data/corpus (with
# the analogy questions in data/analogy), else on the built-in corpus.
WIKI = Path("data/corpus")
QUESTIONS = Path("data/analogy/questions-words.txt")
if WIKI.is_dir():
    WORD2VEC = [
        "data.dataset=text",
        f"data.path={WIKI}",
        "data.token_pattern=[a-z]+",
        "data.sample=1e-4",
        "data.batch_words=1000000",
        "train.epochs=5",
        "train.log_every=5",
    ]
    if QUESTIONS.is_file():
        WORD2VEC += [f"data.questions={QUESTIONS}", "train.eval_every=5"]
    WORD2VEC_LABEL = "word2vec sg batched, wiki 17.8M words x 5"
else:
    WORD2VEC = ["data.dataset=planted", "data.batch_words=100000", "train.epochs=5", "train.log_every=1"]
    WORD2VEC_LABEL = "word2vec sg batched, built-in corpus x 5"
# word2vec first: its rows are new, the classify rows were measured before. The hierarchical
# softmax and the subword (fastText) model train on the same batched path.
CASES[:0] = [
    (WORD2VEC_LABEL, "word2vec_text8", "words/s", WORD2VEC + ["model.impl=batched"]),
    (
        WORD2VEC_LABEL + ", 16k pairs/update",
        "word2vec_text8",
        "words/s",
        WORD2VEC + ["model.impl=batched", "train.pairs_per_update=16384"],
    ),
    (
        WORD2VEC_LABEL.replace("sg", "sg hs"),
        "word2vec_text8",
        "words/s",
        WORD2VEC + ["model.impl=batched", "model.hs=1", "model.negative=0"],
    ),
    (
        WORD2VEC_LABEL.replace("word2vec sg", "fasttext sg subwords"),
        "word2vec_text8",
        "words/s",
        WORD2VEC + ["model.impl=batched", "model.subwords=true"],
    ),
]
# Word similarity for the word2vec rows when bench_word2vec's four pairs files were carried to
# data/wordsim: Spearman's rho (pairs with unknown words skipped; a subword model's RW also on all pairs).
WORDSIM = Path("data/wordsim")
# The recurrent tasks on their built-in data (cuDNN RNNs), in the three precisions.
TAGGER = ["data.train_sentences=6000", "train.epochs=3", "train.log_every=20"]
BRACKETS = ["train.epochs=3", "train.log_every=20"]
for precision in ("fp32", "bf16", "fp16"):
    CASES += [
        (f"pos_lstm tagger {precision}", "pos_lstm", "tok/s", TAGGER + [f"train.precision={precision}"]),
        (f"brackets_gru {precision}", "brackets_gru", "seq/s", BRACKETS + [f"train.precision={precision}"]),
        (
            f"char_lstm {precision}",
            "char_lstm",
            "tok/s",
            ["train.epochs=2", "train.log_every=20", f"train.precision={precision}"],
        ),
    ]
# The transformers: the decoder-only LM and the number-translation task, built-in data.
TRANSFORMER_LM = ["train.epochs=2", "train.log_every=20"]
NUMBERS = ["train.epochs=2", "train.log_every=20", "data.max_tokens=8192"]
for precision in ("fp32", "bf16", "fp16"):
    CASES += [
        (f"transformer_lm {precision}", "transformer_lm", "tok/s", TRANSFORMER_LM + [f"train.precision={precision}"]),
        (f"translation (numbers) {precision}", "translation", "tok/s", NUMBERS + [f"train.precision={precision}"]),
    ]
CASES += [
    (
        "transformer_lm bf16 compile",
        "transformer_lm",
        "tok/s",
        TRANSFORMER_LM + ["train.precision=bf16", "train.compile=true"],
    )
]
PROFILE_CASE = ("resnet", CLASSIFY + ["train.precision=bf16", "train.epochs=1", "train.max_steps=30"])


def profile(out_dir: Path) -> None:
    """Where a step's time goes: top operators by host (CPU) time and by GPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    recipe, overrides = PROFILE_CASE
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run_case(recipe, overrides, out_dir)
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    print(averages.table(sort_by="self_cuda_time_total", row_limit=10), flush=True)


def run_case(recipe: str, overrides: list[str], out_dir: Path) -> dict:
    args = ["train", recipe, "--out", str(out_dir), "--overwrite", "-q", "--json"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"dl {' '.join(args)} failed ({result.exit_code}):\n{result.output[-3000:]}")
    summary = json.loads(result.stdout)
    val = summary["metrics"].get("val", {})
    if recipe.startswith("word2vec") and WORDSIM.is_dir():
        val = {**val, **word_similarity(out_dir)}
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    rates = [r["items_per_s"] for r in train[2:]] or [r["items_per_s"] for r in train]
    return {
        "steps": summary["steps"],
        "first_loss": train[0]["loss"],
        "last_loss": train[-1]["loss"],
        "rate": statistics.median(rates),
        "peak_mb": summary.get("peak_memory_mb", 0.0),
        "val": val,
        "wall_s": summary["wall_s"],
    }


def word_similarity(run_dir: Path) -> dict[str, float]:
    """Spearman's rho of a finished word2vec run on the pairs files in WORDSIM, scored as bench_word2vec scores."""
    wv = vectors_for_run(run_dir)
    rho = {f"rho_{name.split('-')[1]}": evaluate_word_pairs(wv, WORDSIM / name)["spearman"] for name in WORDSIM_FILES}
    if isinstance(wv, SubwordVectors):
        rho["rho_RW_all"] = evaluate_word_pairs(wv, WORDSIM / RW, compose_unknown=True)["spearman"]
    return {name: value for name, value in rho.items() if value is not None}


def write_table(device: str, rows: list, quiet: bool = False) -> None:
    table = [
        f"Device: {device}; torch {torch.__version__}; `bash scripts/gpu_check.sh`",
        "",
        "| case | steps | throughput | peak memory (MB) | train loss first -> last | loss fell | val |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for label, r, unit, ok in rows:
        table.append(
            f"| {label} | {r['steps']} | {r['rate']:.0f} {unit} | {r['peak_mb']:.0f} | "
            f"{r['first_loss']:.3f} -> {r['last_loss']:.3f} | {'yes' if ok else 'NO'} | {fmt(r['val'])} |"
        )
    text = "\n".join(table) + "\n"
    if not quiet:
        print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.md").write_text(text)


def fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "." not in k)  # per-class metrics left out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help="run only cases whose label contains one of these comma-separated texts"
    )
    parser.add_argument("--profile", action="store_true", help="first profile 30 steps of resnet18 bf16")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override for every case run, after the case's own (e.g. train.pairs_per_update=8192)",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}", flush=True)
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            profile(Path(tmp) / "profile")
        for label, recipe, unit, overrides in CASES:
            if args.only and not any(part in label for part in args.only.split(",")):
                continue
            started = time.perf_counter()
            try:
                r = run_case(recipe, overrides + args.set, Path(tmp) / label.replace(" ", "_"))
            except Exception as e:  # report and go on: one broken case must not hide the others
                failures.append(f"{label}: {e}")
                print(f"FAIL {label}: {e}", flush=True)
                continue
            ok = r["last_loss"] < r["first_loss"]
            if not ok:
                failures.append(f"{label}: loss did not fall ({r['first_loss']:.3f} -> {r['last_loss']:.3f})")
            if args.set:
                label += f" ({', '.join(args.set)})"
            rows.append((label, r, unit, ok))
            write_table(device, rows, quiet=True)  # after every case: a timeout still leaves the rows so far
            print(
                f"{'ok  ' if ok else 'FAIL'} {label:40s} {r['rate']:10.0f} {unit}  peak {r['peak_mb']:8.0f} MB  "
                f"loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}  val {fmt(r['val'])}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    write_table(device, rows)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
