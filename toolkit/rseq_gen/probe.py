"""``rseq-gen probe``: what this machine, kernel, libc and sandbox do about
rseq, and which protocol to generate for it. No compiler: ctypes only.

Two halves, so tests can feed recorded inputs:
- ``gather()`` reads the live process into a ``ProbeInputs`` record;
- ``decide(inputs)`` is a pure function from that record to a ``Decision``
  (findings, warnings and the recommended protocol).

Facts used (the kernel's kernel/rseq.c, glibc's sys/rseq.h): rseq(NULL, 0, 0, 0) fails with
EINVAL on every kernel that has rseq (len 0 is invalid, and a thread that
glibc already registered gets EINVAL for a different area), ENOSYS without
CONFIG_RSEQ; a seccomp filter or emulator may return ENOSYS/EPERM instead
(section 1.3, 6, 7.5). glibc >= 2.35 exports __rseq_offset/__rseq_size from
ld.so; __rseq_size == 0 means it did not register; its area is thread
pointer + __rseq_offset, and cpu_id there is -2 when registration failed or
was disabled (section 2).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import re
import struct
import subprocess
from dataclasses import asdict, dataclass, field

from rseq_gen import abi
from rseq_gen.arches import ARCHES
from rseq_gen.kernel_problems import problems_for

AT_SECURE = 23

#: The thread-pointer stubs of rseq_gen.arches (``Arch.tp_stub``), by
#: architecture. Executed from an mmap'ed page through ctypes; the area is
#: then read through /proc/self/mem, so a wrong thread pointer cannot crash
#: the probe, only fail the checks.
TP_STUBS: dict[str, bytes] = {a.name: a.tp_stub for a in ARCHES.values() if a.tp_stub is not None}

ARCH_SET_FS, ARCH_GET_FS = 0x1002, 0x1003
NR_ARCH_PRCTL_X86_64 = 158


@dataclass
class ProbeInputs:
    """Everything the decision depends on, as recorded from a process."""
    machine: str = ""                       # uname -m as the process sees it
    arch: str | None = None                 # rseq-gen arch name, None if unsupported
    kernel_release: str = ""
    #: errno of rseq(NULL, 0, 0, 0); 0 if it (impossibly) succeeded; None: not tried
    rseq_errno: int | None = None
    at_rseq_feature_size: int = 0
    at_rseq_align: int = 0
    at_secure: bool = False
    libc: str = "unknown"                   # "glibc", "musl", "unknown"
    libc_version: str | None = None
    #: glibc's __rseq_size / __rseq_offset (None: symbols absent)
    rseq_size: int | None = None
    rseq_offset: int | None = None
    #: how the thread pointer was found ("arch_prctl", "stub", ...; None: not found)
    tp_method: str | None = None
    #: the libc area (thread pointer + __rseq_offset) as read: cpu_id_start, cpu_id
    area_cpu_id_start: int | None = None
    area_cpu_id: int | None = None
    area_error: str | None = None
    sched_getcpu: int | None = None
    #: GLIBC_TUNABLES glibc.pthread.rseq as set in the environment (None: unset)
    tunable: str | None = None
    seccomp_mode: int | None = None         # 0 none, 1 strict, 2 filter
    seccomp_filters: int | None = None
    #: "qemu-user", "valgrind" or None, and what showed it
    emulator: str | None = None
    emulator_evidence: str = ""
    #: length of the libc's live registration, found by re-registering its area
    #: (EBUSY answers only the exact registration); None: not probed
    registration_len: int | None = None
    #: rseq->flags of the libc area (7.0+: slice-extension bits 4 and 5)
    area_flags: int | None = None
    #: prctl(PR_RSEQ_SLICE_EXTENSION, GET): the value (>= 0), or the errno
    slice_prctl: int | None = None
    slice_errno: int | None = None


@dataclass
class Decision:
    kernel: str            # "available", "absent", "blocked", "unknown"
    kernel_detail: str
    libc_registered: bool | None
    libc_detail: str
    tunable_detail: str
    seccomp_detail: str
    emulator_detail: str
    protocol: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    #: the libc's registration: its length and mode (v2: > 32 bytes on 7.1+)
    registration_detail: str = ""
    v2_mode: bool | None = None
    #: time-slice extension: "available", "unavailable" or "unknown"
    slice_extension: str = "unknown"
    slice_detail: str = ""
    #: known kernel problems (rseq_gen.kernel_problems) this kernel is in
    #: the range of: {"id", "status", "title", "generated_code"}
    kernel_problems: list[dict] = field(default_factory=list)


# ---- decision (pure) ------------------------------------------------------

def _errname(e: int | None) -> str:
    if e is None:
        return "not tried"
    if e == 0:
        return "success"
    return errno.errorcode.get(e, str(e))


def tunable_disables(inp: ProbeInputs) -> bool:
    """glibc.pthread.rseq=0 is set and glibc honours it (not AT_SECURE)."""
    return inp.libc == "glibc" and inp.tunable == "0" and not inp.at_secure


def decide(inp: ProbeInputs) -> Decision:
    warnings: list[str] = []
    seccomp_filter = (inp.seccomp_mode or 0) == 2

    # Kernel.
    e = inp.rseq_errno
    if e == errno.EINVAL or e == 0:
        kernel = "available"
        kernel_detail = "rseq(NULL, 0, 0, 0) failed with EINVAL: the kernel implements rseq"
    elif e == errno.ENOSYS:
        if inp.emulator:
            kernel = "unknown"
            kernel_detail = (f"ENOSYS from {inp.emulator}, which does not implement rseq; "
                             "says nothing about the kernel underneath")
        elif seccomp_filter:
            kernel = "blocked"
            kernel_detail = ("ENOSYS with a seccomp filter installed: most likely the filter "
                             "(or a kernel without CONFIG_RSEQ)")
        else:
            kernel = "absent"
            kernel_detail = "ENOSYS: kernel built without CONFIG_RSEQ, or older than 4.18"
    elif e == errno.EPERM:
        kernel = "blocked"
        kernel_detail = ("EPERM: denied by " + ("the seccomp filter" if seccomp_filter
                                                else "a security module or sandbox"))
    elif e is None:
        kernel = "unknown"
        kernel_detail = (f"not tried: no rseq syscall number known for machine {inp.machine!r}")
    else:
        kernel = "unknown"
        kernel_detail = f"rseq(NULL, 0, 0, 0) failed with unexpected {_errname(e)}"

    # libc.
    registered: bool | None
    if inp.libc == "glibc":
        ver = f"glibc {inp.libc_version}" if inp.libc_version else "glibc"
        if inp.rseq_size is None:
            registered = False
            libc_detail = f"{ver} has no __rseq_size/__rseq_offset (added in 2.35): it never registers"
        elif inp.rseq_size == 0:
            registered = False
            if tunable_disables(inp):
                why = "disabled by GLIBC_TUNABLES=glibc.pthread.rseq=0"
            elif kernel in ("absent", "blocked") or (kernel == "unknown" and inp.emulator):
                why = f"its registration failed ({_errname(e)})"
            else:
                why = "its registration failed or was disabled"
            libc_detail = f"{ver}: __rseq_size == 0, {why}"
            if inp.area_cpu_id is not None:
                libc_detail += f"; cpu_id in its area is {inp.area_cpu_id}"
        else:
            cpu = inp.area_cpu_id
            if cpu is not None and cpu >= 0:
                registered = True
                libc_detail = (f"{ver} registered this thread: __rseq_size={inp.rseq_size}, "
                               f"__rseq_offset={inp.rseq_offset}, cpu_id={cpu}"
                               + (f" (sched_getcpu {inp.sched_getcpu})" if inp.sched_getcpu is not None else ""))
            elif cpu is not None:
                registered = False
                libc_detail = (f"{ver}: __rseq_size={inp.rseq_size} but cpu_id={cpu} in its area: "
                               "this thread is not registered")
            else:
                registered = True
                libc_detail = (f"{ver} registered (__rseq_size={inp.rseq_size}, "
                               f"__rseq_offset={inp.rseq_offset}); its area could not be read: "
                               f"{inp.area_error or 'thread pointer unknown'}")
    elif inp.libc == "musl":
        registered = False
        libc_detail = f"musl {inp.libc_version or ''}".rstrip() + ": never registers rseq"
    else:
        registered = None
        libc_detail = "libc not recognised (neither glibc nor musl)"

    # Tunable.
    if inp.tunable is None:
        tunable_detail = "GLIBC_TUNABLES does not set glibc.pthread.rseq (default: 1, glibc registers)"
    elif inp.libc != "glibc":
        tunable_detail = f"glibc.pthread.rseq={inp.tunable} is set but this is not glibc: ignored"
    elif inp.at_secure:
        tunable_detail = f"glibc.pthread.rseq={inp.tunable} is set but ignored (AT_SECURE process)"
    elif inp.tunable in ("0", "1"):
        tunable_detail = f"glibc.pthread.rseq={inp.tunable} in effect"
    else:
        tunable_detail = f"glibc.pthread.rseq={inp.tunable!r} is out of range (0..1): ignored"

    # seccomp.
    mode = inp.seccomp_mode
    if mode is None:
        seccomp_detail = "unknown (no Seccomp line in /proc/self/status)"
    elif mode == 0:
        seccomp_detail = "none"
    elif mode == 1:
        seccomp_detail = "strict mode"
    else:
        seccomp_detail = f"filter mode ({inp.seccomp_filters or '?'} filter(s))"

    emulator_detail = (f"{inp.emulator} ({inp.emulator_evidence})" if inp.emulator
                       else "none detected")

    # Warnings.
    if registered and kernel == "blocked":
        warnings.append("glibc registered this thread but rseq is now denied: every new thread's "
                        "registration will fail and glibc aborts pthread_create with 'Fatal glibc "
                        "error: rseq registration failed' (a filter installed after startup)")
    if inp.emulator:
        warnings.append(f"running under {inp.emulator}: rseq is never available here; the findings "
                        "describe the emulator, not the target machine")
    if inp.tunable == "0" and inp.libc == "glibc" and inp.at_secure:
        warnings.append("AT_SECURE: glibc ignores GLIBC_TUNABLES, so glibc.pthread.rseq=0 has no effect")
    if kernel == "available" and inp.at_rseq_feature_size == 0:
        warnings.append("no AT_RSEQ_FEATURE_SIZE (kernel < 6.3): node_id and mm_cid are not maintained")

    problems = [{"id": p.id, "status": st, "title": p.title, "generated_code": p.generated_code}
                for p, st in problems_for(inp.kernel_release, inp.machine)]
    for p in problems:
        warnings.append(f"kernel {inp.kernel_release} on {inp.machine} is {p['status']} by a known problem: "
                        f"{p['title']} ({p['id']}; docs/support-matrix.md). {p['generated_code']}")

    registration_detail, v2_mode = _registration(inp, registered)
    slice_state, slice_detail = _slice_extension(inp)

    # Recommendation: compat everywhere; the reason says what it will do here.
    if registered:
        reason = ("glibc registered this thread, and compat uses glibc's area (thread pointer + "
                  "__rseq_offset) with no syscall; where glibc does not register (musl, "
                  "glibc < 2.35, glibc.pthread.rseq=0) it registers the shared __rseq_abi itself, "
                  "refcounted, so other compat/refcount modules in the process share it")
    elif kernel == "available":
        who = ("glibc.pthread.rseq=0 is in effect" if tunable_disables(inp)
               else "musl never registers" if inp.libc == "musl"
               else "glibc here has no rseq support" if inp.libc == "glibc" and inp.rseq_size is None
               else "libc did not register")
        reason = (f"{who}, so compat registers the shared __rseq_abi itself (only while its cpu_id "
                  "is -1, with __rseq_refcount for dlopen'd co-adopters), and still switches to "
                  "glibc's area on machines where glibc registers")
    else:
        why = {"absent": "the kernel has no rseq",
               "blocked": f"rseq is denied ({_errname(e)} from a sandbox)",
               }.get(kernel, f"rseq did not answer ({_errname(e)})" if e is not None
                     else "rseq could not be tried")
        if inp.emulator:
            why = f"{inp.emulator} does not implement rseq"
        reason = (f"no protocol can register rseq here ({why}); compat "
                  "falls back to sched_getcpu and atomic per-CPU operations, which stay exact, and "
                  "uses rseq (glibc's or its own) wherever the code runs with it")
    return Decision(kernel, kernel_detail, registered, libc_detail, tunable_detail, seccomp_detail,
                    emulator_detail, "compat", reason, warnings, registration_detail, v2_mode,
                    slice_state, slice_detail, problems)


#: First kernel with the legacy / v2 split (Documentation/userspace-api/rseq.rst,
#: "Optimized RSEQ V2"): a registration longer than 32 bytes is v2 mode.
V2_MODE_SINCE = (7, 1)


def kernel_version(release: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def extended_length(feature_size: int, align: int) -> int:
    """What --registration extended registers: max(feature size, 32)
    rounded up to max(AT_RSEQ_ALIGN, 32)."""
    size = max(feature_size, abi.AREA_SIZE)
    align = max(align, abi.AREA_ALIGN)
    return -(-size // align) * align


def _registration(inp: ProbeInputs, registered: bool | None) -> tuple[str, bool | None]:
    version = kernel_version(inp.kernel_release)
    v2_kernel = version is not None and version >= V2_MODE_SINCE
    if inp.at_rseq_feature_size > abi.AREA_SIZE:
        extended = extended_length(inp.at_rseq_feature_size, inp.at_rseq_align)
        hint = (f"; --registration extended registers {extended} bytes here"
                + (" (v2 mode)" if v2_kernel else ""))
    else:
        hint = "; --registration extended registers 32 bytes here (feature size <= 32)"
    if not registered or inp.registration_len is None:
        return "libc registration not probed (no libc registration on this thread)" + hint, None
    length = inp.registration_len
    if length <= 0:
        return f"the libc area answered no registration length (probe result {length})" + hint, None
    if not v2_kernel:
        mode = "kernel before 7.1: one mode for every length"
        v2 = False
    elif length > abi.AREA_SIZE:
        mode = ("v2 mode: the kernel updates the ids only when they change and kills a process "
                "that stores to cpu_id_start, cpu_id, node_id or mm_cid")
        v2 = True
    else:
        mode = "legacy mode (ids rewritten after every switch)"
        v2 = False
    return f"the libc registered {length} bytes ({mode})" + hint, v2


def _slice_extension(inp: ProbeInputs) -> tuple[str, str]:
    flags = ""
    if inp.area_flags is not None:
        bits = [name for name, bit in (("available", abi.FLAG_SLICE_EXT_AVAILABLE),
                                       ("enabled", abi.FLAG_SLICE_EXT_ENABLED)) if inp.area_flags & bit]
        flags = f"; rseq->flags={inp.area_flags:#x} ({', '.join(bits) or 'no slice bits'})"
    if inp.slice_prctl is not None:
        on = "enabled" if inp.slice_prctl & abi.PR_RSEQ_SLICE_EXT_ENABLE else "not enabled yet"
        return "available", f"prctl(PR_RSEQ_SLICE_EXTENSION, GET) = {inp.slice_prctl} ({on} for this thread)" + flags
    e = inp.slice_errno
    if e is None:
        return "unknown", "not tried" + flags
    if e == errno.ENXIO:
        return "available", "ENXIO: the kernel offers it, but this thread has no registration" + flags
    if e == abi.ENOTSUPP:
        return "unavailable", ("ENOTSUPP: the kernel has the interface but not the mechanism "
                               "(built without CONFIG_RSEQ_SLICE_EXTENSION, or rseq_slice_ext=0 on "
                               "its command line)") + flags
    if e == errno.EINVAL:
        return "unavailable", "EINVAL: kernel without time-slice extension (before 7.0)" + flags
    return "unavailable", f"prctl failed with {_errname(e)}" + flags


# ---- emulator detection (pure over recorded text) ---------------------------

_CPUINFO_FAMILY = (
    (re.compile(r"^vendor_id\s*:\s*(GenuineIntel|AuthenticAMD|HygonGenuine|CentaurHauls)", re.M), "x86"),
    (re.compile(r"^CPU implementer\s*:", re.M), "arm"),
    (re.compile(r"^cpu\s*:\s*POWER", re.M), "ppc"),
    (re.compile(r"^vendor_id\s*:\s*IBM/S390", re.M), "s390"),
    (re.compile(r"^isa\s*:\s*rv", re.M), "riscv"),
    (re.compile(r"^(Model Name|CPU Family)\s*:\s*Loongson", re.M), "loongarch"),
)
_MACHINE_FAMILY = (
    (re.compile(r"^(x86_64|amd64|i[3-6]86)$"), "x86"),
    (re.compile(r"^(aarch64|arm64|aarch64_be|arm.*)$"), "arm"),
    (re.compile(r"^ppc"), "ppc"),
    (re.compile(r"^s390"), "s390"),
    (re.compile(r"^riscv"), "riscv"),
    (re.compile(r"^loongarch"), "loongarch"),
)


def _family(patterns, text: str) -> str | None:
    for pattern, fam in patterns:
        if pattern.search(text):
            return fam
    return None


def detect_emulator(machine: str, cpuinfo: str, maps: str, status_name: str,
                    ld_preload: str) -> tuple[str | None, str]:
    """qemu-user or valgrind, from what the process can read about itself.

    qemu-user fakes uname and /proc/self/{maps,exe,auxv,cmdline} for the
    guest, but not the host's /proc/cpuinfo (for most targets) nor
    /proc/thread-self/maps, and the process name stays qemu-* when qemu is
    started by hand. valgrind preloads vgpreload_*.so into the process."""
    if "vgpreload" in ld_preload or re.search(r"vgpreload_\w+", maps):
        return "valgrind", "vgpreload_*.so is loaded"
    m = re.search(r"(\S*/qemu-[a-z0-9_]+(?:-static)?)$", maps, re.M)
    if m:
        return "qemu-user", f"{m.group(0)} is mapped"
    if status_name.startswith("qemu-"):
        return "qemu-user", f"process name {status_name}"
    host = _family(_CPUINFO_FAMILY, cpuinfo)
    guest = _family(_MACHINE_FAMILY, machine)
    if host and guest and host != guest:
        return "qemu-user", f"uname says {machine} but /proc/cpuinfo describes a {host} CPU"
    return None, ""


# ---- gathering (live) -----------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _status_fields() -> dict[str, str]:
    out = {}
    for line in _read("/proc/self/status").splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _tunable(env: str | None) -> str | None:
    value = None
    for item in (env or "").split(":"):
        key, sep, val = item.partition("=")
        if sep and key.strip() == "glibc.pthread.rseq":
            value = val.strip()  # the last setting wins
    return value


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _libc_identity(libc, maps: str) -> tuple[str, str | None]:
    try:
        fn = libc.gnu_get_libc_version
    except AttributeError:
        fn = None
    if fn is not None:
        fn.restype = ctypes.c_char_p
        return "glibc", fn().decode()
    m = re.search(r"(\S*ld-musl-[\w.-]+\.so\.1)", maps)
    if m:
        version = None
        try:  # the musl loader prints its version when run with no arguments
            p = subprocess.run([m.group(1)], capture_output=True, text=True, timeout=5)
            vm = re.search(r"Version\s+(\S+)", p.stderr + p.stdout)
            version = vm.group(1) if vm else None
        except (OSError, subprocess.TimeoutExpired):
            pass
        return "musl", version
    return "unknown", None


def _ctype_value(libc, ctype, name):
    try:
        return ctype.in_dll(libc, name).value
    except ValueError:
        return None


def _thread_pointer(libc, arch: str | None) -> tuple[int | None, str | None, str | None]:
    """(thread pointer, method, error)."""
    if arch == "x86_64":
        out = ctypes.c_ulong()
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        if syscall(ctypes.c_long(NR_ARCH_PRCTL_X86_64), ctypes.c_long(ARCH_GET_FS),
                   ctypes.byref(out)) == 0:
            return out.value, "arch_prctl(ARCH_GET_FS)", None
        return None, None, f"arch_prctl: {os.strerror(ctypes.get_errno())}"
    stub = TP_STUBS.get(arch or "")
    if stub is None:
        return None, None, f"no way to read the thread pointer from Python on {arch or 'this machine'}"
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError) as exc:
        return None, None, f"no executable page for the thread-pointer stub: {exc}"
    page.write(stub)
    buf = ctypes.c_char.from_buffer(page)
    func = ctypes.CFUNCTYPE(ctypes.c_void_p)(ctypes.addressof(buf))
    tp = func()
    del func, buf
    page.close()
    return tp, "machine-code stub", None


def _read_mem(addr: int, size: int) -> bytes:
    """Read this process's memory without risking a fault."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        data = os.pread(fd, size, addr)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(errno.EIO, "short read")
    return data


