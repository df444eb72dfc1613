"""Where the installed build-system files live (``rseq-gen --cmakedir``,
``--pkgconfigdir``, ``--aclocaldir``).

The wheel build (scikit-build-core running CMakeLists.txt) puts them next to
the Python package:

- ``rseq_gen/share/cmake/RseqGen``: RseqGenConfig.cmake and its helpers;
- ``rseq_gen/share/pkgconfig``: rseq-gen.pc (relocatable: every path in it is
  relative to the file itself);
- ``rseq_gen/share/aclocal``: rseq-gen.m4 (the autoconf macros) and
  rseq-gen.mk (the make rules configure puts into a Makefile).

A source checkout has none of them: they are made or copied only when the
wheel is built (the .pc and the CMake config carry the version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rseq_gen.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class InstalledDir:
    option: str          # the CLI flag that prints it
    subdir: Path         # relative to the package; keep in sync with CMakeLists.txt
    marker: str          # a file that is there exactly when the directory is installed
    what: str            # for the error message

    def path(self) -> Path:
        """The directory, or UsageError (exit code 2, one line) when this
        rseq-gen is not installed, e.g. runs with PYTHONPATH into a source tree."""
        directory = PACKAGE_DIR / self.subdir
        if (directory / self.marker).is_file():
            return directory
        raise UsageError(
            f"{self.option}: no {self.marker} in {directory}: this rseq-gen runs from a "
            f"source tree, and {self.what} is only made when the wheel is built; "
            "install it first (pip install <path to rseq-gen>) and run the installed rseq-gen")


#: CLI flag (without dashes) -> the directory it prints.
INSTALLED_DIRS = {
    "cmakedir": InstalledDir("--cmakedir", Path("share", "cmake", "RseqGen"), "RseqGenConfig.cmake",
                             "the CMake package"),
    "pkgconfigdir": InstalledDir("--pkgconfigdir", Path("share", "pkgconfig"), "rseq-gen.pc",
                                 "the pkg-config file"),
    "aclocaldir": InstalledDir("--aclocaldir", Path("share", "aclocal"), "rseq-gen.m4",
                               "the autoconf macro file"),
}

#: Kept for callers of the first version of this module.
CMAKE_SUBDIR = INSTALLED_DIRS["cmakedir"].subdir
CONFIG_FILE = INSTALLED_DIRS["cmakedir"].marker


def cmake_dir() -> Path:
    """The directory that holds RseqGenConfig.cmake, for ``-DRseqGen_DIR=``."""
    return INSTALLED_DIRS["cmakedir"].path()


def pkgconfig_dir() -> Path:
    """The directory that holds rseq-gen.pc, for ``PKG_CONFIG_PATH``."""
    return INSTALLED_DIRS["pkgconfigdir"].path()


def aclocal_dir() -> Path:
    """The directory that holds rseq-gen.m4 and rseq-gen.mk, for ``ACLOCAL_PATH``."""
    return INSTALLED_DIRS["aclocaldir"].path()
