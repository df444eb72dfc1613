"""``rseq-gen probe``: live in the environments this machine can make
(glibc default, glibc.pthread.rseq=0, a seccomp filter returning ENOSYS or
EPERM for rseq installed before exec, and one installed after startup), a
record gathered in C under qemu-user (no aarch64 Python needed), and the
decision logic on recorded inputs (valgrind, old kernels, musl, AT_SECURE...).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import RSEQ_GEN, ROOT, require_tool, run_rseq_gen

from rseq_gen.arches import ARCHES, host_arch
from rseq_gen.probe import ProbeInputs, decide, detect_emulator

C_DIR = ROOT / "tests" / "c"
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(extra)
    return env


def _probe_json(prefix_cmd=(), **env) -> dict:
    proc = subprocess.run([*prefix_cmd, *RSEQ_GEN, "probe", "--json"], capture_output=True,
                          text=True, env=_env(**env), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _own_seccomp_mode() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
    raise AssertionError("no Seccomp line in /proc/self/status")


@pytest.fixture(scope="module")
def seccomp_exec(tmp_path_factory) -> Path:
    cc = require_tool("gcc")
    out = tmp_path_factory.mktemp("seccomp") / "seccomp_exec"
    proc = subprocess.run([cc, *CFLAGS, "-pedantic", str(C_DIR / "seccomp_exec.c"), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return out


# ---- live ----------------------------------------------------------------

def test_probe_text_output_ends_with_recommendation():
    proc = run_rseq_gen("probe", env=_env())
    lines = proc.stdout.rstrip().splitlines()
    assert lines[0].startswith("machine:")
    assert lines[-1].startswith("recommended protocol: compat (")


def test_live_glibc_default():
    """This machine: glibc >= 2.35 registered Python's main thread."""
    out = _probe_json()
    inp, d = out["inputs"], out["decision"]
    assert inp["machine"] == platform.machine() and inp["arch"] == host_arch()
    assert inp["rseq_errno"] == errno.EINVAL and d["kernel"] == "available"
    assert inp["libc"] == "glibc" and inp["libc_version"] == os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert inp["rseq_size"] and inp["rseq_size"] >= 20
    assert inp["tp_method"] and inp["area_error"] is None
    # The area at thread pointer + __rseq_offset holds a real CPU number.
    assert 0 <= inp["area_cpu_id"] < os.cpu_count() + 64
    assert d["libc_registered"] is True
    assert inp["tunable"] is None and inp["emulator"] is None
    assert inp["seccomp_mode"] == _own_seccomp_mode()
    assert inp["at_rseq_feature_size"] in (0, 28) or inp["at_rseq_feature_size"] >= 33
    assert d["protocol"] == "compat" and "glibc registered" in d["reason"]


def test_live_tunable_off():
    out = _probe_json(GLIBC_TUNABLES="glibc.malloc.check=0:glibc.pthread.rseq=0")
    inp, d = out["inputs"], out["decision"]
    assert inp["tunable"] == "0" and "in effect" in d["tunable_detail"]
    assert inp["rseq_size"] == 0
    assert inp["area_cpu_id"] == -2          # glibc marks its unused area
    assert d["kernel"] == "available" and d["libc_registered"] is False
    assert "GLIBC_TUNABLES" in d["libc_detail"]
    assert d["protocol"] == "compat" and "registers the shared __rseq_abi" in d["reason"]


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_live_seccomp_filter_before_exec(seccomp_exec, err):
    out = _probe_json(prefix_cmd=(seccomp_exec, err))
    inp, d = out["inputs"], out["decision"]
    assert inp["rseq_errno"] == getattr(errno, err)
    assert inp["seccomp_mode"] == 2 and inp["seccomp_filters"] >= 1
    assert d["kernel"] == "blocked"
    assert inp["rseq_size"] == 0 and inp["area_cpu_id"] == -2
    assert d["libc_registered"] is False and err in d["libc_detail"]
    assert d["protocol"] == "compat" and "no protocol can register" in d["reason"]
    assert not d["warnings"]