def registration_candidates(feature_size: int, align: int, rseq_size: int | None) -> list[int]:
    """Lengths a registration may have: 32, what glibc registers (max of
    __rseq_size and 32), the extended length, and larger powers of two."""
    lens = {abi.AREA_SIZE, max(rseq_size or 0, abi.AREA_SIZE), extended_length(feature_size, align),
            64, 128, 256}
    if feature_size > abi.AREA_SIZE:
        lens.add(feature_size)
    return sorted(lens)


def live_registration_len(libc, arch: str | None, area: int, candidates) -> int | None:
    """The length of the calling thread's live registration of `area`:
    re-registering it exactly fails with EBUSY, any other length with EINVAL
    (kernel/rseq.c rseq_reregister). -1: the thread had none (the probe's
    own registration is undone at once); 0: none of the candidates."""
    if arch is None:
        return None
    facts = ARCHES[arch]
    sig = facts.sig_for("big" if struct.pack("=I", 1)[0] == 0 else "little")
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    for length in candidates:
        ctypes.set_errno(0)
        args = (ctypes.c_long(facts.nr_rseq), ctypes.c_void_p(area), ctypes.c_uint(length))
        if syscall(*args, ctypes.c_int(0), ctypes.c_uint(sig)) == 0:
            syscall(*args, ctypes.c_int(abi.FLAG_UNREGISTER), ctypes.c_uint(sig))
            return -1
        if ctypes.get_errno() == errno.EBUSY:
            return length
    return 0


