"""Debian's kernels for every architecture the suite can boot, under
qemu-system (TCG), one boot per kernel running a batch of programs.

The x86_64 harness of tests/helpers/guest.py, widened to a table: each kernel line
(architecture, Debian suite, package) is fetched once with apt into the
pytest cache (only the kernel image, its config and that architecture's
busybox-static are unpacked; ``pytest --cache-clear`` forgets them), booted
with a busybox initramfs holding the programs, and the programs' results are
read back from the console. The programs are built on the host with the
Debian cross compilers; dynamic ones run on the cross compilers' glibc (the
host's release), copied into the initramfs.

A boot that cannot happen here is one line saying why (the test fails with
it); docs/support-matrix.md lists what boots and what each line saw.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from conftest import locked
from helpers.glibcs import KEYRING, FetchError, apt_dir, apt_run
from helpers.guest import Cpio, GuestError, GuestProgram, GuestResult, _tail, add_programs, init_script, parse_results


@dataclass(frozen=True)
class Libc:
    """The cross glibc dynamic programs of one architecture run on."""
    host_dir: str           # where the host's cross libc6 package put it
    multiarch: str          # its directory in the guest: /lib/<multiarch>
    loader: str             # the program interpreter's guest path
    compiler: str           # the cross compiler
    flags: tuple[str, ...] = ()


#: Program architectures (rseq_gen.arches rows) the guests run.
LIBCS: dict[str, Libc] = {
    "x86_64": Libc("/lib/x86_64-linux-gnu", "x86_64-linux-gnu", "/lib64/ld-linux-x86-64.so.2", "gcc"),
    "i386": Libc("/usr/i686-linux-gnu/lib", "i386-linux-gnu", "/lib/ld-linux.so.2", "i686-linux-gnu-gcc"),
    "aarch64": Libc("/usr/aarch64-linux-gnu/lib", "aarch64-linux-gnu", "/lib/ld-linux-aarch64.so.1",
                    "aarch64-linux-gnu-gcc"),
    "arm": Libc("/usr/arm-linux-gnueabihf/lib", "arm-linux-gnueabihf", "/lib/ld-linux-armhf.so.3",
                "arm-linux-gnueabihf-gcc", ("-marm",)),
    "thumb": Libc("/usr/arm-linux-gnueabihf/lib", "arm-linux-gnueabihf", "/lib/ld-linux-armhf.so.3",
                  "arm-linux-gnueabihf-gcc", ("-mthumb",)),
    "ppc64le": Libc("/usr/powerpc64le-linux-gnu/lib", "powerpc64le-linux-gnu", "/lib64/ld64.so.2",
                    "powerpc64le-linux-gnu-gcc"),
    "s390x": Libc("/usr/s390x-linux-gnu/lib", "s390x-linux-gnu", "/lib/ld64.so.1", "s390x-linux-gnu-gcc"),
    "riscv64": Libc("/usr/riscv64-linux-gnu/lib", "riscv64-linux-gnu", "/lib/ld-linux-riscv64-lp64d.so.1",
                    "riscv64-linux-gnu-gcc"),
}
#: Host packages of the cross compilers and their C libraries.
COMPILER_PACKAGES = {
    "gcc": "gcc", "i686-linux-gnu-gcc": "gcc-i686-linux-gnu and libc6-dev-i386-cross",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu and libc6-dev-arm64-cross",
    "arm-linux-gnueabihf-gcc": "gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross",
    "powerpc64le-linux-gnu-gcc": "gcc-powerpc64le-linux-gnu and libc6-dev-ppc64el-cross",
    "s390x-linux-gnu-gcc": "gcc-s390x-linux-gnu and libc6-dev-s390x-cross",
    "riscv64-linux-gnu-gcc": "gcc-riscv64-linux-gnu and libc6-dev-riscv64-cross",
}
#: The rseq_gen.arches row each program architecture's code is generated for.
GENERATED_ARCH = {"thumb": "arm"}


@dataclass(frozen=True)
class Machine:
    """How one architecture's kernels boot here."""
    name: str
    debian_arch: str
    qemu: str
    qemu_package: str
    qemu_args: tuple[str, ...]
    console: str                        # console= device; /init writes results there too
    programs: tuple[str, ...]           # LIBCS keys whose programs this kernel runs

    def qemu_command(self) -> list[str]:
        return [self.qemu, *self.qemu_args, "-smp", "2", "-m", "768", "-display", "none",
                "-monitor", "none", "-nic", "none", "-no-reboot"]