_AFTER_STARTUP = r"""
import ctypes, json, struct, sys
from dataclasses import asdict
from rseq_gen.probe import gather, decide
nr, audit_arch = int(sys.argv[1]), int(sys.argv[2], 16)
def ins(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    ins(0x20, 4), ins(0x15, audit_arch, 0, 3),       # ld arch; jeq
    ins(0x20, 0), ins(0x15, nr, 0, 1),               # ld nr; jeq rseq
    ins(0x06, 0x00050000 | 1), ins(0x06, 0x7FFF0000),  # ERRNO(EPERM); ALLOW
])
buf = ctypes.create_string_buffer(prog, len(prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fp = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
ul = ctypes.c_ulong
assert libc.prctl(38, ul(1), ul(0), ul(0), ul(0)) == 0          # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, ul(2), ctypes.byref(fp), ul(0), ul(0)) == 0  # PR_SET_SECCOMP, FILTER
inp = gather()
print(json.dumps({"inputs": asdict(inp), "decision": asdict(decide(inp))}))
"""

_AUDIT_ARCH = {"x86_64": "c000003e", "aarch64": "c00000b7", "i386": "40000003"}


def test_live_seccomp_filter_after_startup():
    """A filter installed after glibc registered: probe warns that new
    threads will abort in pthread_create."""
    arch = host_arch()
    assert arch in _AUDIT_ARCH, f"add AUDIT_ARCH for {arch} to this test"
    proc = subprocess.run([sys.executable, "-c", _AFTER_STARTUP, str(ARCHES[arch].nr_rseq),
                           _AUDIT_ARCH[arch]], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    inp, d = out["inputs"], out["decision"]
    assert inp["rseq_errno"] == errno.EPERM and inp["seccomp_mode"] == 2
    assert d["kernel"] == "blocked" and d["libc_registered"] is True
    assert any("pthread_create" in w for w in d["warnings"]), d["warnings"]


# ---- qemu-user: a record gathered in C --------------------------------------

def parse_selfview(text: str) -> tuple[dict, dict]:
    fields, raw, current = {}, {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("--- "):
            current = line[4:].strip()
            raw[current] = ""
        elif current is not None:
            raw[current] += line
        elif "=" in line:
            key, _, value = line.rstrip("\n").partition("=")
            fields[key] = value
    return fields, raw


def _optional_int(fields: dict, key: str) -> int | None:
    return int(fields[key]) if key in fields else None


def inputs_from_selfview(fields: dict, raw: dict, arch: str = "aarch64") -> ProbeInputs:
    """The ProbeInputs of a record printed by tests/c/cross_selfview.c."""
    status = dict(ln.split(":", 1) for ln in raw["status"].splitlines() if ":" in ln)
    name = status.get("Name", "").strip()
    emulator, evidence = detect_emulator(fields["machine"], raw["cpuinfo"],
                                         raw["maps"] + raw["thread-self-maps"], name, "")
    ints = {k: int(fields[k]) for k in ("rseq_errno", "at_rseq_feature_size", "at_rseq_align",
                                        "rseq_size", "rseq_offset", "area_cpu_id_start",
                                        "area_cpu_id", "sched_getcpu")}
    return ProbeInputs(
        machine=fields["machine"], arch=arch, kernel_release=fields["kernel_release"],
        rseq_errno=ints["rseq_errno"], at_rseq_feature_size=ints["at_rseq_feature_size"],
        at_rseq_align=ints["at_rseq_align"], at_secure=fields["at_secure"] != "0",
        libc="glibc", libc_version=fields["libc_version"], rseq_size=ints["rseq_size"],
        rseq_offset=ints["rseq_offset"], tp_method="__builtin_thread_pointer",
        area_cpu_id_start=ints["area_cpu_id_start"], area_cpu_id=ints["area_cpu_id"],
        sched_getcpu=ints["sched_getcpu"], seccomp_mode=int(status["Seccomp"]),
        seccomp_filters=int(status.get("Seccomp_filters", "0")),
        emulator=emulator, emulator_evidence=evidence,
        registration_len=_optional_int(fields, "registration_len"),
        area_flags=_optional_int(fields, "area_flags"), slice_prctl=_optional_int(fields, "slice_prctl"),
        slice_errno=_optional_int(fields, "slice_errno"))


def test_qemu_user_recorded(tmp_path):
    cc = require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    qemu = require_tool("qemu-aarch64", "qemu-user")
    exe = tmp_path / "selfview"
    proc = subprocess.run([cc, *CFLAGS, "-static", str(C_DIR / "cross_selfview.c"), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    run = subprocess.run([qemu, str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    inp = inputs_from_selfview(*parse_selfview(run.stdout))
    assert inp.machine == "aarch64" and inp.emulator == "qemu-user", inp
    assert inp.rseq_errno == errno.ENOSYS and inp.rseq_size == 0 and inp.area_cpu_id == -2
    d = decide(inp)
    assert d.kernel == "unknown" and "qemu-user" in d.kernel_detail
    assert d.libc_registered is False and "ENOSYS" in d.libc_detail
    assert any("qemu-user" in w for w in d.warnings)
    assert d.protocol == "compat" and "qemu-user does not implement rseq" in d.reason


#: ProbeInputs fields the C record and gather() must agree on (the rest:
#: the thread pointer method, the area's cpu_id_start and the CPU numbers
#: change from one process to the next).
SELFVIEW_FIELDS = ("machine", "arch", "kernel_release", "rseq_errno", "at_rseq_feature_size",
                   "at_rseq_align", "at_secure", "libc", "libc_version", "rseq_size",
                   "registration_len", "area_flags", "slice_prctl", "slice_errno", "seccomp_mode",
                   "emulator")


@pytest.mark.parametrize("tunable", [None, "0"])
def test_c_record_matches_gather_on_this_machine(tmp_path, tunable):
    """The C gatherer (what runs in the 7.x guest, which has no Python) finds
    what gather() finds, here, with and without glibc's registration."""
    cc = require_tool("gcc")
    exe = tmp_path / "selfview"
    proc = subprocess.run([cc, *CFLAGS, str(C_DIR / "cross_selfview.c"), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    env = _env(**({"GLIBC_TUNABLES": f"glibc.pthread.rseq={tunable}"} if tunable else {}))
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    record = inputs_from_selfview(*parse_selfview(run.stdout), arch=host_arch())
    record.tunable = tunable
    live = ProbeInputs(**_probe_json(**({"GLIBC_TUNABLES": f"glibc.pthread.rseq={tunable}"}
                                         if tunable else {}))["inputs"])
    for name in SELFVIEW_FIELDS:
        assert getattr(record, name) == getattr(live, name), name
    # (the libc text quotes CPU numbers, which differ between the processes)
    mine, theirs = decide(record), decide(live)
    for name in ("kernel", "libc_registered", "registration_detail", "v2_mode", "slice_extension",
                 "slice_detail", "tunable_detail"):
        assert getattr(mine, name) == getattr(theirs, name), name
    if tunable is None:
        assert record.registration_len == 32, "glibc registers 32 bytes on this kernel"


def test_native_texts_are_not_an_emulator():
    maps = Path("/proc/self/maps").read_text()
    assert detect_emulator(platform.machine(), Path("/proc/cpuinfo").read_text(), maps,
                           "python3", "") == (None, "")


# ---- decisions on recorded inputs -------------------------------------------

#: glibc 2.36 on a 6.18 x86_64 kernel, as recorded on the CI machine.
BASE = ProbeInputs(
    machine="x86_64", arch="x86_64", kernel_release="6.18.44", rseq_errno=errno.EINVAL,
    at_rseq_feature_size=28, at_rseq_align=32, libc="glibc", libc_version="2.36",
    rseq_size=20, rseq_offset=2336, tp_method="arch_prctl(ARCH_GET_FS)",
    area_cpu_id_start=1, area_cpu_id=1, sched_getcpu=1, seccomp_mode=0, seccomp_filters=0)


def test_decide_glibc_registered():
    d = decide(BASE)
    assert (d.kernel, d.libc_registered, d.protocol) == ("available", True, "compat")
    assert not d.warnings


def test_decide_valgrind():
    maps = ("04000000-04001000 r-xp 00000000 08:01 1 "
            "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so\n")
    emulator, evidence = detect_emulator("x86_64", "vendor_id\t: GenuineIntel\n", maps, "python3", "")
    assert emulator == "valgrind"
    inp = replace(BASE, rseq_errno=errno.ENOSYS, rseq_size=0, area_cpu_id=-2, area_cpu_id_start=0,
                  emulator=emulator, emulator_evidence=evidence)
    d = decide(inp)
    assert d.kernel == "unknown" and "valgrind" in d.kernel_detail
    assert d.libc_registered is False and "ENOSYS" in d.libc_detail
    assert any("valgrind" in w for w in d.warnings)
    assert d.protocol == "compat"


def test_detect_emulator_qemu_by_name_and_cpuinfo():
    assert detect_emulator("riscv64", "", "", "qemu-riscv64", "")[0] == "qemu-user"
    assert detect_emulator("s390x", "vendor_id\t: AuthenticAMD\n", "", "prog", "")[0] == "qemu-user"
    assert detect_emulator("x86_64", "vendor_id\t: AuthenticAMD\n", "", "prog", "") == (None, "")
    # A library that merely lives under a qemu-* directory is not qemu.
    maps = "7f0000-7f1000 r-xp 00000000 08:01 5 /home/u/qemu-build/libfoo.so\n"
    assert detect_emulator("x86_64", "vendor_id\t: GenuineIntel\n", maps, "prog", "") == (None, "")
    maps = "555b0000-555b1000 r--p 00000000 fe:00 7 /usr/bin/qemu-aarch64-static\n"
    assert detect_emulator("aarch64", "", maps, "prog", "")[0] == "qemu-user"


def test_decide_kernel_without_rseq():
    inp = replace(BASE, rseq_errno=errno.ENOSYS, rseq_size=0, area_cpu_id=-2,
                  at_rseq_feature_size=0, at_rseq_align=0)
    d = decide(inp)
    assert d.kernel == "absent" and "CONFIG_RSEQ" in d.kernel_detail
    assert d.protocol == "compat" and "the kernel has no rseq" in d.reason


def test_decide_old_kernel_has_no_feature_size():
    d = decide(replace(BASE, kernel_release="5.15.0", at_rseq_feature_size=0, at_rseq_align=0,
                       rseq_size=32))
    assert d.kernel == "available" and d.libc_registered
    assert any("node_id" in w for w in d.warnings)


def test_decide_musl():
    inp = replace(BASE, libc="musl", libc_version="1.2.3", rseq_size=None, rseq_offset=None,
                  tp_method=None, area_cpu_id=None, area_cpu_id_start=None)
    d = decide(inp)
    assert d.libc_registered is False and "musl 1.2.3: never registers" in d.libc_detail
    assert d.protocol == "compat" and "musl never registers" in d.reason


def test_decide_glibc_before_2_35():
    inp = replace(BASE, libc_version="2.31", rseq_size=None, rseq_offset=None, tp_method=None,
                  area_cpu_id=None, area_cpu_id_start=None)
    d = decide(inp)
    assert d.libc_registered is False and "2.35" in d.libc_detail
    assert "no rseq support" in d.reason


def test_decide_tunable_ignored_for_at_secure():
    inp = replace(BASE, tunable="0", at_secure=True)
    d = decide(inp)
    assert "ignored (AT_SECURE" in d.tunable_detail
    assert any("AT_SECURE" in w for w in d.warnings)


def test_decide_filter_after_startup_warns():
    d = decide(replace(BASE, rseq_errno=errno.EPERM, seccomp_mode=2, seccomp_filters=1))
    assert d.kernel == "blocked" and d.libc_registered
    assert any("Fatal glibc error" in w for w in d.warnings)


def test_decide_unsupported_machine():
    inp = replace(BASE, machine="sparc64", arch=None, rseq_errno=None, tp_method=None,
                  area_cpu_id=None, area_cpu_id_start=None,
                  area_error="no way to read the thread pointer from Python on this machine")
    d = decide(inp)
    assert d.kernel == "unknown" and "sparc64" in d.kernel_detail
    # glibc says it registered; the area could not be read, and probe says so.
    assert d.libc_registered and "could not be read" in d.libc_detail
    assert d.protocol == "compat"
