"""CPU threads (dlcli/threads.py): the OpenMP spin set before torch loads, and how many threads a run uses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dlcli import threads
from dlcli.config import TrainConfig
from dlcli.runtime import create_runtime

from conftest import dl


def _in_a_fresh_process(code: str, **env: str) -> str:
    """What `code` prints in a new interpreter that imports dlcli first, under `env` (without the OpenMP
    variables the test process may have)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GOMP_", "OMP_", "DL_THREADS"))}
    done = subprocess.run(
        [sys.executable, "-c", "import dlcli, os, torch\n" + code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_importing_dlcli_shortens_the_openmp_spin_unless_the_user_chose_one() -> None:
    assert _in_a_fresh_process("print(os.environ.get('GOMP_SPINCOUNT'))") == threads.SPINCOUNT
    assert _in_a_fresh_process("print(os.environ.get('GOMP_SPINCOUNT'))", GOMP_SPINCOUNT="5") == "5"
    assert _in_a_fresh_process("print(os.environ.get('GOMP_SPINCOUNT'))", OMP_WAIT_POLICY="ACTIVE") == "None"


def test_dl_threads_sets_torchs_threads_from_the_start() -> None:
    assert _in_a_fresh_process("print(torch.get_num_threads())", DL_THREADS="1") == "1"
    assert _in_a_fresh_process("print(torch.get_num_threads())", DL_THREADS="1", OMP_NUM_THREADS="2") == "2"


def test_a_run_uses_train_threads_else_dl_threads_else_its_cores_shared_among_local_processes(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        create_runtime(TrainConfig(threads=1), "cpu")
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("DL_THREADS", "3")
        assert threads.count() == 3 and threads.count(2) == 2
        monkeypatch.delenv("DL_THREADS")
        cores = len(os.sched_getaffinity(0))
        assert threads.count() == cores
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))  # torchrun with more processes than cores
        assert threads.count() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_a_bad_thread_count_is_exit_2(value: str) -> None:
    result = dl("config", "show", "resnet", "--set", f"train.threads={value}")
    assert result.exit_code == 2 and "train.threads" in result.output and "Traceback" not in result.output
