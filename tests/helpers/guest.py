"""A second kernel for the test suite: Debian sid's newest 7.x kernel, booted
under qemu-system-x86_64 (TCG), running test programs in batches.

Fetching (once; cached in the pytest cache directory, offline afterwards):
apt-get reads sid's index into a private state directory (nothing of the
host's apt configuration changes), downloads the newest
``linux-binary-7.*-amd64`` (the vmlinuz), its ``linux-base-*`` (the kernel's
``config``) and sid's ``libc6`` (the glibc dynamic programs run on), and
``dpkg-deb -x`` unpacks them. ``pytest --cache-clear`` forgets them.

Booting (once per batch): an uncompressed initramfs (newc cpio written here)
holds busybox-static, sid's glibc as the guest's system libc, and each
program in its own directory ``/p/<name>/``. ``/init`` runs the programs one
after the other and writes each one's exit status, stdout and stderr to the
second serial port, which qemu writes to a host file; the kernel console
(first serial port) is kept for error messages. KVM is not used: where it
exists here it fails ("failed to set MSR 0x10a"); TCG emulates ``-cpu max``.

Adding programs: a test module registers a builder with ``@guest_programs``
(one line on top of a function returning GuestProgram objects) and marks its
tests ``pytest.mark.xdist_group(XDIST_GROUP)``; the session fixture
``guest_results`` (conftest.py) builds the programs of every module that has
a selected test using it, boots once (per pytest-xdist worker: the group
keeps them on one), and maps program names to GuestResult. A test that needs
the guest and cannot have it fails with one line saying why.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from conftest import locked
from helpers.glibcs import KEYRING, FetchError, apt_dir, apt_run
from helpers.toolchains import COMMANDS

#: Where the kernel comes from, as data.
DEBIAN_SUITE = "sid"
KERNEL_PACKAGE = re.compile(r"^linux-binary-(7\.[0-9.]+\+deb[0-9]+)-amd64$")
LIBC_PACKAGE = "libc6"
MULTIARCH = "x86_64-linux-gnu"
#: Files of sid's libc6 the guest needs (dynamic programs, dlopen, pthreads).
LIBC_FILES = ("ld-linux-x86-64.so.2", "libc.so.6")

#: i386 programs run on the x86_64 kernel too, on the host's cross glibc
#: (libc6-i386-cross): (host directory, multiarch directory, loader).
I386_LIBC = ("/usr/i686-linux-gnu/lib", "i386-linux-gnu", "ld-linux.so.2")

QEMU = "qemu-system-x86_64"
QEMU_MACHINE = ("-accel", os.environ.get("RSEQ_GEN_GUEST_ACCEL", "tcg,thread=single"), "-cpu", "max",
                "-smp", "2", "-m", "1024", "-display", "none", "-monitor", "none", "-no-reboot")
KERNEL_CMDLINE = "console=ttyS0 quiet loglevel=1 panic=-1"
#: Seconds for the kernel to boot and power off, on top of the programs'.
BOOT_SECONDS = 120
#: The host packages each tool comes from (Debian 12 and 13; apt and dpkg
#: are part of every Debian system).
TOOL_PACKAGES = {**COMMANDS, "apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg"}
#: pytest-xdist group of every test using the guest: one worker, one boot.
XDIST_GROUP = "linux7-guest"


class GuestError(Exception):
    """The guest cannot be had; str() is the one line a test fails with."""


@dataclass(frozen=True)
class GuestProgram:
    name: str                                   # unique in a batch; [A-Za-z0-9_.-]
    argv: tuple[str, ...]                       # argv[0] is a file of `files` (or a guest path)
    files: Mapping[str, Path]                   # file name in /p/<name>/ -> host file
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: int = 300                          # guest seconds, then SIGKILL


@dataclass
class GuestResult:
    name: str
    returncode: int                             # the shell's: 128 + N when killed by signal N
    stdout: str
    stderr: str
    seconds: float = 0.0                        # guest wall time (TCG: much slower than the host)

    @property
    def signal(self) -> int | None:
        return self.returncode - 128 if self.returncode > 128 else None

    def events(self) -> list[dict]:
        """The JSON objects the program printed, one per line."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def describe(self) -> str:
        return (f"{self.name}: exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
                f"\n--- stderr\n{self.stderr[-2000:]}")


