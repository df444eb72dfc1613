"""The critical-section descriptors (__rseq_cs), their pointer array
(__rseq_cs_ptr_array) and the exit points (__rseq_exit_point_array).

Rules: RSEQ401 cs-section-layout, RSEQ402 cs-version, RSEQ403 cs-flags,
RSEQ404 cs-range, RSEQ405 cs-abort-ip, RSEQ406 cs-signature, RSEQ407
cs-ptr-array, RSEQ408 cs-exit-point, RSEQ801 arch-unknown (the signatures
of a machine without a known RSEQ_SIG are not checked).
"""

from __future__ import annotations

import struct
from collections import Counter

from rseq_gen import abi
from rseq_gen.verify.model import Unit
from rseq_gen.verify.relocs import FieldReader, code_section, fmt_addr


def check_machine(unit: Unit) -> None:
    """A file with descriptors of a machine whose RSEQ_SIG is unknown."""
    if unit.arch is None and unit.elf.sections_named(abi.CS_SECTION):
        unit.add("RSEQ801", machine=unit.elf.e_machine)


def check(unit: Unit):
    """Check the descriptors; returns ({"descriptors": n, "checked": k}, starts)
    where k counts the descriptors whose addresses could be resolved and
    starts lists their start_ip values ((section index or None, value))."""
    elf = unit.elf
    cs_secs = elf.sections_named(abi.CS_SECTION)
    ptr_secs = elf.sections_named(abi.CS_PTR_SECTION)
    exit_secs = elf.sections_named(abi.EXIT_POINT_SECTION)
    counts = {"descriptors": 0, "checked": 0}
    if not (cs_secs or ptr_secs or exit_secs):
        return counts, []
    descriptors = {}  # (sec idx or None, value) of each descriptor -> start ip
    data_cache: dict[int, bytes] = {}
    for sec in cs_secs:
        linked = not elf.is_relocatable
        if sec.addralign < abi.CS_DESCRIPTOR_ALIGN or (linked and sec.addr % abi.CS_DESCRIPTOR_ALIGN):
            unit.add("RSEQ401", section=sec.name, problem=f"is aligned to {sec.addralign}"
                     f"{f' (address {sec.addr:#x})' if linked else ''}, not 32")
        if sec.size % abi.CS_DESCRIPTOR_SIZE:
            unit.add("RSEQ401", section=sec.name,
                     problem=f"is {sec.size} bytes, not a multiple of the 32-byte descriptor")
        if sec.nobits:
            continue
        res = FieldReader(unit, sec)
        for i in range(sec.size // abi.CS_DESCRIPTOR_SIZE):
            off = i * abi.CS_DESCRIPTOR_SIZE
            key = (sec.index, off) if elf.is_relocatable else (None, sec.addr + off)
            version, flags = res.u32(off), res.u32(off + 4)
            index = f"{len(descriptors)} ({sec.name}+{off:#x})"
            if version != 0:
                unit.add("RSEQ402", section=sec.name, address=key[1], index=index, value=version)
            if flags != 0:
                unit.add("RSEQ403", section=sec.name, address=key[1], index=index, value=flags)
            start = res.pointer(off + 8)
            pco = res.offset_field(off + 16)
            abort_ip = res.pointer(off + 24)
            descriptors[key] = start
            counts["descriptors"] += 1
            if start is None or pco is None or abort_ip is None:
                continue
            counts["checked"] += 1
            _check_descriptor(unit, sec, key[1], index, start, pco, abort_ip, data_cache)
    _check_ptr_array(unit, cs_secs, ptr_secs, descriptors)
    _check_exit_points(unit, exit_secs, descriptors)
    return counts, [s for s in descriptors.values() if s is not None]


def _check_descriptor(unit, sec, address, index, start, pco, abort_ip, data_cache) -> None:
    """One descriptor: start_ip and post_commit_offset in executable code (RSEQ404), abort_ip
    outside the critical section (RSEQ405) and preceded by the signature (RSEQ406)."""
    elf = unit.elf
    ssec, soff = code_section(elf, start)
    if ssec is None or not ssec.executable:
        unit.add("RSEQ404", section=sec.name, address=address, index=index,
                 problem=f"start_ip {fmt_addr(elf, start)} is not in an executable section")
    elif soff + pco > ssec.size:
        unit.add("RSEQ404", section=sec.name, address=address, index=index,
                 problem=f"start_ip + post_commit_offset ({fmt_addr(elf, start)} + {pco:#x}) "
                         f"runs past the end of {ssec.name}")
    asec, aoff = code_section(elf, abort_ip)
    if asec is None or not asec.executable:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {fmt_addr(elf, abort_ip)} is not in an executable section")
        return
    if ssec is not None and asec.index == ssec.index and soff <= aoff < soff + pco:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {fmt_addr(elf, abort_ip)} lies inside the critical section "
                         f"[{fmt_addr(elf, start)}, +{pco:#x})")
        return
    arch = unit.arch
    if arch is None or asec.nobits:
        return
    if aoff > asec.size:
        unit.add("RSEQ405", section=sec.name, address=address, index=index,
                 problem=f"abort_ip {fmt_addr(elf, abort_ip)} is past the end of {asec.name}")
        return
    if aoff < 4:
        found = "nothing (abort_ip is at the start of its section)"
    else:
        if asec.index not in data_cache:
            data_cache[asec.index] = elf.section_data(asec)
        word = struct.unpack_from(elf.bo + "I", data_cache[asec.index], aoff - 4)[0]
        if word == arch.sig_for(elf.endian):
            return
        found = f"{word:#010x}"
    unit.add("RSEQ406", section=sec.name, address=address, index=index,
             abort=fmt_addr(elf, abort_ip), found=found, expected=arch.sig_for(elf.endian),
             arch=arch.name, endian=elf.endian)


