"""train.tensorboard=true: RUN/tensorboard/ holds exactly the scalars of metrics.jsonl (trackers.TensorBoardScalars)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from conftest import TINY_SHAPES, sets

# A tiny classify run: 20 images of 16 px, batch 4; a train record at each of 3 steps, then val and test.
TINY = [*sets("data.image_size=16", "train.max_steps=3", "train.log_every=1"), *TINY_SHAPES, "-q", "--json"]
BOOKKEEPING = ("step", "epoch", "split", "elapsed_s")  # in metrics.jsonl, but not scalars


def test_event_files_hold_the_scalars_of_metrics_jsonl(cli: Callable[..., Result], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = cli("train", "resnet", "--out", run, *TINY, "--set", "train.tensorboard=true")
    assert result.exit_code == 0, result.output

    expected: dict[str, list[tuple[int, float]]] = {}  # tag -> [(step, value)] in file order
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name not in BOOKKEEPING:
                expected.setdefault(f"{record['split']}/{name}", []).append((record["step"], value))
    assert {"train/loss", "train/lr", "train/items_per_s", "val/top1", "test/top1"} <= set(expected)
    assert [step for step, _ in expected["train/loss"]] == [1, 2, 3]

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, points in expected.items():
        written = events.Scalars(tag)
        assert [e.step for e in written] == [step for step, _ in points], tag
        # event files hold float32
        assert [e.value for e in written] == pytest.approx([value for _, value in points], rel=1e-6, abs=1e-30), tag


def test_no_event_files_unless_asked(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("train", "resnet", "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_missing_tensorboard_package_names_the_extra(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    result = cli("train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.tensorboard=true")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    assert "pip install 'dlcli[tensorboard]'" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before training


def test_a_resumed_run_purges_the_events_logged_after_its_checkpoint(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = [*TINY, "--set", "train.tensorboard=true", "--set", "train.checkpoint_every=2"]
    assert cli("train", "resnet", "--out", run, *args).exit_code == 0  # last.prev.pt at step 2, last.pt at 3
    # Continue from step 2, as after a damaged last.pt: step 3 is trained and logged again.
    result = cli(
        "train",
        "resnet",
        "--out",
        run,
        *args,
        "--set",
        "train.max_steps=4",
        "--resume-from",
        run / "checkpoints" / "last.prev.pt",
    )
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]  # step 3 once: the second run's
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics if r["split"] == "train"] == [1, 2, 3, 4]
