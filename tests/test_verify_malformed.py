"""Malformed input never produces a traceback: every ELF header field and
every section header field corrupted in turn, truncation at every structure
boundary, random bytes, archives with bad members, and a bounded fuzz test.
A bad input is one clear line; the other inputs are still checked."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from conftest import generate, require_tool, run_rseq_gen
from rseq_gen.verify import check_path
from rseq_gen.verify.checks import Context


# Its tests share one module-wide build: keep them on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("verify-malformed")

EHDR64_FIELDS = {  # name: (offset, size)
    "EI_CLASS": (4, 1), "EI_DATA": (5, 1), "EI_VERSION": (6, 1), "EI_OSABI": (7, 1),
    "e_type": (16, 2), "e_machine": (18, 2), "e_version": (20, 4), "e_entry": (24, 8),
    "e_phoff": (32, 8), "e_shoff": (40, 8), "e_flags": (48, 4), "e_ehsize": (52, 2),
    "e_phentsize": (54, 2), "e_phnum": (56, 2), "e_shentsize": (58, 2), "e_shnum": (60, 2),
    "e_shstrndx": (62, 2),
}
SHDR64_FIELDS = {
    "sh_name": (0, 4), "sh_type": (4, 4), "sh_flags": (8, 8), "sh_addr": (16, 8),
    "sh_offset": (24, 8), "sh_size": (32, 8), "sh_link": (40, 4), "sh_info": (44, 4),
    "sh_addralign": (48, 8), "sh_entsize": (56, 8),
}
PHDR64_SIZE = 56


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """A generated object and a shared library linked from it (x86_64)."""
    require_tool("gcc")
    d = generate(tmp_path_factory.mktemp("malformed"), "compat", "mf")
    obj = d / "mf.o"
    subprocess.run(["gcc", "-O2", "-fPIC", "-c", "-o", obj, d / "mf_rseq.c"], check=True)
    lib = d / "libmf.so"
    subprocess.run(["gcc", "-shared", "-o", lib, obj], check=True)
    return {"obj": obj.read_bytes(), "lib": lib.read_bytes(), "dir": d}


def _check(tmp_path: Path, data: bytes, name="x.o") -> dict:
    p = tmp_path / name
    p.write_bytes(data)
    out = check_path(str(p), Context(min_glibc=(2, 17), dlopen=True))
    for e in out["errors"]:
        assert "\n" not in e["message"]
        assert not e["message"].startswith("internal error"), e["message"]
    return out


def _boundaries(data: bytes) -> set[int]:
    shoff = struct.unpack_from("<Q", data, 40)[0]
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phnum, shentsize, shnum = struct.unpack_from("<HHH", data, 56)
    points = {0, 4, 16, 52, 64, shoff, len(data)}
    for i in range(phnum):
        points.add(phoff + i * PHDR64_SIZE)
    for i in range(shnum):
        base = shoff + i * shentsize
        points.add(base)
        off, size = struct.unpack_from("<QQ", data, base + 24)
        points.update({off, off + size})
    return {p for p in points if 0 <= p < len(data)}


@pytest.mark.parametrize("which", ["obj", "lib"])
def test_every_elf_header_field_corrupted(samples, tmp_path, which):
    data = samples[which]
    for name, (off, size) in EHDR64_FIELDS.items():
        for fill in (b"\xff", b"\x00", b"\x7f"):
            bad = bytearray(data)
            bad[off:off + size] = fill * size
            _check(tmp_path, bytes(bad))


@pytest.mark.parametrize("which", ["obj", "lib"])
def test_every_section_header_field_corrupted(samples, tmp_path, which):
    data = samples[which]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    for i in range(shnum):
        for name, (off, size) in SHDR64_FIELDS.items():
            for fill in (b"\xff", b"\x00"):
                bad = bytearray(data)
                pos = shoff + i * shentsize + off
                bad[pos:pos + size] = fill * size
                _check(tmp_path, bytes(bad))


@pytest.mark.parametrize("which", ["obj", "lib"])
def test_truncated_at_every_boundary(samples, tmp_path, which):
    data = samples[which]
    for cut in sorted(_boundaries(data)):
        for n in (cut, cut + 1, max(cut - 1, 0)):
            out = _check(tmp_path, data[:n])
            if n < len(data) - 64:  # lost the section headers: always reported
                assert out["errors"], n


def test_truncation_messages_are_clear(samples, tmp_path):
    data = samples["obj"]
    assert _check(tmp_path, b"")["errors"][0]["message"] == "empty file (0 bytes)"
    assert "not an ELF file" in _check(tmp_path, b"hello world, not elf")["errors"][0]["message"]
    assert "truncated" in _check(tmp_path, data[:30])["errors"][0]["message"]
    assert "truncated" in _check(tmp_path, data[:-10])["errors"][0]["message"]
    bad = bytearray(data)
    bad[4] = 7
    assert "wrong ELF class" in _check(tmp_path, bytes(bad))["errors"][0]["message"]


def test_random_bytes(tmp_path):
    import random

    rng = random.Random(1234)
    for size in (1, 3, 15, 16, 63, 64, 200, 4096):
        _check(tmp_path, bytes(rng.randrange(256) for _ in range(size)))
        _check(tmp_path, b"\x7fELF" + bytes(rng.randrange(256) for _ in range(size)))
        _check(tmp_path, b"\x7fELF\x02\x01\x01" + bytes(rng.randrange(256) for _ in range(size)))
        _check(tmp_path, b"!<arch>\n" + bytes(rng.randrange(256) for _ in range(size)))


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def test_archive_with_bad_members(samples, tmp_path):
    good = samples["obj"]
    data = _ar([("good.o", good), ("junk.o", b"this is not an object"), ("cut.o", good[:100])])
    out = _check(tmp_path, data, "lib.a")
    assert out["file"]["kind"] == "archive" and out["file"]["members"] == 3
    bad = {e["member"] for e in out["errors"]}
    assert bad == {"junk.o", "cut.o"}
    assert out["file"]["notes"] and out["file"]["notes"][0]["prefix"] == "mf"  # good member checked
    # A damaged member header or a truncated archive: one line, earlier members kept.
    broken = data[:8 + 60 + len(good)] + b"garbage header that is not sixty bytes long at all......."
    out = _check(tmp_path, broken, "lib2.a")
    assert len(out["errors"]) == 1 and out["file"]["notes"]
    out = _check(tmp_path, data[:8 + 60 + 10], "lib3.a")
    assert "truncated" in out["errors"][0]["message"]


def test_real_archive_variants(samples, tmp_path):
    """GNU ar with a long member name, and a thin archive with a missing member."""
    require_tool("ar", "binutils")
    d = tmp_path / "ar"
    d.mkdir()
    long_name = d / ("a_rather_long_member_name_for_gnu_ar_" + "x" * 20 + ".o")
    long_name.write_bytes(samples["obj"])
    subprocess.run(["ar", "rcs", d / "long.a", long_name], check=True)
    out = _check(tmp_path, (d / "long.a").read_bytes(), "long.a")
    assert not out["errors"] and out["file"]["notes"]
    subprocess.run(["ar", "rcsT", d / "thin.a", long_name], check=True)
    out = check_path(str(d / "thin.a"), Context())
    assert not out["errors"] and out["file"]["notes"]
    long_name.unlink()
    out = check_path(str(d / "thin.a"), Context())
    assert len(out["errors"]) == 1 and "thin member" in out["errors"][0]["message"]


def test_bsd_archive(samples, tmp_path):
    """BSD ar: "#1/<len>" names stored in front of the member data."""
    name = b"a_long_bsd_member_name.o"
    pad = name + b"\0" * (-len(name) % 8)
    body = pad + samples["obj"]
    hdr = f"{'#1/' + str(len(pad)):<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(body):<10}`\n".encode()
    symdef = b"\0" * 8
    idx = f"{'#1/16':<16}{0:<12}{0:<6}{0:<6}{644:<8}{16 + len(symdef):<10}`\n".encode()
    data = b"!<arch>\n" + idx + b"__.SYMDEF\0\0\0\0\0\0\0" + symdef + hdr + body
    out = _check(tmp_path, data, "bsd.a")
    assert not out["errors"] and out["file"]["members"] == 1
    assert out["file"]["notes"][0]["prefix"] == "mf"


def test_cli_reports_bad_inputs_and_checks_the_rest(samples, tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    lib = tmp_path / "libmf.so"
    lib.write_bytes(samples["lib"])
    missing = tmp_path / "missing.o"
    proc = run_rseq_gen("verify", junk, lib, missing, tmp_path, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 3, err
    assert any(str(junk) in line and "truncated" in line for line in err)
    assert any(str(missing) in line and "no such file or directory" in line for line in err)
    assert "RSEQ302" in proc.stdout  # the good input was still checked


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 16),
                                st.binary(min_size=1, max_size=8)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 16)),
       which=st.sampled_from(["obj", "lib"]))
def test_fuzz_no_uncaught_exception(samples, tmp_path, edits, cut, which):
    data = bytearray(samples[which])
    for pos, blob in edits:
        pos %= len(data)
        data[pos:pos + len(blob)] = blob
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    _check(tmp_path, bytes(data))
