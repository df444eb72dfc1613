"""Other glibc releases for the tests: Debian's libc6 of another suite,
fetched with apt into the pytest cache, unpacked with dpkg-deb, and run
through its own dynamic loader (``ld-linux-x86-64.so.2 --library-path DIR
PROGRAM``). The release marked ``sysroot`` also brings its development
files: programs are built against it with ``--sysroot``.

Each release is fetched once per checkout (``.pytest_cache/d/rseq-gen-glibc``)
and shared by every pytest-xdist worker: one worker fetches under a file
lock, the others wait and use its result; the unpacked tree appears under
its final name only when complete (an atomic rename). Once cached, nothing
touches the network. A fetch that fails is one line saying what could not
be fetched (the caller turns it into ``pytest.fail``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import locked

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: Run-time files: the dynamic loader, libc.so.6 and its companions.
RUN_PACKAGES = ("libc6",)
#: A build sysroot: libc6-dev's headers include linux-libc-dev's, and the
#: compiler drivers link libgcc_s (as needed) from the sysroot.
SYSROOT_PACKAGES = ("libc6", "libc6-dev", "linux-libc-dev", "libgcc-s1")
LOADER = "ld-linux-x86-64.so.2"


def version_key(version: str) -> tuple[int, ...]:
    """"2.31" -> (2, 31), for comparing releases."""
    return tuple(int(x) for x in version.split("."))


@dataclass(frozen=True)
class Release:
    """One glibc release, as one Debian suite ships it (x86_64)."""

    version: str
    suite: str
    #: Directory (in the unpacked packages) holding ld.so and libc.so.6.
    libdir: str
    #: How ``__rseq_size`` is set where glibc registered: None (no rseq ABI,
    #: glibc < 2.35), "20" (the bug 31965 fix Debian backported to 2.36: 20
    #: for the 32 bytes registered), "feature-size" (2.41+: the kernel's
    #: AT_RSEQ_FEATURE_SIZE, at least 20). rseq-abi.md section 2.3.
    rseq_size_rule: str | None
    #: Sign of ``__rseq_offset`` on x86_64: the area is in struct pthread,
    #: above the thread pointer, up to 2.40; in the extra TLS block below it
    #: from 2.41 on.
    rseq_offset_sign: int | None
    #: Also a build sysroot (SYSROOT_PACKAGES).
    sysroot: bool = False
    mirror: str = MIRROR

    @property
    def rseq_abi(self) -> bool:
        """``__rseq_offset``/``__rseq_size`` and the glibc.pthread.rseq tunable."""
        return self.rseq_size_rule is not None

    @property
    def packages(self) -> tuple[str, ...]:
        return SYSROOT_PACKAGES if self.sysroot else RUN_PACKAGES

    def rseq_size(self, feature_size: int) -> int:
        """``__rseq_size`` where this glibc registered, on a kernel whose
        AT_RSEQ_FEATURE_SIZE is ``feature_size`` (0: not provided)."""
        if self.rseq_size_rule == "20":
            return 20
        return max(feature_size, 20)

    def registration_length(self, feature_size: int) -> int:
        """The length this glibc passes to rseq(): __rseq_size, at least 32."""
        return max(self.rseq_size(feature_size), 32)


RELEASES: dict[str, Release] = {
    r.version: r
    for r in (
        Release("2.31", "bullseye", "lib/x86_64-linux-gnu", None, None, sysroot=True),
        Release("2.36", "bookworm", "lib/x86_64-linux-gnu", "20", 1),
        Release("2.41", "trixie", "usr/lib/x86_64-linux-gnu", "feature-size", -1),
    )
}


def host_version() -> str:
    """The glibc this Python runs on ("2.36")."""
    name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    if name != "glibc":
        raise RuntimeError(f"the tests need a glibc host, not {name or 'an unknown libc'}")
    return version


class FetchError(Exception):
    """One line: what could not be fetched, and why."""


@dataclass(frozen=True)
class Glibc:
    """A release on this machine: the host's own (root None) or unpacked
    from its Debian packages."""

    release: Release
    root: Path | None

    @property
    def name(self) -> str:
        return f"glibc-{self.release.version}"

    @property
    def is_host(self) -> bool:
        return self.root is None

    @property
    def libdir(self) -> Path:
        assert self.root is not None
        return self.root / self.release.libdir

    def launcher(self) -> list[str]:
        """What runs a program on this glibc (prepended to its command)."""
        if self.is_host:
            return []
        return [str(self.libdir / LOADER), "--library-path", str(self.libdir)]

    def sysroot_flags(self) -> list[str]:
        """Compile and link flags that build against this glibc, for gcc and
        clang alike. Debian's gcc is configured without a sysroot, so its
        start files and library directories are relative to its own prefix:
        -B puts the sysroot's crt*.o and libraries first (clang needs only
        --sysroot)."""
        if self.is_host:
            return []
        assert self.release.sysroot, f"glibc {self.release.version} is fetched without libc6-dev"
        return [f"--sysroot={self.root}", f"-B{self.root}/usr/lib/x86_64-linux-gnu/"]


def apt_options(base: Path) -> list[str]:
    """apt reads only the suite's index in ``base`` (and the host's
    apt.conf, so proxies still apply): no host sources, preferences, dpkg
    status or locks."""
    state, cache, etc = base / "state", base / "cache", base / "etc"
    return [
        "-o", f"Dir::State={state}", "-o", f"Dir::State::status={state / 'status'}",
        "-o", f"Dir::Cache={cache}", "-o", f"Dir::Etc::SourceList={etc / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null", "-o", "Dir::Etc::Preferences=/dev/null",
        "-o", "Dir::Etc::PreferencesParts=/dev/null", "-o", "Debug::NoLocking=1",
        "-o", "APT::Architecture=amd64", "-o", "APT::Architectures=amd64",
        "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30",
        # as root, apt downloads as _apt, which cannot write into the cache
        *(["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []),
    ]


def apt_dir(apt: Path, suite: str, mirror: str = MIRROR) -> list[str]:
    """A fresh private apt directory at ``apt`` that reads only ``suite``'s
    index (``debs/`` is where downloads go); returns the apt options."""
    shutil.rmtree(apt, ignore_errors=True)
    for d in ("state/lists/partial", "cache/archives/partial", "etc", "debs"):
        (apt / d).mkdir(parents=True)
    (apt / "state" / "status").write_text("")
    (apt / "etc" / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror} {suite} main\n")
    return apt_options(apt)


def apt_run(cmd: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run an apt or dpkg command; FetchError (one line) when it fails."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise FetchError(f"{what}: {cmd[0]} not found (install apt and dpkg)") from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what}: {cmd[0]} did not finish in 600 s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "W:"))] or lines or [f"exit {proc.returncode}"]
        raise FetchError(f"{what}: {errors[0]}")
    return proc


def _relative_symlinks(root: Path) -> None:
    """Debian's packages hold absolute symlinks (lib64/ld-linux-x86-64.so.2
    -> /lib/x86_64-linux-gnu/..., libdl.so -> /lib/...): point them inside
    the tree, or the linker and loader would reach the host's files."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if link.is_symlink() and os.readlink(link).startswith("/"):
                target = root / os.readlink(link).lstrip("/")
                link.unlink()
                link.symlink_to(os.path.relpath(target, link.parent))


