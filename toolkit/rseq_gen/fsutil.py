"""Atomic file output: every file rseq-gen writes appears whole or not at all,
and a set of files is written only once all of them could be prepared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _prepare(path: Path, text: str) -> str:
    """Write ``text`` to a temp file next to ``path``; return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_all_atomic(files: dict[Path, str]) -> None:
    """Write several files: all temp files first, then one rename each, so a
    failure (a bad directory, a full disk) leaves no output file touched."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            staged.append((_prepare(Path(path), text), Path(path)))
    except BaseException:
        for tmp, _ in staged:
            os.unlink(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    write_all_atomic({Path(path): text})
