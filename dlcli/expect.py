"""A recipe's stated result (`expect:`): checked against the task's metrics before training, judged after.

    expect: {metric: test.top1, value: 0.9625, tolerance: 0.02, measured: "2-core Xeon, yardstick 208", minutes: 0.6}

`dl train` ends with one line, "expect test.top1 >= 0.9425 (0.9625 - 0.02): got 0.9625, met", and
summary.json holds the verdict (`judge`); `dl check` exits 1 when it is not met. Torch-free: the check
before training runs where a recipe is resolved (config.resolve_recipe).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from dlcli.config import Expect, RunConfig
from dlcli.errors import DlError

# Metric names for which lower is better (direction: auto); every other is higher-is-better (accuracies,
# top1, bleu, chrf, exact). style's losses are content, style, tv and their weighted total.
LOWER_IS_BETTER = frozenset({"loss", "ppl", "bpc", "total", "content", "style", "tv"})
EMA_PREFIX = "ema_"  # train.ema's average, scored beside the weights in each validation (loop._validate)


def direction(expect: Expect) -> str:
    """ "higher" or "lower": the recipe's, or for auto, from the metric's name (ema_loss is a loss)."""
    if expect.direction != "auto":
        return expect.direction
    return "lower" if lower_is_better(expect.metric) else "higher"


def lower_is_better(metric: str) -> bool:
    """Whether a metric (`val.loss`, `ema_loss`, `test.top1`) improves downwards, from its name (dl sweep too)."""
    return metric.rpartition(".")[2].removeprefix(EMA_PREFIX) in LOWER_IS_BETTER


def check_known(cfg: RunConfig) -> None:
    """Refuse (DlError, exit 2) an expect.metric the task never reports, where its config declares its metrics."""
    if cfg.expect is not None:
        check_reported(cfg, cfg.expect.metric, "expect.metric")


def check_reported(cfg: RunConfig, metric: str, source: str) -> None:
    """Refuse a `split.name` metric (expect.metric, dl sweep --metric: `source`) that a run of `cfg` never
    reports, where its config declares its metrics (cfg.metric_names())."""
    names = cfg.metric_names()
    if names is None:
        return  # not declared: judge() says so at the end if the run did not report it
    split, _, name = metric.partition(".")
    allowed = list(names)
    if split == "val" and cfg.train.ema is not None:
        allowed += [EMA_PREFIX + n for n in names]
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
        return
    offered = ", ".join(f"{split}.{n}" for n in allowed) or "none (word2vec: give data.questions)"
    raise DlError(
        f"{source} '{metric}': a {cfg.task} run with this recipe never reports {name}. Its {split} metrics: {offered}."
    )


def check_splits(cfg: RunConfig, splits: Iterable[str]) -> None:
    """Refuse an expect.metric on a split this run's data does not have (an image folder without test/):
    called with the task's evaluation splits once its data is built, before training."""
    if cfg.expect is None:
        return
    split = cfg.expect.metric.partition(".")[0]
    have = sorted(splits)
    if split not in have:
        raise DlError(
            f"expect.metric '{cfg.expect.metric}': this {cfg.task} run has no {split} split (it evaluates on "
            f"{', '.join(have)}). Name a metric of one of those."
        )


def judge(expect: Expect, metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The verdict summary.json records: metric, wanted (the bound: value -/+ tolerance), got, met, short_by.
    got is None when the run did not report the metric (then not met, and `reported` lists what it did)."""
    split, _, name = expect.metric.partition(".")
    way = direction(expect)
    wanted = expect.value - expect.tolerance if way == "higher" else expect.value + expect.tolerance
    got = metrics.get(split, {}).get(name)
    verdict: dict[str, Any] = {
        "metric": expect.metric,
        "direction": way,
        "value": expect.value,
        "tolerance": expect.tolerance,
        "wanted": _rounded(wanted),
        "got": got,
        "met": False,
        "short_by": None,
        "measured": expect.measured,
        "minutes": expect.minutes,
    }
    if got is None:
        verdict["reported"] = sorted(f"{s}.{n}" for s, values in metrics.items() for n in values)
        return verdict
    short = wanted - got if way == "higher" else got - wanted
    verdict["met"] = short <= 0
    verdict["short_by"] = None if verdict["met"] else _rounded(short)
    return verdict


def describe(verdict: dict[str, Any]) -> str:
    """One line: "expect test.top1 >= 0.94 (0.96 - 0.02): got 0.9625, met", or "..., NOT met, short by 0.03"."""
    higher = verdict["direction"] == "higher"
    bound = f"{'>=' if higher else '<='} {_num(verdict['wanted'])}"
    if verdict["tolerance"]:
        bound += f" ({_num(verdict['value'])} {'-' if higher else '+'} {_num(verdict['tolerance'])})"
    head = f"expect {verdict['metric']} {bound}"
    if verdict["got"] is None:
        reported = ", ".join(verdict["reported"]) or "none"
        return f"{head}: NOT reported by this run (it reported {reported}); fix expect.metric"
    if verdict["met"]:
        return f"{head}: got {_num(verdict['got'])}, met"
    return f"{head}: got {_num(verdict['got'])}, NOT met, short by {_num(verdict['short_by'])}"


def _rounded(x: float) -> float:
    """Without the float noise of a subtraction (0.96 - 0.02 = 0.9199999999999999)."""
    return float(f"{x:.10g}")


def _num(x: float) -> str:
    return f"{x:.6g}"
