"""Atomic file output: every file rseq-gen writes appears whole or not at all,
and a set of files is written only once all of them could be prepared. When
any of them cannot be written, nothing is left behind: no file, and no
directory this call created."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rseq_gen.errors import os_error_words


class WriteError(Exception):
    """``target`` (a file the caller asked for) could not be written because
    of ``failing`` (the target itself or one of its directories, never an
    internal temporary file): ``words`` says what is wrong with it."""

    def __init__(self, target: Path, failing: Path, words: str):
        super().__init__(f"{failing}: {words}")
        self.target, self.failing, self.words = Path(target), Path(failing), words


def _make_dirs(directory: Path, target: Path, created: list[Path]) -> None:
    """Create ``directory`` and its missing parents, recording each one made."""
    missing = []
    d = directory
    while not d.exists():
        if d.is_symlink():  # a dangling link: mkdir would fail with EEXIST
            raise WriteError(target, d, "is a broken symbolic link")
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    if not d.is_dir():
        raise WriteError(target, d, "not a directory")
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise WriteError(target, d, "not a directory") from None
            continue  # made meanwhile by someone else: not ours to remove
        except OSError as exc:
            raise WriteError(target, d, os_error_words(exc)) from None
        created.append(d)


def _prepare(path: Path, text: str, created: list[Path]) -> str:
    """Write ``text`` to a temp file next to ``path``; return its name."""
    if path.is_dir():
        raise WriteError(path, path, "is a directory")
    _make_dirs(path.parent, path, created)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        # The temp file's name means nothing to the user: name the directory
        # the file was to go to.
        raise WriteError(path, path.parent, os_error_words(exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
    except OSError as exc:
        os.unlink(tmp)
        raise WriteError(path, path, os_error_words(exc)) from None
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_all_atomic(files: dict[Path, str]) -> None:
    """Write several files: all temp files first, then one rename each, so a
    failure (a bad directory, a read-only file system, a full disk) leaves
    no output file touched and removes the directories it made. Raises
    WriteError."""
    staged: list[tuple[str, Path]] = []
    created: list[Path] = []
    try:
        for path, text in files.items():
            staged.append((_prepare(Path(path), text, created), Path(path)))
        for i, (tmp, path) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except OSError as exc:
                staged = staged[i:]
                raise WriteError(path, path, os_error_words(exc)) from None
        staged = []
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: something else put files there meanwhile
        raise


def write_atomic(path: Path, text: str) -> None:
    write_all_atomic({Path(path): text})
