"""CPU threads: how many torch uses, and how long its idle OpenMP threads spin. Torch-free.

Two torch processes on a 2-core machine used to slow each other 3-5x, far more than sharing the
cores explains (two `dl train pos_lstm` side by side: 88 s against 18 s one after the other). The
cause is OpenMP's wait policy: between parallel regions, libgomp's idle threads spin (GOMP_SPINCOUNT,
300,000 iterations by default) before they sleep, and a spinning thread holds a core the other
process's threads are waiting for. A spin of 10,000 iterations keeps a lone run as fast as before (the
demo's ResNet-18 36.0-36.4 s against 35.0-37.7 s; 3,000 cost it 7%, 5,000 5%) and lets two runs share
the cores far better: concurrent / sequential 1.03 for a ResNet-18 on shapes (2.54 before), 1.91 for
pos_lstm (4.91 before), on the 2-core machine of BENCHMARKS.md ("Threads"). Processes of small models
side by side share best with one thread each (DL_THREADS=1: pos_lstm 0.50).

libgomp reads its settings when torch is loaded, so `configure()` runs when dlcli is imported,
before any torch import of dl's own; a value the user has set (GOMP_SPINCOUNT, OMP_WAIT_POLICY,
OMP_NUM_THREADS) is never changed. How many threads a run uses is `train.threads`, else DL_THREADS,
else the cores this process may run on (`count`).
"""

from __future__ import annotations

import os

SPINCOUNT = "10000"  # iterations an idle OpenMP thread spins before it sleeps (libgomp's default: 300000)


def configure() -> None:
    """Set the OpenMP spin and (from DL_THREADS) thread count for the torch this process will load."""
    if "OMP_WAIT_POLICY" not in os.environ:  # the user's own wait policy decides the spin
        os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)
    threads = _dl_threads()
    if threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def count(configured: int | None = None) -> int:
    """Threads for torch's CPU ops: train.threads when set, else DL_THREADS, else the cores this
    process may run on (its CPU affinity: a container's or taskset's share, not the machine's),
    divided among the processes torchrun starts on this machine (LOCAL_WORLD_SIZE)."""
    if configured is not None:
        return configured
    threads = _dl_threads()
    if threads is not None:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity call
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def _dl_threads() -> int | None:
    """DL_THREADS when it is a positive whole number (anything else is ignored)."""
    value = os.environ.get("DL_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