#: uname -m spellings that share a row's syscall number but are not its own.
_MACHINE_ALIASES = {"aarch64_be": "aarch64", "armv6l": "arm", "armv5tel": "arm"}


def gather() -> ProbeInputs:
    inp = ProbeInputs()
    u = os.uname()
    inp.machine, inp.kernel_release = u.machine, u.release
    inp.arch = next((a.name for a in ARCHES.values() if u.machine in a.machine_names),
                    _MACHINE_ALIASES.get(u.machine))
    libc = _libc()

    if inp.arch is not None:
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        ctypes.set_errno(0)
        r = syscall(ctypes.c_long(ARCHES[inp.arch].nr_rseq), None, ctypes.c_uint(0),
                    ctypes.c_int(0), ctypes.c_uint(0))
        inp.rseq_errno = ctypes.get_errno() if r != 0 else 0

    try:
        getauxval = libc.getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        inp.at_rseq_feature_size = int(getauxval(abi.AT_RSEQ_FEATURE_SIZE))
        inp.at_rseq_align = int(getauxval(abi.AT_RSEQ_ALIGN))
        inp.at_secure = bool(getauxval(AT_SECURE))
    except AttributeError:
        pass

    maps = _read("/proc/self/maps")
    inp.libc, inp.libc_version = _libc_identity(libc, maps)
    inp.rseq_size = _ctype_value(libc, ctypes.c_uint, "__rseq_size")
    inp.rseq_offset = _ctype_value(libc, ctypes.c_ssize_t, "__rseq_offset")
    try:
        inp.sched_getcpu = int(libc.sched_getcpu())
    except AttributeError:
        inp.sched_getcpu = None

    if inp.rseq_offset is not None:
        tp, inp.tp_method, inp.area_error = _thread_pointer(libc, inp.arch)
        if tp is not None:
            try:
                start, cpu = struct.unpack("=ii", _read_mem(tp + inp.rseq_offset, 8))
                inp.area_cpu_id_start, inp.area_cpu_id = start, cpu
                if not (-2 <= cpu < 1 << 16):
                    inp.area_error = (f"implausible cpu_id {cpu} at thread pointer + "
                                      "__rseq_offset: the thread pointer is wrong")
                    inp.area_cpu_id = inp.area_cpu_id_start = None
            except OSError as exc:
                inp.area_error = f"reading thread pointer + __rseq_offset: {exc.strerror or exc}"

    if inp.area_cpu_id is not None and inp.area_cpu_id >= 0 and inp.rseq_size:
        area = tp + inp.rseq_offset
        try:
            inp.area_flags = struct.unpack("=I", _read_mem(area + abi.FIELD["flags"].offset, 4))[0]
        except OSError:
            pass
        inp.registration_len = live_registration_len(
            libc, inp.arch, area, registration_candidates(inp.at_rseq_feature_size, inp.at_rseq_align,
                                                          inp.rseq_size))
    if inp.arch is not None:
        prctl = libc.prctl
        prctl.restype = ctypes.c_int
        ctypes.set_errno(0)
        ul = ctypes.c_ulong
        r = prctl(ctypes.c_int(abi.PR_RSEQ_SLICE_EXTENSION), ul(abi.PR_RSEQ_SLICE_EXTENSION_GET),
                  ul(0), ul(0), ul(0))
        if r >= 0:
            inp.slice_prctl = r
        else:
            inp.slice_errno = ctypes.get_errno()

    inp.tunable = _tunable(os.environ.get("GLIBC_TUNABLES"))
    status = _status_fields()
    if status.get("Seccomp", "").isdigit():
        inp.seccomp_mode = int(status["Seccomp"])
    if status.get("Seccomp_filters", "").isdigit():
        inp.seccomp_filters = int(status["Seccomp_filters"])
    inp.emulator, inp.emulator_evidence = detect_emulator(
        inp.machine, _read("/proc/cpuinfo"), maps + _read("/proc/thread-self/maps"),
        status.get("Name", ""), os.environ.get("LD_PRELOAD", ""))
    return inp


