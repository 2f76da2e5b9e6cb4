"""Pictures of runs: training curves (`dl plot`) and confusion matrices (`dl eval --confusion`).

    dl plot runs/resnet18-shapes runs/resnet18-adamw -o curves.png
    dl eval runs/resnet18-shapes --confusion confusion.png

matplotlib is the optional extra `plot` (pip install 'dlcli[plot]'). The drawing functions return
the Figure, so tests and notebooks can look at what was drawn; save_figure writes it. Figures are
made without pyplot: no global state, no window, PNGs rendered by Agg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli import runs
from dlcli.errors import DlError, missing_package

# Above these many classes a confusion matrix drops its cell numbers, then its tick labels:
# they would overlap into a grey smear.
ANNOTATE_MAX_CLASSES = 20
LABEL_MAX_CLASSES = 40


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure; a DlError naming the `plot` extra when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise missing_package("matplotlib", "plot", "Drawing plots") from None
    return Figure(layout="constrained", **kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a figure; the format comes from the extension (.png, .pdf, .svg, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------- training curves


def plot_runs(run_dirs: list[Path], output: Path, metric: str | None = None) -> Any:
    """`dl plot`: each run's training loss and a val metric against step, saved to `output`.

    Args:
        metric: the val metric to draw (default: the one that chose the first run's best.pt,
            else the first one its val records hold).
    Returns the Figure: axes[0] the loss, axes[1] the metric, one line per run on each.
    """
    histories = {label: runs.read_metrics(run) for label, run in zip(_labels(run_dirs), run_dirs, strict=True)}
    recorded = [name for records in histories.values() for name in runs.val_metrics(records)]
    if metric is None:
        metric = _default_metric(run_dirs[0], runs.val_metrics(next(iter(histories.values()))))
    elif metric not in recorded:
        choices = ", ".join(dict.fromkeys(recorded)) or "none yet"
        raise DlError(f"No val records of '{metric}' in these runs. Their val metrics: {choices}.")
    fig = curves_figure(histories, metric)
    save_figure(fig, output)
    return fig


def curves_figure(histories: dict[str, list[dict[str, Any]]], metric: str | None) -> Any:
    """Two panels against optimizer step, one line per run in each (same colour in both):
    the training loss and `metric` on the val split. `histories`: legend label -> metrics.jsonl records."""
    fig = new_figure(figsize=(11, 4.2))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for label, records in histories.items():
        train = [r for r in records if r.get("split") == "train" and "loss" in r]
        val = [r for r in records if r.get("split") == "val" and metric in r]
        # A run with no records yet still gets its (empty) line: the colours stay paired across panels.
        loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], label=label, linewidth=1.2)
        metric_ax.plot([r["step"] for r in val], [r[metric] for r in val], label=label, marker="o", markersize=3)
    loss_ax.set(title="training loss", xlabel="optimizer step", ylabel="loss")
    metric_ax.set(
        title=f"val {metric}" if metric else "val (no records yet)", xlabel="optimizer step", ylabel=metric or ""
    )
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    loss_ax.legend(fontsize="small")
    return fig


def _labels(run_dirs: list[Path]) -> list[str]:
    """Legend labels: the folder names, or the whole paths when two runs share a name."""
    names = [Path(run).name for run in run_dirs]
    return names if len(set(names)) == len(names) else [str(run) for run in run_dirs]


def _default_metric(run: Path, recorded: list[str]) -> str | None:
    """The metric that chose the run's best.pt, else the first one its val records hold."""
    best = runs.best_metric(runs.peek_checkpoint(run))
    if best is not None:
        return best[0]
    return recorded[0] if recorded else None


# --------------------------------------------------------------------------- confusion matrix


def confusion_figure(counts: Any, class_names: list[str], title: str | None = None) -> Any:
    """A confusion matrix as a picture: rows the true classes, columns the predicted ones,
    cells the counts (written in the cells for up to 20 classes). `counts`: (C, C) array or tensor."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    # A head wider than the data's classes (model.num_classes) predicts classes without a name.
    names = list(class_names) + [str(i) for i in range(len(class_names), n)]
    side = min(3.0 + 0.45 * n, 24.0)
    fig = new_figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    if n <= LABEL_MAX_CLASSES:
        ax.set_xticks(range(n), names[:n], rotation=45, ha="right")
        ax.set_yticks(range(n), names[:n])
    if n <= ANNOTATE_MAX_CLASSES:
        dark = counts.max() / 2
        for (row, col), count in np.ndenumerate(counts):
            if count:
                ax.text(
                    col,
                    row,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if count > dark else "black",
                )
    ax.set(
        xlabel="predicted class", ylabel="true class", title=title or f"confusion matrix ({int(counts.sum())} images)"
    )
    return fig
