"""What scripts/bench_cifar_side.py and bench_cifar10.py read from runs and from the plain loop's output,
checked without training: the lines of ../shared/baselines/cifar_plain.py, metrics.jsonl's val records by
their elapsed_s, and the steps a budget holds. (The scripts themselves are smoke-tested by hand: see their
docstrings.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def side(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_cifar_side

    yield bench_cifar_side
    for name in ("bench_cifar_side", "cifarlib", "benchlib"):
        sys.modules.pop(name, None)


def test_the_plain_loops_lines_are_parsed(side) -> None:
    # As cifar_plain.py prints them (its f-strings, with values filled in).
    out = (
        "schedule over 11000 steps (28.2 epochs)\n"
        "epoch 1 step 390 1.1 min of training, loss 1.734, test top-1 0.4321\n"
        "epoch 9 step 3510 10.2 min of training, loss 0.912, test top-1 0.7702\n"
        "epoch 28 step 11000 30.0 min of training, loss nan, test top-1 0.8412\n"
        "final test top-1 0.8412 after 30.0 min of training, 11000 steps, 611 img/s\n"
    )
    epochs = [(float(m[2]), float(m[3])) for m in side.PLAIN_EPOCH.findall(out)]
    assert epochs == [(1.1, 0.4321), (10.2, 0.7702), (30.0, 0.8412)]
    assert side.PLAIN_FINAL.search(out).groups() == ("0.8412", "30.0", "11000", "611")


def test_accuracy_at_the_marks_takes_the_last_validation_before_each(side) -> None:
    from cifarlib import at_minutes, median_speed

    records = [
        {"split": "train", "items_per_s": 100.0, "elapsed_s": 30},
        {"split": "train", "items_per_s": 600.0, "elapsed_s": 60},
        {"split": "train", "items_per_s": 700.0, "elapsed_s": 90},
        {"split": "val", "top1": 0.5, "ema_top1": 0.4, "elapsed_s": 500},
        {"split": "val", "top1": 0.7, "ema_top1": 0.72, "elapsed_s": 1190},
        {"split": "val", "top1": 0.8, "ema_top1": 0.81, "elapsed_s": 1805},  # after the budget: max_minutes' stop
    ]
    ends = side.mark_ends(30)
    assert ends[:2] == [10, 20] and ends[2] == float("inf")
    assert [at_minutes(records, m, "top1") for m in ends] == [0.5, 0.7, 0.8]
    assert [at_minutes(records, m, "ema_top1") for m in ends] == [0.4, 0.72, 0.81]
    assert at_minutes(records, 5, "top1") is None
    assert median_speed(records) == 650.0  # the first interval (warming up) is left out


def test_the_schedule_fits_the_share_of_the_budget(side) -> None:
    from cifarlib import SCHEDULE_SHARE, budget_steps, steps_per_epoch, train_images

    assert budget_steps(700.0, 30, 128) == int(700 * 1800 * SCHEDULE_SHARE / 128)
    assert budget_steps(1.0, 0.01, 512) == 1  # never zero steps
    assert train_images(0.02) == 49_000 and steps_per_epoch(0.02, 128) == 382
