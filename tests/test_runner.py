"""The shared runner: exact resume, Ctrl-C, non-finite losses, schedules, atomic checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlcli import checkpoint
from dlcli.config import ScheduleConfig
from dlcli.optim import build_scheduler

from conftest import assert_same_training_state, dl

# Results that depend on the CPU's kernels: CI runs this file again under AVX2 dispatch (make test-avx2).
pytestmark = pytest.mark.numerics

# A tiny classify run: 40 images of 16 px, batch 4 -> 10 batches (steps) per epoch.
TINY = [
    "--set",
    "data.image_size=16",
    "--set",
    "data.batch_size=4",
    "--set",
    "data.train_size=40",
    "--set",
    "data.val_size=10",
    "--set",
    "data.test_size=10",
    "--set",
    "train.epochs=3",
    "--set",
    "optim.lr=0.05",
    "--set",
    "schedule.warmup_epochs=0.5",
    "-q",
    "--json",
]


def final_state(run: Path) -> checkpoint.Record:
    return checkpoint.load(run / "checkpoints" / "last.pt")


@pytest.mark.parametrize("stop_at, grad_accum", [(7, 1), (10, 1), (4, 2)])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, stop_at, grad_accum):
    recipe = "resnet"
    accum = ["--set", f"train.grad_accum={grad_accum}"]
    total = 25 if grad_accum == 1 else 13
    straight = dl("train", recipe, "--out", tmp_path / "straight", *TINY, *accum, "--set", f"train.max_steps={total}")
    assert straight.exit_code == 0, straight.output
    first = dl("train", recipe, "--out", tmp_path / "resumed", *TINY, *accum, "--set", f"train.max_steps={stop_at}")
    assert first.exit_code == 0, first.output
    assert final_state(tmp_path / "resumed").step == stop_at
    second = dl(
        "train", recipe, "--out", tmp_path / "resumed", "--resume", *TINY, *accum, "--set", f"train.max_steps={total}"
    )
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["steps"] == total
    assert_same_training_state(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))


def test_resume_refuses_a_change_to_the_model_shape(tmp_path):
    assert dl("train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.max_steps=1").exit_code == 0
    result = dl("train", "resnet", "--out", tmp_path / "run", "--resume", *TINY, "--set", "model.arch=resnet34")
    assert result.exit_code == 2
    assert "model.arch" in result.stderr and "Traceback" not in result.output


def test_sigint_saves_a_loadable_checkpoint_and_exits_130(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "DL_OFFLINE": "1"}
    args = [a for a in TINY if a not in ("-q", "--json")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            "resnet",
            "--out",
            str(run),
            *args,
            "--set",
            "train.epochs=1000",
            "--set",
            "train.log_every=1",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    ckpt = checkpoint.load(run / "checkpoints" / "last.pt")
    assert ckpt.step >= 3
    assert b"Traceback" not in err


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    result = dl(
        "train",
        "resnet",
        "--out",
        tmp_path / "run",
        *TINY,
        "--set",
        "optim.lr=1e30",
        "--set",
        "optim.momentum=0",
        "--set",
        "schedule.name=constant",
        "--set",
        "train.log_every=1",
    )
    assert result.exit_code == 1
    assert "step" in result.stderr and "Traceback" not in result.output
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    if last.exists():  # any checkpoint written holds finite weights
        for tensor in checkpoint.load(last).model.values():
            assert torch.isfinite(tensor.float()).all()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(Exception) as err:
        checkpoint.load(path)
    assert "cannot be read" in str(err.value)


def test_atomic_save_leaves_no_temp_files_and_round_trips(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": torch.arange(3)}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert torch.equal(checkpoint.load_file(path)["x"], torch.arange(3))


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    state = checkpoint.rng_state()
    expected = torch.rand(3)
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    checkpoint.set_rng_state(torch.load(path, weights_only=True))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["constant", "step", "cosine", "linear"])
def test_schedules_warm_up_then_follow_their_shape(name):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    cfg = ScheduleConfig(name=name, warmup_steps=4, step_epochs=2, gamma=0.5, min_lr=0.1)
    sched = build_scheduler(opt, cfg, peak_lr=1.0, total_steps=24, steps_per_epoch=5)
    lrs = []
    for _ in range(24):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0)
    if name == "constant":
        assert lrs[-1] == pytest.approx(1.0)
    elif name == "step":
        assert lrs[10] == pytest.approx(0.5) and lrs[20] == pytest.approx(0.25)
    else:
        assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
        assert lrs[-1] == pytest.approx(0.1, abs=0.05)


def test_existing_run_is_never_overwritten_silently(tmp_path):
    assert dl("train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.max_steps=1").exit_code == 0
    again = dl("train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.max_steps=1")
    assert again.exit_code == 2 and "--resume" in again.stderr
    replaced = dl("train", "resnet", "--out", tmp_path / "run", "--overwrite", *TINY, "--set", "train.max_steps=1")
    assert replaced.exit_code == 0


def test_run_folder_holds_config_metrics_summary(tmp_path):
    result = dl("train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.max_steps=12")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text()) == summary
    assert set(summary) >= {"run", "task", "steps", "epochs", "wall_s", "device", "precision", "metrics"}
    assert set(summary["metrics"]) == {"val", "test"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train and all({"step", "epoch", "lr", "items_per_s", "elapsed_s", "loss"} <= set(r) for r in train)
    assert "max_steps: 12" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_compiled_training_runs_on_cpu(tmp_path):
    """torch.compile is opt-in and works on the CPU too (inductor's C++ backend); slow: it compiles."""
    result = dl(
        "train", "resnet", "--out", tmp_path / "run", *TINY, "--set", "train.compile=true", "--set", "train.max_steps=4"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 4
    # The checkpoint holds the plain module's names, not torch.compile's "_orig_mod." wrapper.
    assert not any(k.startswith("_orig_mod.") for k in final_state(tmp_path / "run").model)