def _fetch(release: Release, base: Path, root: Path) -> None:
    what = (f"could not fetch glibc {release.version} (Debian {release.suite}: "
            f"{' '.join(release.packages)}) from {release.mirror}")
    if not Path(KEYRING).exists():
        raise FetchError(f"{what}: {KEYRING} is missing (install debian-archive-keyring)")
    apt = base / "apt"
    opts = apt_dir(apt, release.suite, release.mirror)
    apt_run(["apt-get", *opts, "--error-on=any", "-q", "update"], what)
    apt_run(["apt-get", *opts, "-q", "download", *release.packages], what, cwd=apt / "debs")
    debs = sorted((apt / "debs").glob("*.deb"))
    if len(debs) != len(release.packages):
        raise FetchError(f"{what}: apt-get download gave {[d.name for d in debs]}")
    partial = base / "root.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for deb in debs:
        apt_run(["dpkg-deb", "-x", str(deb), str(partial)], f"could not unpack {deb.name}")
    _relative_symlinks(partial)
    (partial / "PACKAGES").write_text("".join(f"{d.name}\n" for d in debs))
    if not (partial / release.libdir / LOADER).exists():
        raise FetchError(f"{what}: no {release.libdir}/{LOADER} in {[d.name for d in debs]}")
    partial.rename(root)
    shutil.rmtree(apt, ignore_errors=True)


def provide(release: Release, cache_dir: Path) -> Glibc:
    """The release on this machine: the host's glibc when it is this release,
    else the unpacked packages, fetched on first use (FetchError)."""
    if host_version() == release.version:
        return Glibc(release, None)
    base = cache_dir / f"{release.suite}-{'sysroot' if release.sysroot else 'run'}"
    root = base / "root"
    with locked(cache_dir / f"{base.name}.lock"):
        if not root.is_dir():
            _fetch(release, base, root)
    return Glibc(release, root)