@dataclass(frozen=True)
class KernelImage:
    package: str
    version: str
    release: str            # uname -r
    vmlinuz: Path
    config: Path            # the kernel's .config
    libc_version: str
    libc_dir: Path          # sid's /usr/lib/x86_64-linux-gnu

    def config_value(self, name: str) -> str | None:
        """CONFIG_<name> from the package's config: "y", "m", a value, or None (not set)."""
        m = re.search(rf"^CONFIG_{name}=(.*)$", self.config.read_text(), re.M)
        return m.group(1) if m else None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise GuestError(f"{name} not found: install {TOOL_PACKAGES.get(name, name)} (.ci/run installs it)")
    return path


# ---- fetching ---------------------------------------------------------------

class KernelCache:
    """Debian sid's kernel and glibc, fetched once into `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.apt = self.root / "apt"
        self.record = self.root / "kernel.json"

    @staticmethod
    def _newest_kernel(opts: list[str]) -> tuple[str, str]:
        names = apt_run(["apt-cache", *opts, "search", "--names-only", KERNEL_PACKAGE.pattern],
                        f"looking up Debian {DEBIAN_SUITE}'s kernel packages").stdout.split()
        names = [n for n in names if KERNEL_PACKAGE.match(n)]
        if not names:
            raise GuestError(f"no package matching {KERNEL_PACKAGE.pattern} in Debian {DEBIAN_SUITE}")
        best = None
        for name in sorted(set(names)):
            show = apt_run(["apt-cache", *opts, "show", "--no-all-versions", name], f"apt-cache show {name}").stdout
            found = re.search(r"^Version: (\S+)", show, re.M)
            if found is None:
                raise GuestError(f"apt-cache show {name} printed no Version")
            version = found.group(1)
            if best is None or subprocess.run(["dpkg", "--compare-versions", version, "gt", best[1]]).returncode == 0:
                best = (name, version)
        return best

    def _fetch(self) -> dict:
        for tool in ("apt-get", "apt-cache", "dpkg-deb"):
            _tool(tool)
        if not Path(KEYRING).exists():
            raise GuestError(f"{KEYRING} is missing: install debian-archive-keyring")
        opts = apt_dir(self.apt, DEBIAN_SUITE)
        apt_run(["apt-get", *opts, "--error-on=any", "-q", "update"],
                f"reading Debian {DEBIAN_SUITE}'s package index (needs the network once)")
        package, version = self._newest_kernel(opts)
        flavour = KERNEL_PACKAGE.match(package).group(1)
        release = f"{flavour}-amd64"
        base = f"linux-base-{release}"
        debs = self.apt / "debs"
        apt_run(["apt-get", *opts, "-q", "download", package, base, LIBC_PACKAGE],
                f"downloading {package}, {base} and {LIBC_PACKAGE}", cwd=debs)
        tree = self.root / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            apt_run(["dpkg-deb", "-x", str(deb), str(tree)], f"unpacking {deb.name}")
        libc_deb = next(debs.glob(f"{LIBC_PACKAGE}_*.deb"))
        record = {
            "package": package, "version": version, "release": release,
            "vmlinuz": f"tree/usr/lib/modules/{release}/vmlinuz",
            "config": f"tree/usr/lib/modules/{release}/config",
            "libc_version": libc_deb.name.split("_")[1],
            "libc_dir": f"tree/usr/lib/{MULTIARCH}",
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for key in ("vmlinuz", "config", "libc_dir"):
            if not (self.root / record[key]).exists():
                raise GuestError(f"{record[key]} is missing from the unpacked packages")
        self.record.write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(self.apt, ignore_errors=True)  # the index and the .debs: unpacked now
        return record

    def image(self) -> KernelImage:
        """The cached kernel, fetched first if the cache is empty or incomplete."""
        record = None
        if self.record.exists():
            record = json.loads(self.record.read_text())
            if not all((self.root / record[k]).exists() for k in ("vmlinuz", "config", "libc_dir")):
                record = None
        if record is None:
            self.root.mkdir(parents=True, exist_ok=True)
            with locked(self.root / "fetch.lock"):  # one pytest-xdist worker fetches
                if self.record.exists():
                    record = json.loads(self.record.read_text())
                else:
                    try:
                        record = self._fetch()
                    except FetchError as exc:
                        raise GuestError(str(exc)) from None
        return KernelImage(
            package=record["package"], version=record["version"], release=record["release"],
            vmlinuz=self.root / record["vmlinuz"], config=self.root / record["config"],
            libc_version=record["libc_version"], libc_dir=self.root / record["libc_dir"])


# ---- the initramfs ----------------------------------------------------------

class Cpio:
    """A newc ("070701") archive, the format the kernel unpacks as initramfs."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        self._ino += 1
        name_b = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)
        head = b"070701" + "".join(f"{v:08x}" for v in fields).encode() + name_b
        self._parts += [head, b"\0" * (-len(head) % 4), data, b"\0" * (-len(data) % 4)]

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, executable: bool = True) -> None:
        self._entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def write(self, path: Path) -> None:
        self._entry("TRAILER!!!", 0)
        Path(path).write_bytes(b"".join(self._parts))


