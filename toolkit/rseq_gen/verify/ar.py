"""A small reader for Unix ``ar`` archives (static libraries).

Handles the GNU variant (``/`` and ``/SYM64/`` symbol indexes, ``//`` long
name table, ``/NNN`` names), the BSD variant (``#1/NN`` names stored before
the data, ``__.SYMDEF`` indexes) and GNU thin archives (``!<thin>``: members
live in separate files next to the archive). Written here rather than taken
from a package so a bad member is reported and the other members still read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

AR_MAGIC = b"!<arch>\n"
THIN_MAGIC = b"!<thin>\n"
HEADER_SIZE = 60
_INDEX_NAMES = {"/", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED", "__.SYMDEF_64", "__.SYMDEF_64 SORTED"}


class ArchiveError(Exception):
    """The archive itself is unreadable (one line)."""


@dataclass
class Member:
    name: str
    offset: int          # offset of the member's header in the archive
    data: object | None  # bytes / memoryview of the contents, None when unreadable
    error: str | None = None


def is_archive(head: bytes) -> bool:
    return head[:8] in (AR_MAGIC, THIN_MAGIC)


def read_members(data, path: str | None = None) -> list[Member]:
    """Every real member (symbol indexes and name tables skipped). A damaged
    member header ends the walk with one Member carrying ``error``; a member
    whose contents cannot be read (thin member missing) carries ``error``."""
    magic = bytes(data[:8])
    if magic not in (AR_MAGIC, THIN_MAGIC):
        raise ArchiveError("not an ar archive (bad magic)")
    thin = magic == THIN_MAGIC
    size_total = len(data)
    pos = 8
    longnames = b""
    out: list[Member] = []
    while pos < size_total:
        if pos + HEADER_SIZE > size_total:
            if bytes(data[pos:]).strip(b"\n") == b"":
                break
            out.append(Member(f"<header at {pos}>", pos, None,
                              f"truncated member header at offset {pos}"))
            break
        hdr = bytes(data[pos:pos + HEADER_SIZE])
        if hdr[58:60] != b"`\n":
            out.append(Member(f"<header at {pos}>", pos, None,
                              f"bad member header at offset {pos} (no end marker)"))
            break
        raw_name = hdr[0:16].decode("latin-1").rstrip(" ")
        try:
            size = int(hdr[48:58].decode("ascii").strip() or "0")
        except ValueError:
            out.append(Member(raw_name or f"<header at {pos}>", pos, None,
                              f"bad member size field at offset {pos}"))
            break
        start = pos + HEADER_SIZE
        name = raw_name
        name_len_in_data = 0
        if raw_name.startswith("#1/"):
            try:
                name_len_in_data = int(raw_name[3:])
            except ValueError:
                name_len_in_data = 0
            name = bytes(data[start:start + name_len_in_data]).rstrip(b"\0").decode("utf-8", "replace")
        elif raw_name == "//":
            longnames = bytes(data[start:start + size])
            pos = start + size + (size & 1)
            continue
        elif raw_name.startswith("/") and raw_name[1:].isdigit():
            off = int(raw_name[1:])
            end = longnames.find(b"\n", off)
            name = longnames[off:end if end >= 0 else len(longnames)].decode("utf-8", "replace")
            if name.endswith("/"):
                name = name[:-1]
        elif raw_name.endswith("/") and raw_name not in ("/", "/SYM64/"):
            name = raw_name[:-1]
        if name in _INDEX_NAMES or raw_name in _INDEX_NAMES:
            pos = start + size + (size & 1)
            continue
        if thin:
            # Thin archive: the data lives in a file named relative to the archive.
            member_path = name if os.path.isabs(name) or path is None else \
                os.path.join(os.path.dirname(path), name)
            try:
                with open(member_path, "rb") as f:
                    out.append(Member(name, pos, f.read()))
            except OSError as exc:
                out.append(Member(name, pos, None, f"thin member {member_path}: {exc.strerror}"))
            pos = start  # thin members have no data in the archive
            continue
        end = start + size
        if end > size_total:
            out.append(Member(name, pos, None,
                              f"truncated: member data ends at {end}, archive has {size_total} bytes"))
            break
        out.append(Member(name, pos, data[start + name_len_in_data:end]))
        pos = end + (size & 1)
    return out
