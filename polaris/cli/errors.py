"""Errors a command reports as one line on stderr."""


class CommandError(Exception):
    """A failure to report as one line on stderr, exit code 1 (no traceback)."""
