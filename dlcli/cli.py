"""The `dl` command: each command parses, calls one function, renders the answer.

This module is the typer app: the commands on run folders and recipes (train, eval, runs, plot,
export, env, configs, config show) and, at the end, the one list that registers every command in
the order `dl --help` shows them. The others live beside it, one group each: cli_infer.py (predict,
tag, generate, translate, models), cli_vectors.py (skipgrams, analogy, similar, similarity), cli_stylize.py
(stylize); cli_common.py holds `guarded` and the shared options.

Exit codes: 0 done, 1 failed while running, 2 bad usage / config / input file
(a short message, no traceback unless --debug), 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from dlcli import __version__, cli_infer, cli_stylize, cli_sweep, cli_vectors
from dlcli.cli_common import DeviceOption, JsonOption, SetOption, guarded, show_tracebacks
from dlcli.console import fmt_metrics, full_width, log, out, per_class_table, print_json, print_table
from dlcli.errors import DlError

app = typer.Typer(
    help="Train and run the landmark models of deep learning from YAML recipes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
config_app = typer.Typer(help="Inspect recipes.", no_args_is_help=True)
app.add_typer(config_app, name="config")


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
    if debug:
        show_tracebacks()


# --------------------------------------------------------------------------- train


@guarded
def train(
    config: Annotated[str, typer.Argument(help="recipe file, or a bundled recipe's name (resnet)")],
    set_: SetOption = [],
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default runs/<name>)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run folder's checkpoints/last.pt")] = False,
    resume_from: Annotated[
        Path | None,
        typer.Option(
            "--resume-from",
            help="continue from this checkpoint (word2vec with data.update_vocab: a new run from its vectors)",
        ),
    ] = None,
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
        from dlcli.config import resolve_recipe

        # A bad recipe or --set is exit 2 here, once, rather than once from each process.
        resolve_recipe(config, set_)
        raise typer.Exit(_launch_torchrun(nproc))
    summary = api.train(
        config, set_, out_dir, resume=resume, resume_from=resume_from, overwrite=overwrite, device=device, quiet=quiet
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, only the main process answers
        return
    _print_summary(summary, json_)


def _print_summary(summary: dict, json_: bool) -> None:
    """What dl train and dl check answer: the final metrics, the steps and the run, and the recipe's expect: verdict."""
    from dlcli.expect import describe

    if json_:
        print_json(summary)
        return
    for split, metrics in summary["metrics"].items():
        out.print(f"{split}: {fmt_metrics(metrics)}")
    out.print(f"{summary['steps']} steps in {summary['wall_s']:.1f} s on {summary['device']} -> {summary['run']}")
    if "expect" in summary:
        out.print(describe(summary["expect"]), markup=False, highlight=False)


