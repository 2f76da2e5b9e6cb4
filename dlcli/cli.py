"""The `dl` command: each command parses, calls one function, renders the answer.

Exit codes: 0 done, 1 failed while running, 2 bad usage / config / input file
(a short message, no traceback unless --debug), 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from dlcli import __version__
from dlcli.config import list_recipes, read_yaml, render_yaml, resolve_recipe
from dlcli.console import Logger, fmt_metrics, full_width, log, out, per_class_table, print_json, print_table
from dlcli.errors import DlError, Interrupted, RunFailed

app = typer.Typer(
    help="Train and run the landmark models of deep learning from YAML recipes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
config_app = typer.Typer(help="Inspect recipes.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_debug = os.environ.get("DL_DEBUG", "") not in ("", "0")

SetOption = Annotated[list[str], typer.Option("--set", help="override a recipe key: --set optim.lr=0.05 (repeatable)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (overrides train.device)")
]


def _fail(message: str, code: int) -> None:
    log.print(f"[red bold]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def guarded(fn):
    """Turn the errors a user can act on into exit codes and one-paragraph messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except DlError as e:
            if _debug:
                raise
            _fail(str(e), 2)
        except Interrupted:
            log.print("interrupted: the checkpoint is saved; continue with --resume")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            log.print("interrupted")
            raise typer.Exit(130) from None
        except RunFailed as e:  # a non-finite loss, a failed checkpoint write, out of memory
            if _debug:
                raise
            _fail(str(e), 1)
        except Exception as e:
            if _debug:
                raise
            _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        out.print(f"dl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    global _debug
    _debug = _debug or debug


# --------------------------------------------------------------------------- train


@app.command()
@guarded
def train(
    config: Annotated[str, typer.Argument(help="recipe file, or a bundled recipe's name (resnet)")],
    set_: SetOption = [],
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default runs/<name>)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run folder's checkpoints/last.pt")] = False,
    resume_from: Annotated[Path | None, typer.Option("--resume-from", help="continue from this checkpoint")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")] = False,
    device: DeviceOption = None,
    nproc: Annotated[
        int | None, typer.Option("--nproc", help="processes on this machine: re-launches under torchrun")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars or logs")] = False,
    json_: JsonOption = False,
) -> None:
    """Train what a recipe says; the run folder gets config, metrics, checkpoints and a summary."""
    from dlcli import api

    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch_torchrun(nproc))
    summary = api.train(
        config, set_, out_dir, resume=resume, resume_from=resume_from, overwrite=overwrite, device=device, quiet=quiet
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, only the main process answers
        return
    if json_:
        print_json(summary)
        return
    for split, metrics in summary["metrics"].items():
        out.print(f"{split}: {fmt_metrics(metrics)}")
    out.print(f"{summary['steps']} steps in {summary['wall_s']:.1f} s on {summary['device']} -> {summary['run']}")


def _launch_torchrun(nproc: int) -> int:
    """Run this same command under torchrun with `nproc` processes (--nproc removed)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "dlcli",
        *args,
    ]
    return subprocess.call(command)


# --------------------------------------------------------------------------- eval / predict


@app.command("eval")
@guarded
def eval_(
    run: Annotated[Path, typer.Argument(help="a run folder")],
    split: Annotated[str | None, typer.Option("--split", help="test (default when present), val")] = None,
    confusion: Annotated[
        Path | None,
        typer.Option("--confusion", help="classify runs: draw the split's confusion matrix into this image"),
    ] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Evaluate a run's best checkpoint."""
    from dlcli import loading, runner
    from dlcli.runtime import create_runtime

    opened = loading.open_run(run)  # the checkpoint is read here, once
    if confusion is not None and opened.task.NAME != "classify":
        raise DlError(
            f"--confusion draws an image classifier's confusion matrix, but {run} is a run of task '{opened.task.NAME}'."
        )
    runtime = create_runtime(opened.config.train, device)
    used_split, job, model = loading.restore_for_eval(opened, split, runtime)
    metrics = runner.evaluate(model, job.eval_data[used_split], job, runtime)
    drawn = _draw_confusion(run, used_split, job, model, runtime, confusion) if confusion is not None else None
    notes = opened.task.eval_notes(opened.config)  # e.g. sacreBLEU's signature
    if json_:
        report = {"run": str(run), "split": used_split, "metrics": metrics, **notes}
        if drawn:
            report["confusion"] = drawn
        print_json(report)
        return
    out.print(f"{run} [{used_split}]: {fmt_metrics(metrics)}", markup=False)
    for key, value in notes.items():
        out.print(f"{key}: {value}", markup=False, highlight=False)
    table = per_class_table(metrics)
    if table is not None:
        out.print(table)
    if drawn:
        log.print(f"confusion matrix -> {escape(drawn['image'])}")


def _draw_confusion(run: Path, split: str, job, model, runtime, image: Path) -> dict:
    """dl eval --confusion: the model's top-1 predictions over the split, counted per (true, predicted)
    class and drawn. A second pass over the split, after the metrics' one."""
    from dlcli import plots
    from dlcli.tasks import classify

    counts = classify.confusion_matrix(model, job.eval_data[split], runtime)
    classes = job.extra["classes"]
    title = f"{run.name} [{split}]: {int(counts.sum())} images"
    plots.save_figure(plots.confusion_figure(counts, classes, title), image)
    return {"image": str(image), "classes": classes, "counts": counts.tolist()}


# --------------------------------------------------------------------------- run folders


@app.command("runs")
@guarded
def runs_cmd(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="where to look for run folders (searched recursively)")
    ] = Path("runs"),
    json_: JsonOption = False,
) -> None:
    """The runs under a folder: task, best metric, steps, wall time and when each last wrote."""
    from dlcli import runs

    rows = [runs.describe(run) for run in runs.find_runs(folder)]
    if json_:
        print_json(rows)
        return
    if not rows:
        log.print(f"no run folders under {escape(str(folder))}")
        return
    print_table(_runs_table(rows, out.width if out.is_terminal else None))


