"""Kernel and glibc rseq ABI facts, as data.

Sources: include/uapi/linux/rseq.h (layout and constants), kernel/rseq.c
(length rules), glibc sysdeps/unix/sysv/linux/sys/rseq.h and rseq-internal.h
(the __rseq_size history). See shared/reference/rseq-abi.md sections 1 and 2.
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

#: Registration length and alignment the generated code uses: the original
#: size, accepted by every kernel since 4.18 and by the 7.1 "legacy" mode.
AREA_SIZE = 32
AREA_ALIGN = 32

#: struct rseq_cs: version, flags, start_ip, post_commit_offset, abort_ip.
CS_DESCRIPTOR_SIZE = 32
CS_DESCRIPTOR_ALIGN = 32

CPU_ID_UNINITIALIZED = -1
CPU_ID_REGISTRATION_FAILED = -2
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
