"""word2vec's commands: `dl skipgrams` (the (target, context) pairs it trains on) and the queries
of word vectors, from a word2vec run (by default the newest finished one under runs/) or a
word2vec-format file: `dl analogy`, `dl similar`, `dl similarity`. The work is in dlcli/data/text.py,
dlcli/vectors.py and dlcli/similarity.py, imported in the bodies (torch-free here).

cli.py registers these functions on the `dl` app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from dlcli.cli_common import JsonOption, guarded, run_or_newest
from dlcli.console import log, out, print_json
from dlcli.errors import DlError

# the two sources of word vectors that analogy and similar take (one at most; with neither, the newest finished
# word2vec run under runs/)
RunVectorsOption = Annotated[
    Path | None,
    typer.Option(
        "--run",
        help="a word2vec run folder (its vectors.bin or vectors.txt); default: the newest finished one under runs/",
    ),
]
VectorsFileOption = Annotated[
    Path | None, typer.Option("--vectors", help="a word2vec-format file, text or binary, maybe .gz")
]
VECTOR_SOURCES = "--run RUN or --vectors FILE"  # what the error with neither and no finished run offers


@guarded
def skipgrams(
    text: Annotated[str, typer.Argument(help="text; each line is a sentence")],
    window: Annotated[int, typer.Option("--window", min=1, help="context words on each side of the target")] = 2,
    json_: JsonOption = False,
) -> None:
    """The (target, context) pairs word2vec trains on, in text order (lowercased, punctuation stripped)."""
    from dlcli.data.text import sentences, skipgram_pairs

    pairs = [pair for tokens in sentences(text.splitlines()) for pair in skipgram_pairs(tokens, window)]
    if json_:
        print_json([list(pair) for pair in pairs])
        return
    for target, context in pairs:
        out.print(f"{target}\t{context}", markup=False)


@guarded
def analogy(
    words: Annotated[
        list[str] | None, typer.Argument(metavar="A B C", help="the words nearest to A - B + C (king man woman)")
    ] = None,
    run: RunVectorsOption = None,
    vectors: VectorsFileOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="answers to show")] = 5,
    method: Annotated[
        Literal["add", "mul"], typer.Option("--method", help="add: 3CosAdd; mul: 3CosMul (Levy & Goldberg)")
    ] = "add",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="draw A, B, C and the answer in 2-D PCA to this PNG")
    ] = None,
    eval_: Annotated[
        Path | None, typer.Option("--eval", help="accuracy on a questions-words file instead (no A B C)")
    ] = None,
    restrict: Annotated[
        int, typer.Option("--restrict", min=1, help="with --eval: search and ask only the N most frequent words")
    ] = 30_000,
    json_: JsonOption = False,
) -> None:
    """Word analogies: `dl analogy king man woman` -> queen; `--eval questions-words.txt` scores a file."""
    words = words or []
    if eval_ is not None and (words or plot is not None):
        raise DlError("--eval scores a questions file: give no words A B C and no --plot with it.")
    if eval_ is None and len(words) != 3:
        raise DlError(f"dl analogy takes three words A B C (A - B + C, e.g. king man woman), got {len(words)}.")
    run = run_or_newest(run, "word2vec", VECTOR_SOURCES) if vectors is None else run
    from dlcli import vectors as wv_

    wv = wv_.load_vectors(run, vectors)
    if eval_ is not None:
        _render_analogy_eval(wv_.evaluate_analogies(wv, eval_, restrict, method), json_)
        return
    a, b, c = words
    results = wv_.analogy(wv, a, b, c, top, method)
    if plot is not None and results:
        wv_.plot_analogy(wv, [(b, a), (c, results[0][0])], plot)
        log.print(f"plot -> {escape(str(plot))}")
    _render_neighbours(results, f"{a} - {b} + {c}", json_)


@guarded
def similar(
    word: Annotated[
        str, typer.Argument(help="a word of the vocabulary (of a subword run: any word with a character n-gram)")
    ],
    run: RunVectorsOption = None,
    vectors: VectorsFileOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="neighbours to show")] = 10,
    json_: JsonOption = False,
) -> None:
    """The nearest words by cosine similarity of their vectors."""
    run = run_or_newest(run, "word2vec", VECTOR_SOURCES) if vectors is None else run
    from dlcli import vectors as wv_

    wv = wv_.load_vectors(run, vectors)
    _render_neighbours(wv_.similar(wv, word, top), word, json_)


@guarded
def similarity(
    words: Annotated[
        list[str] | None, typer.Argument(metavar="A B", help="two words: print the cosine of their vectors")
    ] = None,
    run: RunVectorsOption = None,
    vectors: VectorsFileOption = None,
    eval_: Annotated[
        Path | None,
        typer.Option("--eval", help="Spearman's rho on a pairs file ('word1 word2 score' lines) instead (no A B)"),
    ] = None,
    restrict: Annotated[
        int, typer.Option("--restrict", min=1, help="with --eval: only the N most frequent words count as known")
    ] = 300_000,
    compose_unknown: Annotated[
        bool,
        typer.Option(
            "--compose-unknown",
            help="with --eval on a subword run: words outside the vocabulary get vectors from their n-grams",
        ),
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Word similarity: `dl similarity cat dog` -> their cosine; `--eval PAIRS` -> Spearman's rho against human scores."""
    words = words or []
    if eval_ is not None and words:
        raise DlError("--eval scores a pairs file: give no words A B with it.")
    if eval_ is None and len(words) != 2:
        raise DlError(f"dl similarity takes two words A B (e.g. cat dog), or --eval PAIRS; got {len(words)} words.")
    if compose_unknown and eval_ is None:
        raise DlError("--compose-unknown goes with --eval PAIRS (a single pair's words are composed anyway).")
    run = run_or_newest(run, "word2vec", VECTOR_SOURCES) if vectors is None else run
    from dlcli import similarity as sim
    from dlcli import vectors as wv_

    wv = wv_.load_vectors(run, vectors)
    if eval_ is not None:
        _render_pairs_eval(sim.evaluate_word_pairs(wv, eval_, restrict, compose_unknown), eval_, json_)
        return
    a, b = words
    score = sim.cosine(wv, a, b)
    if json_:
        print_json({"word1": a, "word2": b, "cosine": score})
        return
    out.print(f"{score:.4f}", markup=False)


def _render_pairs_eval(result: dict, path: Path, json_: bool) -> None:
    if json_:
        print_json(result)
        return
    rho = "undefined (constant scores)" if result["spearman"] is None else f"{result['spearman']:.4f}"
    out.print(f"{path}: Spearman's rho {rho} over {result['pairs']} pairs", markup=False, highlight=False)
    out.print(f"{result['skipped']} pairs skipped (a word outside the vocabulary searched)", highlight=False)


def _render_neighbours(results: list[tuple[str, float]], title: str, json_: bool) -> None:
    if json_:
        print_json([{"word": word, "score": score} for word, score in results])
        return
    table = Table("word", "cosine", title=escape(title))
    for word, score in results:
        table.add_row(escape(word), f"{score:.4f}")
    out.print(table)


def _render_analogy_eval(result: dict, json_: bool) -> None:
    if json_:
        print_json(result)
        return
    table = Table("section", "correct", "answered", "accuracy")
    for name, s in result["sections"].items():
        table.add_row(escape(name), str(s["correct"]), str(s["total"]), f"{s['accuracy']:.2%}")
    table.add_section()
    table.add_row("total", str(result["correct"]), str(result["total"]), f"{result['accuracy']:.2%}")
    out.print(table)
    out.print(f"{result['skipped']} questions skipped (a word outside the vocabulary searched)")