_TCG = ("-accel", "tcg,thread=single")
#: aarch64's -cpu max keeps pointer authentication, with QEMU's own (IMPDEF)
#: hash instead of QARMA, whose emulation dominates a boot: the kernel signs
#: every return address (boot to a panic without initramfs: 6.6 s -> 1.7 s).
MACHINES: dict[str, Machine] = {m.name: m for m in (
    Machine("x86_64", "amd64", "qemu-system-x86_64", "qemu-system-x86", (*_TCG, "-cpu", "max"), "ttyS0",
            ("x86_64", "i386")),
    Machine("aarch64", "arm64", "qemu-system-aarch64", "qemu-system-arm",
            (*_TCG, "-M", "virt", "-cpu", "max,pauth-impdef=on"), "ttyAMA0", ("aarch64", "arm", "thumb")),
    Machine("ppc64le", "ppc64el", "qemu-system-ppc64", "qemu-system-ppc",
            (*_TCG, "-M", "pseries", "-cpu", "power9"), "hvc0", ("ppc64le",)),
    Machine("s390x", "s390x", "qemu-system-s390x", "qemu-system-misc", (*_TCG, "-M", "s390-ccw-virtio"),
            "ttysclp0", ("s390x",)),
    Machine("riscv64", "riscv64", "qemu-system-riscv64", "qemu-system-misc",
            (*_TCG, "-M", "virt", "-bios", "default"), "ttyS0", ("riscv64",)),
)}


@dataclass(frozen=True)
class KernelLine:
    """One Debian kernel line for one machine."""
    id: str
    machine: str
    suite: str
    package: str            # regular expression over package names
    line: str               # "6.1", "6.12", "7"

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.line.split("."))


