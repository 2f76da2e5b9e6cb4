"""`--nproc N`: the same dl command in N processes on this machine, under torchrun's launcher.

    python -m dlcli.launch N train RECIPE ...     # what `dl train RECIPE ... --nproc N` runs

It runs the agent `torchrun --standalone --nproc_per_node=N -m dlcli ...` runs (torch.distributed.run),
in this process, so that a failed worker's exit reaches the shell as the worker's own code. torchrun
itself turns any worker's failure into a traceback of its own and exit 1: a bad-input error in the ranks
(exit 2, its message already printed by them) would read as a crash of the launcher.
"""

from __future__ import annotations

import logging
import signal
import sys


def main(argv: list[str]) -> int:
    """Run `dl argv[1:]` in argv[0] processes; returns the exit code of the first worker that failed (0: none).
    A worker killed by a signal gives 128 + the signal's number, as a shell reports it."""
    nproc, *command = argv
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # The agent logs each failure ("failed (exitcode: 2) local_rank: 0 ...") and the SIGTERM it sends the
    # other workers; the workers have said what went wrong.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "dlcli", *command]))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode > 0:
            return failure.exitcode
        name = signal.Signals(-failure.exitcode).name if -failure.exitcode in signal.valid_signals() else "a signal"
        print(f"error: rank {rank} was killed by {name}; the job stopped with it.", file=sys.stderr)
        return 128 - failure.exitcode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
