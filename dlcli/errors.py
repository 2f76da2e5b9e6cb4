"""The exceptions whose message is the whole story: DlError (bad input, exit code 2) and
RunFailed (training stopped on a failure the user can act on, exit code 1). No traceback for either."""


class DlError(Exception):
    """Bad usage, a bad config or a bad input file.

    The message is shown as is: say what is wrong, where, and how to fix it.
    The CLI turns it into exit code 2 (a traceback only with --debug).
    """


class RunFailed(Exception):
    """Training stopped on a failure while running: a non-finite loss, a checkpoint that could not be
    written, out of memory. The message says what failed, where, which checkpoint is kept and what
    to change; the CLI turns it into exit code 1 (a traceback only with --debug)."""


def missing_package(package: str, extra: str, needed_for: str) -> DlError:
    """The error for an optional package that is not installed: names the pip extra that brings it."""
    return DlError(
        f"{needed_for} needs the '{package}' package, which is not installed. "
        f"Install it with: pip install 'dlcli[{extra}]' (or pip install {package})."
    )
