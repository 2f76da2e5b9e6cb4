"""The one exception type that means "the user can fix this": exit code 2, no traceback."""


class DlError(Exception):
    """Bad usage, a bad config or a bad input file.

    The message is shown as is: say what is wrong, where, and how to fix it.
    The CLI turns it into exit code 2 (a traceback only with --debug).
    """