_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def init_script(programs: Sequence[GuestProgram], token: str, out: str = "/dev/ttyS1") -> str:
    """/init: run every program, report on `out` (a serial port), power off."""
    lines = [
        "#!/bin/busybox sh",
        "export PATH=/bin",
        "/bin/busybox --install -s /bin",
        "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
        "mount -t tmpfs tmp /tmp",
        f"stty -F {out} raw -echo",
        "read up rest < /proc/uptime",
        f"echo \"@@{token} boot $(uname -r) $up\" > {out}",
    ]
    for p in programs:
        env = " ".join(f"{k}={_sh_quote(v)}" for k, v in sorted(p.env.items()))
        argv0 = p.argv[0] if p.argv[0].startswith("/") else f"/p/{p.name}/{p.argv[0]}"
        cmd = " ".join(_sh_quote(a) for a in (argv0, *p.argv[1:]))
        lines += [
            f"cd /p/{p.name}",
            "read t0 rest < /proc/uptime",
            f"env -i PATH=/bin {env} timeout -s KILL {p.timeout} {cmd} > /tmp/out 2> /tmp/err",
            "rc=$?",
            "read t1 rest < /proc/uptime",
            f"echo '@@{token} stdout {p.name}' > {out}; cat /tmp/out > {out}",
            f"echo '@@{token} stderr {p.name}' > {out}; cat /tmp/err > {out}",
            f"echo \"@@{token} end {p.name} $rc $t0 $t1\" > {out}",
        ]
    lines += ["read up rest < /proc/uptime", f"echo \"@@{token} done $up\" > {out}",
              "poweroff -f", ""]
    return "\n".join(lines)


def add_programs(cpio, programs: Sequence[GuestProgram]) -> None:
    """Each program's files under p/<name>/ of the initramfs (the names are
    unique and safe in the init script)."""
    seen = set()
    for p in programs:
        if not _NAME.match(p.name) or p.name in seen:
            raise ValueError(f"guest program name {p.name!r} is not unique or not [A-Za-z0-9_.-]+")
        seen.add(p.name)
        cpio.directory(f"p/{p.name}")
        for fname, host in p.files.items():
            cpio.file(f"p/{p.name}/{fname}", Path(host).read_bytes())


def build_initramfs(path: Path, image: KernelImage, programs: Sequence[GuestProgram],
                    busybox: str, token: str) -> None:
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "usr", "usr/lib", f"usr/lib/{MULTIARCH}",
              "usr/lib64", "p"):
        cpio.directory(d)
    cpio.symlink("lib", "usr/lib")
    cpio.symlink("lib64", "usr/lib64")
    cpio.file("bin/busybox", Path(busybox).read_bytes())
    for name in LIBC_FILES:
        cpio.file(f"usr/lib/{MULTIARCH}/{name}", (image.libc_dir / name).read_bytes())
    cpio.symlink("usr/lib64/ld-linux-x86-64.so.2", f"../lib/{MULTIARCH}/ld-linux-x86-64.so.2")
    host, multiarch, loader = I386_LIBC
    if not (Path(host) / loader).exists():
        raise GuestError(f"{host}/{loader} is missing: install libc6-dev-i386-cross")
    cpio.directory(f"usr/lib/{multiarch}")
    for name in (loader, "libc.so.6"):
        cpio.file(f"usr/lib/{multiarch}/{name}", (Path(host) / name).resolve().read_bytes())
    cpio.symlink(f"usr/lib/{loader}", f"{multiarch}/{loader}")
    add_programs(cpio, programs)
    cpio.file("init", init_script(programs, token).encode())
    cpio.write(path)


def parse_results(text: str, token: str) -> tuple[str | None, float, dict[str, GuestResult], bool]:
    """(uname -r, uptime at /init, results by name, whether the batch
    finished) from ttyS1."""
    release, boot_seconds, results, done = None, 0.0, {}, False
    name = section = None
    buf: dict[str, list[str]] = {}
    marker = f"@@{token} "
    for line in text.splitlines(keepends=True):
        if line.startswith(marker):
            words = line[len(marker):].split()
            if words[0] == "boot":
                release = words[1] if len(words) > 1 else ""
                boot_seconds = float(words[2]) if len(words) > 2 else 0.0
            elif words[0] in ("stdout", "stderr"):
                section, name = words[0], words[1]
                buf[section] = []
            elif words[0] == "end":
                seconds = float(words[4]) - float(words[3]) if len(words) >= 5 else 0.0
                results[words[1]] = GuestResult(words[1], int(words[2]), "".join(buf.get("stdout", [])),
                                                "".join(buf.get("stderr", [])), round(seconds, 2))
                buf, section = {}, None
            elif words[0] == "done":
                done = True
            continue
        if section is not None:
            buf[section].append(line)
    return release, boot_seconds, results, done


