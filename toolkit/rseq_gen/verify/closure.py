"""``verify --closure``: find the libraries a program loads the way the
dynamic loader does, without running anything.

Search order for a DT_NEEDED name without a slash (glibc ld.so): DT_RPATH of
the requesting object and of its loaders (only while the requester has no
DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH of the requester, /etc/ld.so.cache,
then the default directories. ``$ORIGIN`` is the directory of the object
that carries the path. Candidates of another ELF class or machine are
skipped, as ld.so does.

Rules: RSEQ701 closure-unresolved.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass, field

from rseq_gen.elf import ElfError, map_file, open_elf

LD_SO_CACHE = "/etc/ld.so.cache"
#: Names musl's dynamic linker (ld-musl-<arch>.so.1, which is musl's libc)
#: answers for itself; "*" is the arch.
MUSL_LIBC_NAMES = ("libc.so", "libc.musl-*.so.1")
DF_1_NODEFLIB = 0x800  # -z nodeflib: neither the cache nor the default directories
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"


def _default_dirs(elfclass: int, machine: str) -> list[str]:
    multiarch = {
        "EM_X86_64": "x86_64-linux-gnu", "EM_386": "i386-linux-gnu", "EM_AARCH64": "aarch64-linux-gnu",
        "EM_ARM": "arm-linux-gnueabihf", "EM_PPC64": "powerpc64le-linux-gnu", "EM_S390": "s390x-linux-gnu",
        "EM_RISCV": "riscv64-linux-gnu",
    }.get(machine)
    dirs = []
    if multiarch:
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    if elfclass == 64:
        dirs += ["/lib64", "/usr/lib64"]
    else:
        dirs += ["/lib32", "/usr/lib32"]
    return dirs + ["/lib", "/usr/lib"]


def parse_ld_so_cache(data: bytes) -> dict[str, list[str]]:
    """{soname: [paths...]} from the binary cache (new format, possibly
    behind the old one). Raises ValueError when it cannot be parsed."""
    pos = 0
    if data.startswith(_OLD_MAGIC):
        nlibs = struct.unpack_from("<I", data, 12)[0]
        pos = 16 + nlibs * 12
        pos = (pos + 7) & ~7
    if data[pos:pos + len(_NEW_MAGIC)] != _NEW_MAGIC:
        raise ValueError("no glibc-ld.so.cache1.1 header")
    base = pos
    nlibs, _strlen = struct.unpack_from("<II", data, pos + 20)
    entries = pos + 48
    out: dict[str, list[str]] = {}

    def cstr(off: int) -> str:
        end = data.find(b"\0", off)
        return data[off:end].decode("utf-8", "replace")

    for i in range(nlibs):
        _flags, key, value, _os, _hw = struct.unpack_from("<iIIIQ", data, entries + 24 * i)
        # String offsets are from the start of the new-format header in
        # current glibc; old combined caches used the old header as base.
        k = cstr(key if key < len(data) else key - base)
        v = cstr(value if value < len(data) else value - base)
        out.setdefault(k, []).append(v)
    return out


def _ldconfig_p() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    for line in text.splitlines()[1:]:
        name, sep, path = line.strip().partition(" => ")
        if sep:
            out.setdefault(name.split(" (", 1)[0], []).append(path.strip())
    return out


_CACHE: dict[str, list[str]] | None = None


def ld_cache() -> dict[str, list[str]]:
    global _CACHE
    if _CACHE is None:
        try:
            with open(LD_SO_CACHE, "rb") as f:
                _CACHE = parse_ld_so_cache(f.read())
        except (OSError, ValueError, struct.error):
            _CACHE = _ldconfig_p()
    return _CACHE


@dataclass
class Loaded:
    path: str
    name: str
    needed_by: str | None
    elf: object = None


@dataclass
class Closure:
    root: str
    loaded: list[Loaded] = field(default_factory=list)
    unresolved: list[dict] = field(default_factory=list)


def _expand(path_list: str, origin: str, elfclass: int) -> list[str]:
    out = []
    for p in path_list.split(":"):
        if not p:
            continue
        p = p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        lib = "lib64" if elfclass == 64 else "lib"
        p = p.replace("${LIB}", lib).replace("$LIB", lib)
        out.append(p)
    return out


def _compatible(path: str, elfclass: int, machine: int):
    try:
        elf = open_elf(map_file(path), path)
    except (OSError, ElfError):
        return None
    if elf.elfclass != elfclass or elf.e_machine_code != machine:
        return None
    return elf


def resolve(root_path: str, root_elf, env: dict | None = None, preload=()) -> Closure:
    """The objects ld.so loads for ``root_path``, in symbol lookup order:
    the root, the ``preload`` objects ((path, ElfFile) pairs, as
    LD_PRELOAD names them), then the DT_NEEDED libraries breadth first."""
    env = os.environ if env is None else env
    closure = Closure(root_path)
    elfclass, machine = root_elf.elfclass, root_elf.e_machine_code
    defaults = _default_dirs(elfclass, root_elf.e_machine)
    # $ORIGIN in LD_LIBRARY_PATH means the executable's directory.
    ld_library_path = _expand(env.get("LD_LIBRARY_PATH", ""),
                              os.path.dirname(os.path.realpath(root_path)), elfclass)
    closure.loaded.append(Loaded(root_path, os.path.basename(root_path), None, root_elf))
    by_name: dict[str, Loaded] = {}
    seen_paths = {os.path.realpath(root_path)}

    def load_by_path(path: str, elf, needed_by: str | None) -> Loaded:
        """An object loaded before any DT_NEEDED search: later DT_NEEDED
        entries naming its file or its soname resolve to it."""
        entry = Loaded(path, os.path.basename(path), needed_by, elf)
        closure.loaded.append(entry)
        by_name[entry.name] = entry
        soname = elf.dynamic().get("soname")
        if soname:
            by_name[soname] = entry
        seen_paths.add(os.path.realpath(path))
        return entry

    for path, elf in preload:
        if os.path.realpath(path) not in seen_paths:
            load_by_path(path, elf, None)
    interp = root_elf.interp
    if interp:
        elf = _compatible(interp, elfclass, machine)
        if elf is not None:
            entry = load_by_path(interp, elf, root_path)
            if entry.name.startswith("ld-musl-"):
                # musl's dynamic linker is its libc: it satisfies these names itself.
                for name in MUSL_LIBC_NAMES:
                    by_name[name.replace("*", entry.name[len("ld-musl-"):].split(".so")[0])] = entry
    cache = None
    queue = [(entry, []) for entry in closure.loaded if entry.path != interp]
    while queue:
        obj, loader_rpaths = queue.pop(0)
        dyn = obj.elf.dynamic()
        origin = os.path.dirname(os.path.realpath(obj.path))
        own_rpath = _expand(dyn.get("rpath", ""), origin, elfclass) if dyn.get("rpath") else []
        runpath = _expand(dyn.get("runpath", ""), origin, elfclass) if dyn.get("runpath") else []
        chain_rpaths = loader_rpaths + [own_rpath] if own_rpath else list(loader_rpaths)
        for name in dyn.get("needed", []):
            if name in by_name:
                continue
            searched = []
            found = None
            if "/" in name:
                candidates = [name if os.path.isabs(name) else os.path.join(origin, name)]
            else:
                candidates = []
                if not runpath:
                    for rp in reversed(chain_rpaths):
                        candidates += [os.path.join(d, name) for d in rp]
                candidates += [os.path.join(d, name) for d in ld_library_path]
                candidates += [os.path.join(d, name) for d in runpath]
            for c in candidates:
                searched.append(os.path.dirname(c))
                elf = _compatible(c, elfclass, machine)
                if elf is not None:
                    found = (c, elf)
                    break
            nodeflib = bool(dyn.get("flags_1", 0) & DF_1_NODEFLIB)
            if found is None and "/" not in name and not nodeflib:
                if cache is None:
                    cache = ld_cache()
                searched.append(LD_SO_CACHE)
                for c in cache.get(name, []):
                    elf = _compatible(c, elfclass, machine)
                    if elf is not None:
                        found = (c, elf)
                        break
            if found is None and "/" not in name and not nodeflib:
                for d in defaults:
                    c = os.path.join(d, name)
                    searched.append(d)
                    elf = _compatible(c, elfclass, machine)
                    if elf is not None:
                        found = (c, elf)
                        break
            if found is None:
                closure.unresolved.append({"needed": name, "by": obj.path,
                                           "searched": list(dict.fromkeys(searched))})
                continue
            path, elf = found
            real = os.path.realpath(path)
            entry = Loaded(path, name, obj.path, elf)
            by_name[name] = entry
            if real in seen_paths:
                continue
            seen_paths.add(real)
            closure.loaded.append(entry)
            queue.append((entry, chain_rpaths))
    return closure


def unresolved_findings(unresolved: list[dict], add) -> None:
    """RSEQ701 closure-unresolved for each DT_NEEDED name the search did
    not find (``add(rule_id, **fields)``)."""
    for u in unresolved:
        add("RSEQ701", needed=u["needed"], by=u["by"], searched=", ".join(u["searched"]) or "nowhere")
