"""Errors that end a command with a single line on stderr and exit code 2.

Every usage error reads ``rseq-gen <subcommand>: error: <what>``; the
command-line entry point (rseq_gen.cli) adds the ``rseq-gen <subcommand>:
error:`` part, so the text of a UsageError is only the ``<what>``.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user: one clear line, exit code 2, nothing written.

    ``prog`` is the command the error belongs to (``rseq-gen generate``) when
    the raiser knows it better than the entry point does (argparse does)."""

    exit_code = 2

    def __init__(self, message: str, prog: str | None = None):
        super().__init__(message)
        self.prog = prog


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` did you mean X?`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_choice(option: str, what: str, value: str, choices: Iterable[str]) -> UsageError:
    """``--protocol: unknown protocol 'compt'; did you mean compat? (one of: ...)``"""
    choices = list(choices)
    return UsageError(f"{option}: unknown {what} {value!r}{did_you_mean(value, choices)} "
                      f"(one of: {', '.join(choices)})")


#: What an OSError means for a path the user gave, in the user's words.
_ERRNO_WORDS = {
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "exists and is not a directory",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such file or directory",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
}


def os_error_words(exc: OSError) -> str:
    """``read-only file system`` for EROFS, ...: what went wrong, without the
    file name the OSError carries (that may be an internal temporary file)."""
    words = _ERRNO_WORDS.get(exc.errno or 0)
    if words:
        return words
    return (exc.strerror or str(exc)).lower()