@dataclass
class BootRecord:
    seconds: float          # host wall time of the whole qemu run
    programs: int
    release: str
    boot_seconds: float     # guest uptime when /init started
    program_seconds: float  # guest time spent in the programs
    slowest: list[tuple[str, float]] = field(default_factory=list)



class Guest:
    """Boots the cached kernel with a batch of programs."""

    def __init__(self, cache: KernelCache, workdir: Path):
        self.cache = cache
        self.workdir = Path(workdir)
        self._image: KernelImage | None = None
        self.boots: list[BootRecord] = []

    def image(self) -> KernelImage:
        if self._image is None:
            self._image = self.cache.image()
        return self._image

    @staticmethod
    def tools() -> tuple[str, str]:
        """qemu and busybox, or GuestError naming the missing package."""
        return _tool(QEMU), _tool("busybox")

    def run(self, programs: Sequence[GuestProgram]) -> dict[str, GuestResult]:
        qemu, busybox = self.tools()
        image = self.image()
        self.workdir.mkdir(parents=True, exist_ok=True)
        n = len(self.boots)
        initrd, serial, console = (self.workdir / f"initramfs{n}.cpio", self.workdir / f"serial{n}.txt",
                                   self.workdir / f"console{n}.txt")
        token = secrets.token_hex(8)
        build_initramfs(initrd, image, programs, busybox, token)
        serial.write_text("")
        timeout = BOOT_SECONDS + sum(p.timeout for p in programs)
        cmd = [qemu, *QEMU_MACHINE, "-kernel", str(image.vmlinuz), "-initrd", str(initrd),
               "-append", KERNEL_CMDLINE, "-serial", f"file:{console}", "-serial", f"file:{serial}"]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestError(f"the {image.release} guest did not power off within {timeout} s "
                             f"(console: {_tail(console)})") from None
        seconds = time.monotonic() - start
        if proc.returncode != 0:
            raise GuestError(f"{QEMU} exited {proc.returncode}: "
                             f"{(proc.stderr.strip().splitlines() or ['no message'])[-1]}")
        release, boot_seconds, results, done = parse_results(serial.read_text(errors="replace"), token)
        if release is None:
            raise GuestError(f"the {image.release} guest never ran /init (console: {_tail(console)})")
        if not done:
            missing = [p.name for p in programs if p.name not in results]
            raise GuestError(f"the guest stopped before finishing {missing[:3]} (console: {_tail(console)})")
        record = BootRecord(seconds, len(programs), release, boot_seconds,
                            round(sum(r.seconds for r in results.values()), 2),
                            sorted(((r.name, r.seconds) for r in results.values()), key=lambda x: -x[1])[:5])
        self.boots.append(record)
        return results


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no console output"
    return lines[-1][-200:] if lines else "no console output"


# ---- batches ----------------------------------------------------------------

#: Builders registered by test modules: name -> (module, builder(workdir) -> programs).
BUILDERS: dict[str, tuple[str, Callable[[Path], Iterable[GuestProgram]]]] = {}


def guest_programs(builder: Callable[[Path], Iterable[GuestProgram]]):
    """Decorator: the programs `builder(workdir)` returns join the guest batch
    of every session in which a test of the defining module uses
    ``guest_results``."""
    BUILDERS[f"{builder.__module__}.{builder.__name__}"] = (builder.__module__, builder)
    return builder


class GuestResults:
    """Results by program name; every lookup fails the test with the one
    line that says why when the guest could not run."""

    def __init__(self, results: dict[str, GuestResult] | None, error: str | None,
                 image: KernelImage | None, boots: list[BootRecord]):
        self._results, self.error, self._image, self.boots = results or {}, error, image, boots

    def _fail(self, message: str):
        import pytest

        pytest.fail(message, pytrace=False)

    @property
    def image(self) -> KernelImage:
        if self._image is None:
            self._fail(self.error or "the guest kernel is not available")
        return self._image

    def __getitem__(self, name: str) -> GuestResult:
        if self.error:
            self._fail(self.error)
        if name not in self._results:
            self._fail(f"{name} was not run in the guest (is its builder decorated with @guest_programs?)")
        return self._results[name]

    def names(self) -> list[str]:
        return sorted(self._results)