#: Every kernel line the suite boots (the sid 7.x x86_64 line is tests/helpers/guest.py's).
KERNEL_LINES: dict[str, KernelLine] = {k.id: k for k in (
    KernelLine("x86_64-6.1", "x86_64", "bookworm", r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$", "6.1"),
    KernelLine("aarch64-6.1", "aarch64", "bookworm", r"^linux-image-6\.1\.0-[0-9]+-cloud-arm64$", "6.1"),
    KernelLine("aarch64-7", "aarch64", "sid", r"^linux-binary-7\.[0-9.]+\+deb[0-9]+-cloud-arm64$", "7"),
    KernelLine("ppc64le-6.12", "ppc64le", "trixie", r"^linux-image-6\.12\.[0-9]+\+deb13-powerpc64le$", "6.12"),
    KernelLine("s390x-6.12", "s390x", "trixie", r"^linux-image-6\.12\.[0-9]+\+deb13-s390x$", "6.12"),
    KernelLine("riscv64-6.12", "riscv64", "trixie", r"^linux-image-6\.12\.[0-9]+\+deb13-riscv64$", "6.12"),
)}

#: Files in the kernel package: the image (vmlinuz, or vmlinux on ppc64el) and its config.
_IMAGE = re.compile(r"^\.?/?(boot/vmlinu[xz]-.+|usr/lib/modules/[^/]+/vmlinu[xz])$")
_CONFIG = re.compile(r"^\.?/?(boot/config-.+|usr/lib/modules/[^/]+/config)$")
_BUSYBOX = re.compile(r"^\.?/?(usr/)?bin/busybox$")
#: Seconds for a kernel to boot and power off, on top of the programs' timeouts.
BOOT_SECONDS = 180


def _apt_options(apt: Path, suite: str, debian_arch: str) -> list[str]:
    return [o.replace("=amd64", f"={debian_arch}") for o in apt_dir(apt, suite)]


def _newest_first(opts: list[str], names: list[str]) -> list[tuple[str, str]]:
    found = []
    for name in names:
        show = apt_run(["apt-cache", *opts, "show", "--no-all-versions", name], f"apt-cache show {name}").stdout
        m = re.search(r"^Version: (\S+)", show, re.M)
        if m:
            found.append((name, m.group(1)))

    def newer(a, b):
        if a[1] == b[1]:
            return 0
        return 1 if subprocess.run(["dpkg", "--compare-versions", a[1], "gt", b[1]]).returncode == 0 else -1

    return sorted(found, key=functools.cmp_to_key(newer), reverse=True)


def _extract(deb: Path, wanted: dict[str, re.Pattern], out: Path) -> dict[str, Path]:
    """The first member matching each pattern of a .deb's data, written to `out`."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    got: dict[str, Path] = {}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            for key, pattern in wanted.items():
                if key not in got and member.isfile() and pattern.match(member.name):
                    target = out / key
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    got[key] = target
    proc.wait()
    return got


class LineCache:
    """One kernel line's image, config and busybox, fetched once into `root`."""

    def __init__(self, root: Path, line: KernelLine):
        self.root, self.line = Path(root) / line.id, line
        self.record = self.root / "kernel.json"

    def _fetch(self) -> dict:
        line, machine = self.line, MACHINES[self.line.machine]
        for tool in ("apt-get", "apt-cache", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise GuestError(f"{tool} not found: install apt and dpkg")
        if not Path(KEYRING).exists():
            raise GuestError(f"{KEYRING} is missing: install debian-archive-keyring")
        apt = self.root / "apt"
        opts = _apt_options(apt, line.suite, machine.debian_arch)
        apt_run(["apt-get", *opts, "--error-on=any", "-q", "update"],
                f"reading Debian {line.suite}'s {machine.debian_arch} index (needs the network once)")
        names = apt_run(["apt-cache", *opts, "search", "--names-only", line.package],
                        f"looking up {line.package}").stdout.split()
        names = sorted({n for n in names if re.match(line.package, n)})
        if not names:
            raise GuestError(f"no package matching {line.package} in Debian {line.suite} ({machine.debian_arch})")
        debs = apt / "debs"
        errors = []
        for package, version in _newest_first(opts, names):
            # Debian's index may list a version its mirrors no longer serve:
            # the newest that downloads
            try:
                apt_run(["apt-get", *opts, "-q", "download", f"{package}={version}"], f"downloading {package}",
                        cwd=debs)
                break
            except FetchError as exc:
                errors.append(str(exc))
        else:
            raise GuestError(f"no {line.package} downloads: {errors[0]}")
        apt_run(["apt-get", *opts, "-q", "download", "busybox-static"], "downloading busybox-static", cwd=debs)
        kernel_deb = next(debs.glob(f"{package}_*.deb"))
        got = _extract(kernel_deb, {"vmlinuz": _IMAGE, "config": _CONFIG}, self.root)
        got.update(_extract(next(debs.glob("busybox-static_*.deb")), {"busybox": _BUSYBOX}, self.root))
        if "vmlinuz" not in got or "busybox" not in got:
            raise GuestError(f"{kernel_deb.name}: no kernel image or busybox found in the packages")
        release = package.split("-", 2)[2]
        record = {"package": package, "version": version, "release": release,
                  "config": "config" in got,
                  "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.record.write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(apt, ignore_errors=True)
        return record

    def image(self) -> "LineImage":
        if not self.record.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with locked(self.root / "fetch.lock"):
                if not self.record.exists():
                    try:
                        self._fetch()
                    except FetchError as exc:
                        raise GuestError(str(exc)) from None
        r = json.loads(self.record.read_text())
        return LineImage(self.line, r["package"], r["version"], r["release"], self.root / "vmlinuz",
                         self.root / "config" if r["config"] else None, self.root / "busybox")


@dataclass(frozen=True)
class LineImage:
    line: KernelLine
    package: str
    version: str
    release: str
    vmlinuz: Path
    config: Path | None
    busybox: Path

    def config_value(self, name: str) -> str | None:
        if self.config is None:
            return None
        m = re.search(rf"^CONFIG_{name}=(.*)$", self.config.read_text(), re.M)
        return m.group(1) if m else None


def build_initramfs(path: Path, image: LineImage, programs: Sequence[GuestProgram], token: str) -> None:
    machine = MACHINES[image.line.machine]
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "p"):
        cpio.directory(d)
    cpio.symlink("lib64", "lib")
    cpio.file("bin/busybox", image.busybox.read_bytes())
    seen_dirs = set()
    for arch in machine.programs:
        libc = LIBCS[arch]
        if libc.multiarch in seen_dirs:
            continue
        seen_dirs.add(libc.multiarch)
        cpio.directory(f"lib/{libc.multiarch}")
        loader = Path(libc.loader).name
        for name in (loader, "libc.so.6"):
            cpio.file(f"lib/{libc.multiarch}/{name}", (Path(libc.host_dir) / name).resolve().read_bytes())
        cpio.symlink(f"lib/{loader}", f"{libc.multiarch}/{loader}")
    add_programs(cpio, programs)
    cpio.file("init", init_script(programs, token, out=f"/dev/{machine.console}").encode())
    cpio.write(path)


@dataclass
class LineBoot:
    seconds: float
    programs: int
    release: str
    boot_seconds: float
    program_seconds: float
    slowest: list = None
    attempts: int = 1


#: Seconds a kernel may take to reach /init before the boot is retried:
#: riscv64 6.12 under TCG reaches it in seconds, but now and then stays
#: silent after OpenSBI (seen once in ten boots here).
INIT_SECONDS = 120
BOOT_RETRIES = 1


def _run_qemu(cmd: list[str], console: Path, marker: str, timeout: float) -> tuple[int | None, str, str]:
    """Run qemu until it exits: (exit status, stderr, "ok"), or kill it:
    "no-init" when `marker` did not reach the console in INIT_SECONDS,
    "timeout" after `timeout` seconds."""
    start = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        state, seen = "ok", False
        while proc.poll() is None:
            time.sleep(0.5)
            elapsed = time.monotonic() - start
            if not seen:
                seen = marker in console.read_text(errors="replace")
                if not seen and elapsed > INIT_SECONDS:
                    state = "no-init"
            if elapsed > timeout:
                state = "timeout"
            if state != "ok":
                proc.kill()
                proc.wait()
                return None, "", state
        return proc.returncode, proc.stderr.read(), state


def boot(image: LineImage, programs: Sequence[GuestProgram], workdir: Path) -> tuple[dict[str, GuestResult], LineBoot]:
    """Boot `image` once with `programs`; their results by name."""
    machine = MACHINES[image.line.machine]
    if shutil.which(machine.qemu) is None:
        raise GuestError(f"{machine.qemu} not found: install {machine.qemu_package} (.ci/run installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    initrd, console = workdir / "initramfs.cpio", workdir / "console.txt"
    token = secrets.token_hex(8)
    build_initramfs(initrd, image, programs, token)
    timeout = BOOT_SECONDS + sum(p.timeout for p in programs)
    cmd = [*machine.qemu_command(), "-kernel", str(image.vmlinuz), "-initrd", str(initrd),
           "-append", f"console={machine.console} quiet loglevel=1 panic=-1",
           "-serial", f"file:{console}"]
    start = time.monotonic()
    for attempt in range(1 + BOOT_RETRIES):
        console.write_text("")
        returncode, stderr, state = _run_qemu(cmd, console, f"@@{token} boot", timeout)
        if state != "no-init":
            break
    seconds = time.monotonic() - start
    if state == "timeout":
        raise GuestError(f"the {image.release} guest did not power off within {timeout} s "
                         f"(console: {_tail(console)})")
    if state == "no-init":
        raise GuestError(f"the {image.release} guest did not reach /init within {INIT_SECONDS} s, "
                         f"{1 + BOOT_RETRIES} times (console: {_tail(console)})")
    if returncode != 0:
        raise GuestError(f"{machine.qemu} exited {returncode}: "
                         f"{(stderr.strip().splitlines() or ['no message'])[-1]}")
    text = console.read_text(errors="replace").replace("\r\n", "\n")
    # One port carries the kernel's messages too: a marker may follow one of
    # them on the same line (ppc64's early console prints the banner there).
    text = re.sub(rf"(?<!\n)@@{token} ", f"\n@@{token} ", text)
    release, boot_seconds, results, done = parse_results(text, token)
    if release is None:
        raise GuestError(f"the {image.release} guest never ran /init (console: {_tail(console)})")
    if not done:
        missing = [p.name for p in programs if p.name not in results]
        raise GuestError(f"the {image.release} guest stopped before finishing {missing[:3]} "
                         f"(console: {_tail(console)})")
    return results, LineBoot(round(seconds, 1), len(programs), release, boot_seconds,
                             round(sum(r.seconds for r in results.values()), 2),
                             sorted(((r.name, r.seconds) for r in results.values()), key=lambda x: -x[1])[:5],
                             attempt + 1)