RUNS_COLUMNS = ("run", "task", "best", "steps", "wall", "when", "done")
RUNS_COLUMNS_DROPPED = ("when", "wall", "done", "steps")  # in this order, on a screen too narrow for all


def _runs_table(rows: list[dict], width: int | None) -> Table:
    """dl runs' table. Given a screen width, columns are left out (RUNS_COLUMNS_DROPPED, in turn) until
    it fits, so that the run folder stays whole and the columns left stay readable."""
    cells = [_run_cells(r) for r in rows]
    columns = list(RUNS_COLUMNS)
    table = _names_table(columns, cells)
    for name in RUNS_COLUMNS_DROPPED:
        if width is None or full_width(table) <= width:
            break
        columns.remove(name)
        table = _names_table(columns, cells)
    return table


def _run_cells(r: dict) -> dict[str, str]:
    return {
        "run": r["run"],
        "task": r["task"] or "?",
        "best": f"{r['best_metric']}={r['best_value']:.4g}" if r["best_metric"] else "",
        "steps": "" if r["steps"] is None else str(r["steps"]),
        "wall": _duration(r["wall_s"]),
        "when": r["modified"].replace("T", " ")[:16],
        "done": "yes" if r["finished"] else "no",
    }


def _names_table(columns: list[str], rows: list[dict[str, str]]) -> Table:
    """A table whose first column holds names a user types or copies (a run folder, a recipe): one
    line each, never cut short however narrow the screen. rich narrows the columns that may wrap
    first; only past them would it cut a no_wrap column, and min_width forbids that."""
    key = columns[0]
    table = Table()
    table.add_column(key, no_wrap=True, min_width=max((cell_len(r[key]) for r in rows), default=0))
    for name in columns[1:]:
        table.add_column(name)  # wraps, or ends in "…", when the screen is narrow
    for r in rows:
        table.add_row(*(escape(r[name]) for name in columns))
    return table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@app.command()
@guarded
def plot(
    runs_: Annotated[list[Path], typer.Argument(metavar="RUN", help="run folders")],
    output: Annotated[Path, typer.Option("--output", "-o", help="image to write, format from the extension")] = Path(
        "curves.png"
    ),
    metric: Annotated[
        str | None, typer.Option("--metric", help="the val metric to draw (default: the one that picks best.pt)")
    ] = None,
) -> None:
    """Training loss and a validation metric against step, one line per run."""
    from dlcli import plots

    plots.plot_runs(runs_, output, metric)
    log.print(f"curves -> {escape(str(output))}")


@app.command()
@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    run: Annotated[Path | None, typer.Option("--run", help="a classification run folder")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="a torchvision classifier (with --weights)")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="imagenet, or a state_dict file")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="classes to show per image")] = 5,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Top classes for images, from a trained run or torchvision's ImageNet weights."""
    from dlcli.runtime import pick_device
    from dlcli.tasks import classify

    if (run is None) == (arch is None):
        raise DlError("Give either --run RUN or --arch ARCH (with --weights imagenet|PATH).")
    results = classify.predict(images, run, arch, weights, top, pick_device(device or "auto"))
    if json_:
        print_json(results)
        return
    for result in results:
        out.print(f"[bold]{escape(result['image'])}[/]")
        for row in result["top"]:
            out.print(f"  {row['prob']:7.2%}  {row['label']}", markup=False)


