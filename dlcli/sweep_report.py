"""What a sweep found: its trials sorted by the metric, the best values, which parameters mattered, the
mean and spread of each grid cell over its seeds, and a picture. `dl sweep show DIR [--json] [--plot P]`.

    report = sweep_report.read(Path("runs/resnet18-shapes-sweep"))
    report["best"]["params"]        # {"optim.lr": 0.0031}

Importance is Optuna's default evaluator (PED-ANOVA) over the finished trials.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from dlcli import sweep


def read(folder: Path) -> dict[str, Any]:
    """The sweep as plain data: {"metric", "direction", "trials": [...], "best", "importance", "cells"}."""
    import optuna

    spec = sweep.read_spec(folder)
    study = sweep.open_study(folder)
    trials = [_trial_row(t, spec) for t in study.get_trials(deepcopy=False) if not sweep.is_unrun(t)]
    sign = -1 if spec.direction == "maximize" else 1
    order = {"complete": 0, "pruned": 1, "running": 2, "failed": 3}
    trials.sort(key=lambda row: (order.get(row["state"], 4), sign * (row["value"] or 0), row["number"]))
    done = [row for row in trials if row["state"] == "complete"]  # best first
    report: dict[str, Any] = {
        "sweep": str(folder),
        "metric": spec.metric,
        "direction": spec.direction,
        "planned": spec.trials,
        "counts": {state: sum(row["state"] == state for row in trials) for state in order},
        "trials": trials,
        "best": done[0] if done else None,
        "importance": _importance(study, optuna) if len(done) >= 2 else {},
    }
    if any(key == "seed" for key, _ in spec.space().grid):
        report["cells"] = _cells(done, sign)
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """The metric of every trial in the order they ran, the best so far, and the metric against each parameter."""
    from dlcli import plots

    keys = list(dict.fromkeys(key for row in report["trials"] for key in row["params"] if key != "seed"))
    fig = plots.new_figure(figsize=(4.5 * (1 + len(keys)), 3.6))
    axes = fig.subplots(1, 1 + len(keys), squeeze=False)
    history = axes[0][0]
    by_number = sorted(report["trials"], key=lambda row: row["number"])
    best, best_so_far = None, []
    better = max if report["direction"] == "maximize" else min
    for row in by_number:
        if row["state"] == "complete":
            best = row["value"] if best is None else better(best, row["value"])
        best_so_far.append(best)
    for state, marker in (("complete", "o"), ("pruned", "x")):
        rows = [row for row in by_number if row["state"] == state and row["value"] is not None]
        history.scatter([r["number"] for r in rows], [r["value"] for r in rows], marker=marker, label=state)
    history.plot([r["number"] for r in by_number], best_so_far, color="black", linewidth=1, label="best so far")
    history.set(xlabel="trial", ylabel=report["metric"], title="trials (pruned: last reported value)")
    history.legend(fontsize=8)
    for ax, key in zip(axes[0][1:], keys):
        every = []
        for state, marker in (("complete", "o"), ("pruned", "x")):
            rows = [
                r for r in report["trials"] if r["state"] == state and key in r["params"] and r["value"] is not None
            ]
            xs = [row["params"][key] for row in rows]
            every += xs
            ax.scatter([str(x) if isinstance(x, str) else x for x in xs], [r["value"] for r in rows], marker=marker)
        if every and all(isinstance(x, float) and x > 0 for x in every) and max(every) / min(every) > 20:
            ax.set_xscale("log")  # a range that spans decades (a loguniform learning rate)
        ax.set(xlabel=key, ylabel=report["metric"])
    plots.save_figure(fig, path)


def _trial_row(trial: Any, spec: sweep.Spec) -> dict[str, Any]:
    state = trial.state.name.lower()
    value = trial.value
    if state == "pruned" and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]  # its last reported validation
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    return {
        "number": trial.number,
        "state": {"fail": "failed"}.get(state, state),
        "value": value,
        "params": dict(trial.params),
        "run": trial.user_attrs.get("folder"),
        "seconds": round(seconds, 1) if seconds is not None else None,
        "error": trial.user_attrs.get("error"),
    }


def _importance(study: Any, optuna: Any) -> dict[str, float]:
    try:
        return {k: round(v, 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # one value per parameter, or identical metrics
        return {}


def _cells(done: list[dict[str, Any]], sign: int) -> list[dict[str, Any]]:
    """The finished trials grouped by their values apart from the seed: mean, spread (stdev) and count."""
    groups: dict[tuple, list[float]] = {}
    params_of: dict[tuple, dict[str, Any]] = {}
    for row in done:
        params = {k: v for k, v in row["params"].items() if k != "seed"}
        key = tuple(sorted((k, repr(v)) for k, v in params.items()))
        groups.setdefault(key, []).append(row["value"])
        params_of[key] = params
    cells = [
        {
            "params": params_of[key],
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": len(values),
        }
        for key, values in groups.items()
    ]
    return sorted(cells, key=lambda cell: sign * cell["mean"])
