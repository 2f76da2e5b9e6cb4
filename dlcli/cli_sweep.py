"""`dl sweep`: start a sweep of a recipe, continue one (--resume), or show what one found (`dl sweep show DIR`).
The work is in dlcli/sweep.py (the trials) and dlcli/sweep_report.py (the table, the picture), imported in the
body: this module is torch- and Optuna-free at import, as every command module is (tests/test_startup.py).

cli.py registers `sweep` on the `dl` app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from dlcli.cli_common import JsonOption, SetOption, guarded
from dlcli.console import out, print_json, print_table
from dlcli.errors import DlError


@guarded
def sweep(
    target: Annotated[
        str, typer.Argument(help="a recipe (file or bundled name); a sweep folder with --resume; or `show`")
    ],
    folder: Annotated[Path | None, typer.Argument(help="with `show`: the sweep folder", show_default=False)] = None,
    param: Annotated[
        list[str], typer.Option("--param", help="KEY=loguniform:LO:HI | uniform:LO:HI | int:LO:HI | choice:A,B")
    ] = [],
    grid: Annotated[list[str], typer.Option("--grid", help="KEY=A,B: every value, crossed with the others")] = [],
    seeds: Annotated[int | None, typer.Option("--seeds", help="run each grid cell with N seeds")] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", help="how many trials (default 20; a grid: its cells)")
    ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="trials at once, each with cores/J threads")] = None,
    metric: Annotated[str, typer.Option("--metric", help="what to optimize, as summary.json names it")] = "val.loss",
    direction: Annotated[
        Literal["minimize", "maximize"] | None,
        typer.Option("--direction", help="default: minimize for losses and perplexities, else maximize"),
    ] = None,
    sampler: Annotated[Literal["tpe", "random", "grid"], typer.Option("--sampler", help="Optuna's sampler")] = "tpe",
    prune: Annotated[
        Literal["none", "median", "hyperband"], typer.Option("--prune", help="stop trials that fall behind")
    ] = "none",
    storage: Annotated[
        str | None, typer.Option("--storage", help="an SQLAlchemy URL (postgresql://...); default study.db inside")
    ] = None,
    set_: SetOption = [],
    out_dir: Annotated[Path | None, typer.Option("--out", help="the sweep folder (default runs/<name>-sweep)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the sweep folder TARGET")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="with `show`: draw the trials into this image")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no line per trial")] = False,
    json_: JsonOption = False,
) -> None:
    """Train a recipe many times with values Optuna picks; every trial is a run folder. After a kill,
    `dl sweep DIR --resume` keeps the finished trials and continues the cut ones from their checkpoints.
    `dl sweep show DIR` prints the trials sorted by the metric, the best values and their importance."""
    from dlcli import sweep as sweeps

    if target == "show":
        if folder is None:
            raise DlError("`dl sweep show` needs the sweep folder: dl sweep show runs/NAME-sweep")
        return _show(folder, plot, json_)
    if folder is not None:
        raise DlError(f"Unexpected argument '{folder}': only `dl sweep show` takes a second one.")
    if resume:
        sweeps.run(Path(target), jobs=jobs, quiet=quiet)
    else:
        spec = sweeps.Spec(
            params=list(param), grid=list(grid), seeds=seeds, overrides=list(set_), trials=_trials(trials, grid, seeds),
            metric=metric, direction=direction or sweeps.default_direction(metric), sampler=sampler, prune=prune,
            storage=storage, jobs=jobs or 1,
        )  # fmt: skip
        target = sweeps.create(target, spec, out_dir)
        sweeps.run(target, quiet=quiet)
    _show(Path(target), None, json_)


def _trials(trials: int | None, grid: list[str], seeds: int | None) -> int:
    """--trials as given; left out: 20, or 0 for a grid (then its cell count)."""
    if trials is not None:
        return trials
    return 0 if grid or seeds is not None else 20


def _show(folder: Path, plot: Path | None, json_: bool) -> None:
    from dlcli import sweep_report

    report = sweep_report.read(folder)
    if plot is not None:
        sweep_report.plot(report, plot)
    if json_:
        print_json(report)
        return
    keys = list(dict.fromkeys(k for row in report["trials"] for k in row["params"]))
    table = Table("trial", "state", report["metric"], *keys, "run", title=f"{folder} ({report['direction']})")
    for row in report["trials"]:
        value = "-" if row["value"] is None else f"{row['value']:.4g}"
        table.add_row(
            str(row["number"]), row["state"], value, *(_cell(row["params"].get(k)) for k in keys), row["run"] or "-"
        )
    print_table(table)
    counts = ", ".join(f"{n} {state}" for state, n in report["counts"].items() if n)
    out.print(f"{counts} of {report['planned']} planned")
    if report["best"] is not None:
        best = report["best"]
        values = ", ".join(f"{k}={_cell(v)}" for k, v in best["params"].items())
        out.print(f"best: trial {best['number']}, {report['metric']} {best['value']:.4g} ({values}) -> {best['run']}")
    if report["importance"]:
        out.print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in report["importance"].items()))
    for cell in report.get("cells", []):
        values = ", ".join(f"{k}={_cell(v)}" for k, v in cell["params"].items()) or "(all)"
        out.print(f"{values}: {cell['mean']:.4g} ± {cell['std']:.2g} over {cell['seeds']} seeds")
    if plot is not None:
        out.print(f"plot -> {plot}")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