# The --run of the commands that need one: its help, and what the error says when it is missing.
RUN_HELP = {
    "tag": "a tagger's run folder (task: tag)",
    "generate": "a language-model run folder (task: lm)",
    "translate": "a translation run folder (task: translate)",
}


def _needs_run(run: Path | None, command: str) -> Path:
    """--run is checked here, not by click, so that a missing one reads as every other usage error
    (one `error:` line, exit code 2), as with the commands that take --run or another source; and
    first thing, before the command's imports load torch."""
    if run is None:
        raise DlError(f"dl {command} needs --run RUN: {RUN_HELP[command]}.")
    return run


@app.command("tag")
@guarded
def tag_cmd(
    sentence: Annotated[str, typer.Argument(help="a sentence; words and punctuation are split apart")],
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["tag"])] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Part-of-speech tags for a sentence, from a trained tagger."""
    run = _needs_run(run, "tag")
    from dlcli.tasks import tag

    tagged = tag.tag(run, sentence, device or "cpu")  # dl tag runs on the CPU unless --device says otherwise
    if json_:
        print_json(tagged)
        return
    out.print(" ".join(f"{t['token']}/{t['tag']}" for t in tagged), markup=False, highlight=False)


@app.command()
@guarded
def generate(
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["generate"])] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="text to continue")] = "",
    length: Annotated[
        int, typer.Option("--length", min=1, help="tokens to sample: characters, or words for a word-level run")
    ] = 200,
    temperature: Annotated[
        float, typer.Option("--temperature", help="> 0: below 1 sharper, above 1 more random")
    ] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="sample among the k most likely tokens (0: all)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Sample text from a language model; the text starts with the prompt."""
    run = _needs_run(run, "generate")
    from dlcli.tasks import lm

    text = lm.generate(run, prompt, length, temperature, top_k, seed, device)
    if json_:
        print_json({"prompt": prompt, "text": text})
        return
    out.print(text, markup=False, highlight=False)


