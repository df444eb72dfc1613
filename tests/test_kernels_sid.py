"""tests/test_kernels.py's batch in Debian sid's 7.x x86_64 guest
(tests/helpers/guest.py): the same boot as tests/test_kernel7.py, x86_64 and i386
programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.guest import XDIST_GROUP, guest_programs
from rseq_gen.protocols import PROTOCOLS
from test_kernels import OPS_RUNS, RUNS, SID_LINE, batch, check_percpu_ops, check_protocol, check_selftest

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)
ARCHES = ("x86_64", "i386")


@guest_programs
def sid_programs(workdir: Path):
    return batch(SID_LINE, workdir)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("run", list(RUNS))
def test_selftest_in_sid_guest(arch, run, guest_results):
    check_selftest(SID_LINE, arch, run, guest_results.image.release, guest_results)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("run", [*OPS_RUNS, "pinned"])
def test_percpu_ops_in_sid_guest(arch, run, guest_results):
    check_percpu_ops(SID_LINE, arch, run, guest_results)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("run", list(RUNS))
def test_protocols_in_sid_guest(protocol, run, guest_results):
    check_protocol(ARCHES[0], protocol, run, guest_results)
