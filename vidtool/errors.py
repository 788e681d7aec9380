"""Errors a user can cause.

A `UserError` is caught at the command line: the message is printed as one line on stderr and the
process exits with status 2 (`--debug` shows the traceback). Anything else is a bug and exits 1.
"""


class UserError(Exception):
    """Bad input, a missing file, a wrong kind or an out-of-range option; the message says the fix."""
