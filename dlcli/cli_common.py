"""What every `dl` command shares: `guarded`, which turns errors into the exit codes cli.py's
docstring lists and one-paragraph messages, the options several commands take (--set, --json,
--device), and `run_or_newest`, the run the inference commands use when --run is not given. Torch-free, as cli.py and the command modules are at import (tests/test_startup.py).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dlcli.console import log
from dlcli.errors import DlError, Interrupted, RunFailed

_debug = os.environ.get("DL_DEBUG", "") not in ("", "0")

SetOption = Annotated[list[str], typer.Option("--set", help="override a recipe key: --set optim.lr=0.05 (repeatable)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (overrides train.device)")
]


def run_or_newest(run: Path | None, task: str, sources: str = "--run RUN") -> Path:
    """The run a command answers with: --run as given, else the newest finished run of `task` under runs/
    (runs.newest_finished), named on stderr. Torch-free: with none there, the command stops before it loads
    torch. `sources`: what the command takes instead, for that message."""
    if run is not None:
        return run
    from dlcli import runs

    found = runs.newest_finished(task, runs.RUNS, sources)
    log.print(f"using {escape(str(found))} (newest finished {task} run)", highlight=False)
    return found


def show_tracebacks() -> None:
    """`dl --debug`: from now on `guarded` lets errors through, with their traceback."""
    global _debug
    _debug = True


def _fail(message: str, code: int) -> None:
    log.print(f"[red bold]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def guarded(fn):
    """Turn the errors a user can act on into exit codes and one-paragraph messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except DlError as e:
            if _debug:
                raise
            _fail(str(e), 2)
        except Interrupted:
            log.print("interrupted: the checkpoint is saved; continue with --resume")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            log.print("interrupted")
            raise typer.Exit(130) from None
        except RunFailed as e:  # a non-finite loss, a failed checkpoint write, out of memory
            if _debug:
                raise
            _fail(str(e), 1)
        except Exception as e:
            if _debug:
                raise
            _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper
