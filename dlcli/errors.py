"""The one exception type that means "the user can fix this": exit code 2, no traceback."""


class DlError(Exception):
    """Bad usage, a bad config or a bad input file.

    The message is shown as is: say what is wrong, where, and how to fix it.
    The CLI turns it into exit code 2 (a traceback only with --debug).
    """


def missing_package(package: str, extra: str, needed_for: str) -> DlError:
    """The error for an optional package that is not installed: names the pip extra that brings it."""
    return DlError(
        f"{needed_for} needs the '{package}' package, which is not installed. "
        f"Install it with: pip install 'dlcli[{extra}]' (or pip install {package})."
    )