@app.command("translate")
@guarded
def translate_cmd(
    sentence: Annotated[str, typer.Argument(help="the source sentence, or - to translate each line of stdin")],
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["translate"])] = None,
    beam: Annotated[
        int | None, typer.Option("--beam", min=1, help="beam width (1: greedy; default: the recipe's decode.beam)")
    ] = None,
    attention: Annotated[
        Path | None,
        typer.Option("--attention", help="draw the cross-attention of the (first) sentence into this image"),
    ] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Translate a sentence (or stdin's lines) with a trained encoder-decoder transformer."""
    run = _needs_run(run, "translate")
    from dlcli.tasks import translate

    sentences = [line.rstrip("\r\n") for line in sys.stdin] if sentence == "-" else [sentence]
    results = translate.translate(run, sentences, beam, device)
    if attention is not None and results:
        first = results[0]
        src_tokens, tgt_tokens, weights = translate.cross_attention(run, first["source"], first["translation"], device)
        translate.plot_attention(src_tokens, tgt_tokens, weights, attention)
    if json_:
        print_json(results if sentence == "-" else results[0])
    else:
        for result in results:
            out.print(result["translation"], markup=False, highlight=False)
    if attention is not None and results:
        log.print(f"attention map: {attention}", markup=False, highlight=False)


@app.command()
@guarded
def models(json_: JsonOption = False) -> None:
    """The image classifiers with torchvision's metadata (ImageNet weights)."""
    from dlcli.tasks import classify

    rows = classify.model_table()
    if json_:
        print_json(rows)
        return
    table = Table("arch", "params (M)", "GFLOPs", "ImageNet acc@1", "min size", "aux heads")
    for r in rows:
        table.add_row(
            r["arch"],
            f"{r['params'] / 1e6:.1f}",
            f"{r['gflops']:.2f}",
            f"{r['imagenet_top1']:.3f}",
            str(r["min_size"]),
            "yes" if r["aux_logits"] else "",
        )
    out.print(table)


@app.command("export")
@guarded
def export_cmd(
    run: Annotated[Path, typer.Argument(help="a run folder")],
    format_: Annotated[
        Literal["onnx", "torchscript", "safetensors"],
        typer.Option("--format", "-f", help="onnx or torchscript (classifiers), safetensors (the weights of any run)"),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="file to write (default RUN/export/model.onnx, .pt or .safetensors)"),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Export a run's best checkpoint: ONNX or TorchScript (classifiers), safetensors (any run's weights).

    An exported classifier takes ImageNet-normalized images (N, 3, S, S) and returns logits, as
    `dl predict` runs it. Needs the packages of dlcli's `export` extra (onnx, onnxscript, safetensors).
    """
    from dlcli.export import export_run

    result = export_run(run, format_, output)
    if json_:
        print_json(result)
        return
    out.print(f"{result['path']} ({format_}, {result['task']} run at step {result['step']})", markup=False)
    if "input" in result:
        image, logits = result["input"], result["output"]
        out.print(
            f"input {image['name']} ({', '.join(map(str, image['shape']))}) float32: RGB in [0, 1], normalized with mean "
            f"{image['mean']} and std {image['std']}; output {logits['name']} ({', '.join(map(str, logits['shape']))})",
            markup=False,
        )


@app.command()
@guarded
def env(json_: JsonOption = False) -> None:
    """Versions, devices and threads: what to paste into a bug report."""
    from dlcli import env as env_

    report = env_.collect()
    if json_:
        print_json(report)
        return
    _render_env(report)


def _render_env(report: dict) -> None:
    versions = Table("package", "version", "install with", title="versions")
    for name, version in report["versions"].items():
        extra = report["optional"].get(name)
        versions.add_row(name, version or "not installed", escape(f"pip install 'dlcli[{extra}]'") if extra else "")
    out.print(versions)
    devices = Table("device", "name", "memory (GiB)", "notes", title="devices")
    for gpu in report["devices"]["cuda"]:
        devices.add_row(
            f"cuda:{gpu['index']}",
            escape(gpu["name"]),
            f"{gpu['memory_gib']:.1f}",
            f"compute capability {gpu['capability']}",
        )
    if report["devices"]["mps"]:
        devices.add_row("mps", "Apple GPU", "", "")
    cpu, cuda = report["cpu"], report["devices"]
    devices.add_row(
        "cpu", escape(cpu["machine"]), "", f"{cpu['count']} logical CPUs, {cpu['usable']} usable by this process"
    )
    out.print(devices)
    out.print(
        f"{report['platform']}; torch threads {cpu['torch_threads']} (inter-op {cpu['torch_interop_threads']}); "
        f"CUDA {cuda['cuda_version'] or '-'}, cuDNN {cuda['cudnn_version'] or '-'}; --device auto picks {cuda['auto']}",
        markup=False,
    )


# --------------------------------------------------------------------------- text


@app.command()
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


# --------------------------------------------------------------------------- word vectors

RunVectorsOption = Annotated[
    Path | None, typer.Option("--run", help="a word2vec run folder (its vectors.bin or vectors.txt)")
]
VectorsFileOption = Annotated[
    Path | None, typer.Option("--vectors", help="a word2vec-format file, text or binary, maybe .gz")
]


@app.command()
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
    from dlcli import vectors as wv_

    words = words or []
    if eval_ is not None and (words or plot is not None):
        raise DlError("--eval scores a questions file: give no words A B C and no --plot with it.")
    if eval_ is None and len(words) != 3:
        raise DlError(f"dl analogy takes three words A B C (A - B + C, e.g. king man woman), got {len(words)}.")
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


@app.command()
@guarded
def similar(
    word: Annotated[str, typer.Argument(help="a word of the vocabulary")],
    run: RunVectorsOption = None,
    vectors: VectorsFileOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="neighbours to show")] = 10,
    json_: JsonOption = False,
) -> None:
    """The nearest words by cosine similarity of their vectors."""
    from dlcli import vectors as wv_

    wv = wv_.load_vectors(run, vectors)
    _render_neighbours(wv_.similar(wv, word, top), word, json_)


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


# --------------------------------------------------------------------------- recipes


@app.command()
@guarded
def configs(json_: JsonOption = False) -> None:
    """The bundled recipes (`dl train NAME` runs one)."""
    rows = []
    for path in list_recipes():
        raw = read_yaml(path)
        model = raw.get("model") or {}
        data = raw.get("data") or {}
        rows.append(
            {
                "recipe": path.stem,
                "task": raw.get("task"),
                "name": raw.get("name"),
                "model": model.get("arch"),
                "data": data.get("dataset"),
            }
        )
    if json_:
        print_json(rows)
        return
    columns = ["recipe", "task", "run name", "model", "data"]  # recipe: what `dl train NAME` takes
    cells = [dict(zip(columns, ("" if v is None else str(v) for v in r.values()))) for r in rows]
    print_table(_names_table(columns, cells))


@config_app.command("show")
@guarded
def config_show(
    config: Annotated[str, typer.Argument(help="recipe file or bundled recipe name")],
    set_: SetOption = [],
) -> None:
    """A recipe fully resolved: every key, its value and what it means."""
    cfg = resolve_recipe(config, set_)
    out.print(render_yaml(cfg), markup=False, highlight=False)


# --------------------------------------------------------------------------- style transfer


@app.command()
@guarded
def stylize(
    content: Annotated[Path, typer.Argument(help="the content image")],
    styles: Annotated[list[Path], typer.Argument(help="one or more style images")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="image to write, format from the extension (default CONTENT-STYLE.png)"),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="the output's long side in px, aspect ratio kept (default 512)")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="loss evaluations per scale (L-BFGS makes several per step) (default 500)"),
    ] = None,
    content_weight: Annotated[float | None, typer.Option("--content-weight", help="alpha (default 1)")] = None,
    style_weight: Annotated[float | None, typer.Option("--style-weight", help="beta (default 1e6)")] = None,
    tv_weight: Annotated[float | None, typer.Option("--tv-weight", help="gamma, total variation (default 0.1)")] = None,
    optimizer: Annotated[
        Literal["lbfgs", "adam"] | None, typer.Option("--optimizer", help="lbfgs (the paper's) or adam (default lbfgs)")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="step size (default 1 for lbfgs, 0.02 for adam)")] = None,
    init: Annotated[
        Literal["content", "style", "noise"] | None,
        typer.Option("--init", help="start from the content, the style or white noise (default content)"),
    ] = None,
    preserve_color: Annotated[
        bool, typer.Option("--preserve-color", help="transfer on luminance only, keep the content's colours")
    ] = False,
    style_blend: Annotated[
        str | None, typer.Option("--style-blend", help="weights of the style images, e.g. 0.7,0.3 (default equal)")
    ] = None,
    scales: Annotated[
        str | None, typer.Option("--scales", help="coarse to fine long sides, e.g. 256,512,1024 (the last is --size)")
    ] = None,
    style_scale: Annotated[
        float | None, typer.Option("--style-scale", help="style image long side = size x this (default 1)")
    ] = None,
    save_every: Annotated[
        int | None, typer.Option("--save-every", min=1, help="also write OUT_000050.png ... every N evaluations")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seeds the noise of --init noise")] = 0,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="imagenet (VGG19, torch hub cache), random (offline, cruder) or a VGG state_dict / dl checkpoint (default imagenet)",
        ),
    ] = None,
    pooling: Annotated[
        Literal["avg", "max"] | None, typer.Option("--pooling", help="avg (the paper's) or max (default avg)")
    ] = None,
    content_layers: Annotated[
        str | None, typer.Option("--content-layers", help="LAYER[:WEIGHT],... (default conv4_2)")
    ] = None,
    style_layers: Annotated[
        str | None,
        typer.Option(
            "--style-layers", help="LAYER[:WEIGHT],... (default conv1_1,conv2_1,conv3_1,conv4_1,conv5_1, w_l = 1/5)"
        ),
    ] = None,
    device: DeviceOption = None,
    precision: Annotated[
        Literal["auto", "fp32", "bf16", "fp16"],
        typer.Option("--precision", help="auto: bf16 autocast on a GPU that has it, fp32 on CPU"),
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or logs")] = False,
    json_: JsonOption = False,
) -> None:
    """Neural style transfer (Gatys et al. 2016): CONTENT redrawn in the style of STYLE (several: blended)."""
    from dlcli.config import TrainConfig
    from dlcli.runtime import create_runtime
    from dlcli.stylize import parse_numbers, settings_from_flags, stylize_files

    model_cfg, opts = settings_from_flags(
        dict(
            features=features,
            pooling=pooling,
            content_layers=content_layers,
            style_layers=style_layers,
            size=size,
            steps=steps,
            content_weight=content_weight,
            style_weight=style_weight,
            tv_weight=tv_weight,
            optimizer=optimizer,
            lr=lr,
            init=init,
            preserve_color=preserve_color or None,
            scales=scales,
            style_scale=style_scale,
            save_every=save_every,
        )
    )
    blend = parse_numbers(style_blend, "--style-blend") if style_blend else None
    runtime = create_runtime(TrainConfig(device=device or "auto", precision=precision))
    result = stylize_files(
        content, styles, output, model_cfg, opts, runtime, blend=blend, seed=seed, logger=Logger(quiet=quiet)
    )
    if json_:
        print_json(result)
        return
    losses = result["losses"]
    out.print(
        f"{result['output']}: {result['steps']} evaluations in {result['seconds']:.1f} s; content {losses['content']:.4g}  "
        f"style {losses['style']:.4g}  tv {losses['tv']:.4g}  total {losses['total']:.4g}",
        markup=False,
    )
