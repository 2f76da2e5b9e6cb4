"""The exceptions the CLI turns into exit codes: DlError (bad input, exit code 2), RunFailed
(training stopped on a failure the user can act on, exit code 1), Interrupted (Ctrl-C, exit code 130).
No traceback for any. Torch-free, so that the CLI can catch them without importing the runner.
"""


class DlError(Exception):
    """Bad usage, a bad config or a bad input file.

    The message is shown as is: say what is wrong, where, and how to fix it.
    The CLI turns it into exit code 2 (a traceback only with --debug).
    """


class RunFailed(Exception):
    """Training stopped on a failure while running: a non-finite loss, a checkpoint that could not be
    written, out of memory. The message says what failed, where, which checkpoint is kept and what
    to change; the CLI turns it into exit code 1 (a traceback only with --debug)."""


class Interrupted(Exception):
    """Ctrl-C during training; the checkpoint is written, the CLI exits 130."""


def missing_package(package: str, extra: str, needed_for: str) -> DlError:
    """The error for an optional package that is not installed: names the pip extra that brings it."""
    return DlError(
        f"{needed_for} needs the '{package}' package, which is not installed. "
        f"Install it with: pip install 'dlcli[{extra}]' (or pip install {package})."
    )
