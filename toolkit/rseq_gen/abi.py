"""Kernel and glibc rseq ABI facts, as data.

Sources: include/uapi/linux/rseq.h (layout and constants), kernel/rseq.c
(length rules), glibc sysdeps/unix/sysv/linux/sys/rseq.h and rseq-internal.h
(the __rseq_size history), and the glibc manual's "Restartable Sequences".
"""

from __future__ import annotations

from typing import NamedTuple


class AreaField(NamedTuple):
    name: str
    offset: int
    size: int
    writer: str  # "kernel": userspace must never store to it once registered


#: The first 32 bytes of ``struct rseq`` (the original ABI size), which is the
#: area the generated code declares and registers.
AREA_FIELDS = (
    AreaField("cpu_id_start", 0, 4, "kernel"),
    AreaField("cpu_id", 4, 4, "kernel"),
    AreaField("rseq_cs", 8, 8, "user"),
    AreaField("flags", 16, 4, "kernel"),
    AreaField("node_id", 20, 4, "kernel"),
    AreaField("mm_cid", 24, 4, "kernel"),
    AreaField("slice_ctrl", 28, 4, "user"),
)
FIELD = {f.name: f for f in AREA_FIELDS}

#: The original struct rseq: the smallest area and length the kernel
#: accepts (every kernel since 4.18), and 7.1's "legacy" mode.
AREA_SIZE = 32
AREA_ALIGN = 32

#: Bytes of the slice_ctrl field (7.0+): request is written by userspace,
#: granted by the kernel (Documentation/userspace-api/rseq.rst).
SLICE_REQUEST_OFFSET = 28
SLICE_GRANTED_OFFSET = 29
#: prctl(PR_RSEQ_SLICE_EXTENSION, GET | SET, PR_RSEQ_SLICE_EXT_ENABLE, 0, 0)
#: and the rseq_slice_yield syscall (the same number on every architecture).
PR_RSEQ_SLICE_EXTENSION = 79
PR_RSEQ_SLICE_EXTENSION_GET = 1
PR_RSEQ_SLICE_EXTENSION_SET = 2
PR_RSEQ_SLICE_EXT_ENABLE = 1
NR_RSEQ_SLICE_YIELD = 471
#: errno of the slice prctl on a kernel built without
#: CONFIG_RSEQ_SLICE_EXTENSION, or booted with it off (kernel-internal ENOTSUPP).
ENOTSUPP = 524
#: rseq->flags bits the kernel sets at registration (7.0+).
FLAG_SLICE_EXT_AVAILABLE = 1 << 4
FLAG_SLICE_EXT_ENABLED = 1 << 5


class RegistrationMode(NamedTuple):
    """How long a registration this module makes is (``--registration``)."""
    name: str
    #: Size and alignment of the areas the module registers itself: the
    #: largest length the generated code accepts (a kernel asking for more
    #: gets the 32-byte legacy registration).
    area_size: int
    area_align: int
    #: Register more than 32 bytes only when AT_RSEQ_FEATURE_SIZE is at least
    #: this; None: never (always 32).
    extend_from_feature_size: int | None
    doc: str


#: 64 bytes aligned 64 holds every length kernels ask for so far: feature
#: size 33 on 7.x rounds up to AT_RSEQ_ALIGN = 64 (and any feature size up to
#: 64 keeps that alignment).
EXTENDED_AREA_SIZE = 64
EXTENDED_AREA_ALIGN = 64

REGISTRATION_MODES = {
    m.name: m for m in (
        RegistrationMode(
            "legacy", AREA_SIZE, AREA_ALIGN, None,
            "32 bytes, the original size: accepted by every kernel since 4.18; on 7.1+ this is "
            "legacy mode (the kernel rewrites the ids after every switch, no time-slice "
            "extension)."),
        RegistrationMode(
            "extended", EXTENDED_AREA_SIZE, EXTENDED_AREA_ALIGN, 0,
            "max(AT_RSEQ_FEATURE_SIZE, 32) rounded up to AT_RSEQ_ALIGN, on an area of 64 bytes "
            "aligned 64: 64 bytes on 7.x, which is v2 mode there (ids updated only when they "
            "change, kernel-owned fields read-only, time-slice extension possible); 32 on older "
            "kernels, and 32 whenever the kernel asks for more than the area holds."),
        RegistrationMode(
            "auto", EXTENDED_AREA_SIZE, EXTENDED_AREA_ALIGN, AREA_SIZE + 1,
            "extended when the kernel's AT_RSEQ_FEATURE_SIZE is above 32 (7.0+), legacy "
            "otherwise. Same lengths as extended on every kernel so far."),
    )
}
DEFAULT_REGISTRATION = "legacy"

#: struct rseq_cs: version, flags, start_ip, post_commit_offset, abort_ip.
CS_DESCRIPTOR_SIZE = 32
CS_DESCRIPTOR_ALIGN = 32

CPU_ID_UNINITIALIZED = -1
CPU_ID_REGISTRATION_FAILED = -2
#: mm_cid of the null area executable code points at before it knows the
#: thread's area: no concurrency id (they stay below the possible CPUs), and
#: not -1 either, which the x86 sequences' registration fold produces.
NULL_AREA_MM_CID = 0x7FFFFFFF
FLAG_UNREGISTER = 1

AT_RSEQ_FEATURE_SIZE = 27
AT_RSEQ_ALIGN = 28
#: Feature size to assume when the auxiliary vector has no AT_RSEQ_FEATURE_SIZE
#: (kernels before 6.3): the 20 bytes up to and including ``flags``.
ORIGINAL_FEATURE_SIZE = 20

#: ``__rseq_size`` values published by glibc that stand for a 32-byte
#: registration whose usable fields are min(32, kernel feature size):
#: 32 (2.35-2.39 releases) and 20 (2.40 and the bug 31965 backports).
GLIBC_SIZES_MEANING_32_BYTE_AREA = (20, 32)

#: The glibc symbols (version node GLIBC_2.35, defined in ld.so).
GLIBC_SYMBOLS = ("__rseq_offset", "__rseq_size", "__rseq_flags")
GLIBC_SYMBOL_VERSION = "GLIBC_2.35"

#: ELF note that marks every generated object (owner name, note type).
NOTE_OWNER = "rseq-gen"
NOTE_TYPE_PROTOCOL = 1
NOTE_SECTION = ".note.rseq-gen"

CS_SECTION = "__rseq_cs"
CS_PTR_SECTION = "__rseq_cs_ptr_array"
EXIT_POINT_SECTION = "__rseq_exit_point_array"
FAILURE_SECTION = "__rseq_failure"
