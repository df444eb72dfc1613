"""The host side of tests/helpers/kernels.py that can be checked without booting:
the kernel-line table, the initramfs each machine gets, and reading results
back from a console the kernel writes to as well."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import kernels
from helpers.guest import GuestProgram, parse_results
from rseq_gen.arches import ARCHES


def _read_newc(data: bytes) -> dict[str, bytes]:
    """name -> contents of a newc archive (the format the kernel unpacks)."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = data[pos:pos + size]
        pos += size
        pos += -pos % 4


def test_every_line_names_a_machine_whose_programs_have_a_libc():
    for line in kernels.KERNEL_LINES.values():
        machine = kernels.MACHINES[line.machine]
        assert re.compile(line.package)
        for arch in machine.programs:
            assert kernels.GENERATED_ARCH.get(arch, arch) in ARCHES
            assert kernels.LIBCS[arch].compiler in kernels.COMPILER_PACKAGES
    # the two main architectures: one line before 6.3 (no mm_cid) and one 7.x
    for machine in ("x86_64", "aarch64"):
        versions = {l.version_tuple for l in kernels.KERNEL_LINES.values() if l.machine == machine}
        assert any(v < (6, 3) for v in versions), machine
    assert {l.machine for l in kernels.KERNEL_LINES.values()} >= {"x86_64", "aarch64", "ppc64le", "s390x", "riscv64"}


def test_markers_after_a_kernel_message_are_found(tmp_path):
    """ppc64's early console prints the banner without a newline before
    /init's first marker; the reader splits the line."""
    token = "0123456789abcdef"
    text = (f"[    0.0] Linux version 6.12 #1 SMP Debian 6.@@{token} boot 6.12.107 4.03\n"
            f"@@{token} stdout p\n" '{"event": "done"}\n' f"@@{token} stderr p\n"
            f"@@{token} end p 0 4.1 4.2\n@@{token} done 4.3\n")
    fixed = re.sub(rf"(?<!\n)@@{token} ", f"\n@@{token} ", text)
    release, _, results, done = parse_results(fixed, token)
    assert release == "6.12.107" and done and results["p"].events() == [{"event": "done"}]


@pytest.mark.parametrize("machine", ["aarch64", "x86_64"])
def test_initramfs_holds_busybox_libcs_and_programs(tmp_path, machine):
    line = next(l for l in kernels.KERNEL_LINES.values() if l.machine == machine)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-not-really")
    image = kernels.LineImage(line, "pkg", "1", "6.1.0-test", tmp_path / "vmlinuz", None, busybox)
    prog = tmp_path / "prog"
    prog.write_bytes(b"program")
    path = tmp_path / "initramfs.cpio"
    kernels.build_initramfs(path, image, [GuestProgram("p1", ("prog",), {"prog": prog})], "tok")
    entries = _read_newc(path.read_bytes())
    names = set(entries)
    assert {"bin/busybox", "init", "p/p1/prog"} <= names
    for arch in kernels.MACHINES[machine].programs:
        libc = kernels.LIBCS[arch]
        assert f"lib/{libc.multiarch}/libc.so.6" in names
        assert libc.loader.lstrip("/").replace("lib64/", "lib/") in names, libc.loader
    init = entries["init"].decode()
    assert f"/dev/{kernels.MACHINES[machine].console}" in init and init.rstrip().endswith("poweroff -f")


def test_a_missing_qemu_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    line = kernels.KERNEL_LINES["s390x-6.12"]
    image = kernels.LineImage(line, "pkg", "1", "6.12", tmp_path / "v", None, tmp_path / "b")
    with pytest.raises(kernels.GuestError) as info:
        kernels.boot(image, [], tmp_path)
    assert str(info.value) == "qemu-system-s390x not found: install qemu-system-misc (.ci/run installs it)"
