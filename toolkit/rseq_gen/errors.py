"""Errors that end a command with a single line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: one clear line, exit code 2, nothing written."""

    exit_code = 2
