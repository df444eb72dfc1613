"""Where the installed CMake package lives (``rseq-gen --cmakedir``).

The wheel build (scikit-build-core running cmake/CMakeInstall.cmake) puts
RseqGenConfig.cmake and its helpers in ``rseq_gen/share/cmake/RseqGen``. A
source checkout has no such directory: the config file is made from
cmake/RseqGenConfig.cmake.in only when the package is installed.
"""

from __future__ import annotations

from pathlib import Path

from rseq_gen.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
#: Relative to the package; keep in sync with RSEQ_GEN_CMAKECONFIG_DIR in
#: cmake/CMakeInstall.cmake.
CMAKE_SUBDIR = Path("share", "cmake", "RseqGen")
CONFIG_FILE = "RseqGenConfig.cmake"


def cmake_dir() -> Path:
    """The directory that holds RseqGenConfig.cmake, for ``-DRseqGen_DIR=``.

    Raises UsageError (exit code 2, one line) when the package is not
    installed, e.g. when run with PYTHONPATH pointing into a source tree.
    """
    directory = PACKAGE_DIR / CMAKE_SUBDIR
    if (directory / CONFIG_FILE).is_file():
        return directory
    raise UsageError(
        f"--cmakedir: no {CONFIG_FILE} in {directory}: this rseq-gen runs from a "
        "source tree, and the CMake package is only made when the wheel is built; "
        "install it first (pip install <path to rseq-gen>) and run the installed rseq-gen")