@guarded
def check(
    config: Annotated[str, typer.Argument(help="recipe file, or a bundled recipe's name (resnet)")],
    set_: SetOption = [],
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default runs/<name>)")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue a check cut short (Ctrl-C) from the run folder's last.pt")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing run folder")] = False,
    device: DeviceOption = None,
    nproc: Annotated[
        int | None, typer.Option("--nproc", help="processes on this machine: re-launches under torchrun")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars or logs")] = False,
    json_: JsonOption = False,
) -> None:
    """Train a recipe and check its stated result (its expect: block): exit 0 met, 1 not met, 2 no expect:."""
    from dlcli import api, expect
    from dlcli.config import resolve_recipe

    cfg = resolve_recipe(config, set_)  # torch-free: a recipe without expect: stops before torch loads
    if cfg.expect is None:
        raise DlError(
            f"{config} states no result to check: add an expect: block (metric, value, tolerance, measured; "
            "`dl config show RECIPE` describes them), or --set expect.metric=... --set expect.value=..."
        )
    expect.check_known(cfg)  # a metric the task never reports: exit 2, still before torch loads
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch_torchrun(nproc))  # rank 0's exit code: the verdict's
    summary = api.train(
        config, set_, out_dir, resume=resume, overwrite=overwrite, device=device, quiet=quiet, strict_expect=True
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, only the main process answers
        return
    _print_summary(summary, json_)
    verdict = summary["expect"]
    if verdict["got"] is None:  # a metric the task's config does not declare, and the run did not report
        raise DlError(f"expect.metric '{verdict['metric']}' was not reported by this run: fix the recipe's expect:.")
    if not verdict["met"]:
        raise typer.Exit(1)


def _launch_torchrun(nproc: int) -> int:
    """Run this same command under torchrun with `nproc` processes (--nproc removed); returns its exit code."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    # dlcli.launch runs torchrun's agent and exits with the failed worker's own code (torchrun: 1 and a traceback)
    command = [sys.executable, "-m", "dlcli.launch", str(nproc), *args]
    return subprocess.call(command)


# --------------------------------------------------------------------------- a run's best checkpoint: eval, export


@guarded
def eval_(
    run: Annotated[Path, typer.Argument(help="a run folder")],
    split: Annotated[str | None, typer.Option("--split", help="test (default when present), val")] = None,
    confusion: Annotated[
        Path | None,
        typer.Option("--confusion", help="classify runs: draw the split's confusion matrix into this image"),
    ] = None,
    weights: Annotated[
        Literal["raw", "ema"] | None,
        typer.Option("--weights", help="train.ema runs: raw or ema (the average); default: what best.pt chose"),
    ] = None,
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip",
            help="classify runs: average each image's logits with its mirror image's (default: the run's data.eval_flip)",
        ),
    ] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Evaluate a run's best checkpoint."""
    from dlcli import loading, loop
    from dlcli.runtime import create_runtime

    opened = loading.open_run(run, weights=weights)  # the checkpoint is read here, once
    if confusion is not None and opened.task.NAME != "classify":
        raise DlError(
            f"--confusion draws an image classifier's confusion matrix, but {run} is a run of task '{opened.task.NAME}'."
        )
    if flip is not None:
        if opened.task.NAME != "classify":
            raise DlError(f"--flip mirrors images, but {run} is a run of task '{opened.task.NAME}'.")
        opened.config.data.eval_flip = flip
    runtime = create_runtime(opened.config.train, device)
    used_split, job, model = loading.restore_for_eval(opened, split, runtime)
    metrics = loop.evaluate(model, job.eval_data[used_split], job, runtime)
    drawn = None
    if confusion is not None:
        drawn = _draw_confusion(run, used_split, job, model, runtime, confusion, opened.config.data.eval_flip)
    notes = opened.task.eval_notes(opened.config)  # e.g. sacreBLEU's signature
    if json_:
        report = {"run": str(run), "split": used_split, "weights": opened.weights, "metrics": metrics, **notes}
        if opened.task.NAME == "classify":
            report["flip"] = opened.config.data.eval_flip
        if drawn:
            report["confusion"] = drawn
        print_json(report)
        return
    which = ", EMA weights" if opened.weights == "ema" else ""
    if opened.task.NAME == "classify" and opened.config.data.eval_flip:
        which += ", mirrored too"
    out.print(f"{run} [{used_split}{which}]: {fmt_metrics(metrics)}", markup=False)
    for key, value in notes.items():
        out.print(f"{key}: {value}", markup=False, highlight=False)
    table = per_class_table(metrics)
    if table is not None:
        out.print(table)
    if drawn:
        log.print(f"confusion matrix -> {escape(drawn['image'])}")


def _draw_confusion(run: Path, split: str, job, model, runtime, image: Path, flip: bool) -> dict:
    """dl eval --confusion: the model's top-1 predictions over the split, counted per (true, predicted)
    class and drawn. A second pass over the split, after the metrics' one."""
    from dlcli import plots
    from dlcli.tasks import classify

    counts = classify.confusion_matrix(model, job.eval_data[split], runtime, flip)
    classes = job.extra["classes"]
    title = f"{run.name} [{split}]: {int(counts.sum())} images"
    plots.save_figure(plots.confusion_figure(counts, classes, title), image)
    return {"image": str(image), "classes": classes, "counts": counts.tolist()}


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


# --------------------------------------------------------------------------- run folders


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


# --------------------------------------------------------------------------- recipes


@guarded
def configs(json_: JsonOption = False) -> None:
    """The bundled recipes (`dl train NAME` runs one)."""
    from dlcli.config import list_recipes, read_yaml

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


@guarded
def config_show(
    config: Annotated[str, typer.Argument(help="recipe file or bundled recipe name")],
    set_: SetOption = [],
) -> None:
    """A recipe fully resolved: every key, its value and what it means."""
    from dlcli.config import render_yaml, resolve_recipe

    cfg = resolve_recipe(config, set_)
    out.print(render_yaml(cfg), markup=False, highlight=False)


# --------------------------------------------------------------------------- this installation


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


# --------------------------------------------------------------------------- the commands

# Every command of `dl`, in the order `dl --help` lists them (typer keeps registration order).
app.command()(train)
app.command()(check)
app.command("eval")(eval_)
app.command("runs")(runs_cmd)
app.command()(cli_sweep.sweep)
app.command()(plot)
app.command()(cli_infer.predict)
app.command("tag")(cli_infer.tag_cmd)
app.command()(cli_infer.generate)
app.command("translate")(cli_infer.translate_cmd)
app.command()(cli_infer.models)
app.command("export")(export_cmd)
app.command()(env)
app.command()(cli_vectors.skipgrams)
app.command()(cli_vectors.analogy)
app.command()(cli_vectors.similar)
app.command()(cli_vectors.similarity)
app.command()(configs)
app.command()(cli_stylize.stylize)
config_app.command("show")(config_show)