# ---- output ---------------------------------------------------------------

def report_lines(inp: ProbeInputs, d: Decision) -> list[str]:
    feat = (f"AT_RSEQ_FEATURE_SIZE={inp.at_rseq_feature_size}, AT_RSEQ_ALIGN={inp.at_rseq_align}"
            if inp.at_rseq_feature_size else "no AT_RSEQ_FEATURE_SIZE/AT_RSEQ_ALIGN in the auxiliary vector")
    lines = [
        f"machine:  {inp.machine} (rseq-gen arch: {inp.arch or 'unsupported'}), kernel {inp.kernel_release}",
        f"kernel:   {d.kernel}: {d.kernel_detail}",
        f"auxv:     {feat}",
        f"libc:     {d.libc_detail}",
        f"tunable:  {d.tunable_detail}",
        f"seccomp:  {d.seccomp_detail}",
        f"emulator: {d.emulator_detail}",
    ]
    if inp.tp_method or inp.area_error:
        lines.append(f"area:     thread pointer via {inp.tp_method or '-'}"
                     + (f"; {inp.area_error}" if inp.area_error else
                        f"; cpu_id_start={inp.area_cpu_id_start}, cpu_id={inp.area_cpu_id}"))
    lines.append(f"length:   {d.registration_detail}")
    lines.append(f"slice:    time-slice extension {d.slice_extension}: {d.slice_detail}")
    lines += [f"warning:  {w}" for w in d.warnings]
    lines.append(f"recommended protocol: {d.protocol} ({d.reason})")
    return lines


def configure_parser(sub) -> None:
    p = sub.add_parser("probe", help="report rseq support on this machine and recommend a protocol",
                       description="Check the kernel, libc, GLIBC_TUNABLES, seccomp and emulators "
                                   "for rseq, and recommend a protocol. Needs no compiler.")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    inp = gather()
    d = decide(inp)
    if args.json:
        print(json.dumps({"inputs": asdict(inp), "decision": asdict(d)}, indent=2, sort_keys=True))
    else:
        print("\n".join(report_lines(inp, d)))
    return 0