def _records(unit, secs, rule: str, size: int):
    """(section, resolver, index) of every fixed-size record in secs; a
    section whose size is not a multiple of the record is reported under
    rule, and its whole records are still read."""
    for sec in secs:
        if sec.size % size:
            unit.add(rule, section=sec.name,
                     problem=f"{sec.name} is {sec.size} bytes, not a multiple of {size}")
        if sec.nobits:
            continue
        res = FieldReader(unit, sec)
        for i in range(sec.size // size):
            yield sec, res, i


def _check_ptr_array(unit, cs_secs, ptr_secs, descriptors) -> None:
    """The pointer array holds each descriptor exactly once, and nothing else (RSEQ407)."""
    elf = unit.elf
    if not ptr_secs:
        if descriptors:
            unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                     problem=f"{len(descriptors)} descriptor(s) in {abi.CS_SECTION} but no "
                             f"{abi.CS_PTR_SECTION} section")
        return
    pointed = []
    for sec, res, i in _records(unit, ptr_secs, "RSEQ407", 8):
        target = res.pointer(i * 8)
        if target is None:
            continue
        if elf.is_relocatable:
            key = target
        else:
            key = (None, target[1])
        if key not in descriptors:
            unit.add("RSEQ407", section=sec.name, address=(sec.addr + i * 8),
                     problem=f"entry {i} points at {fmt_addr(elf, target)}, which is not the "
                             f"start of a descriptor in {abi.CS_SECTION}")
        pointed.append(key)
    counts = Counter(pointed)
    for k in sorted((k for k, n in counts.items() if n > 1), key=lambda k: (k[0] or 0, k[1])):
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"descriptor {fmt_addr(elf, k)} is listed {counts[k]} times")
    if len(pointed) != len(descriptors):
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"{len(pointed)} pointer(s) for {len(descriptors)} descriptor(s)")
    missing = [k for k in descriptors if k not in counts]
    for k in missing[:10]:
        unit.add("RSEQ407", section=abi.CS_PTR_SECTION,
                 problem=f"descriptor {fmt_addr(elf, k)} has no pointer in {abi.CS_PTR_SECTION}")


def _check_exit_points(unit, exit_secs, descriptors) -> None:
    """Each exit point starts at a descriptor's start_ip and exits into executable code (RSEQ408)."""
    elf = unit.elf
    starts = {v for v in descriptors.values() if v is not None}
    for sec, res, i in _records(unit, exit_secs, "RSEQ408", 16):
        start = res.pointer(i * 16)
        exit_ip = res.pointer(i * 16 + 8)
        if start is None or exit_ip is None:
            continue
        if starts and start not in starts:
            unit.add("RSEQ408", section=sec.name,
                     problem=f"exit point {i} starts at {fmt_addr(elf, start)}, "
                             "not the start_ip of any descriptor")
        xsec, _ = code_section(elf, exit_ip)
        if xsec is None or not xsec.executable:
            unit.add("RSEQ408", section=sec.name,
                     problem=f"exit point {i} exits to {fmt_addr(elf, exit_ip)}, "
                             "not in an executable section")
