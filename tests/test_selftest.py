"""``rseq-gen selftest`` on this machine (gcc, clang, i386; glibc's
registration on and off), its JSON against selftest-schema.json, a witness
that reports a lost update (the exit status and the verdict), bad input, and
the known kernel problems ``rseq-gen probe`` reports
(rseq_gen.kernel_problems). The witness in every guest kernel:
tests/test_kernels.py."""

from __future__ import annotations

import json
import os
import stat
from importlib.resources import files

import jsonschema
import pytest

from conftest import require_tool, run_rseq_gen
from rseq_gen import selftest
from rseq_gen.kernel_problems import KERNEL_PROBLEMS, problems_for, status
from rseq_gen.probe import ProbeInputs, decide

SCHEMA = json.loads(files("rseq_gen").joinpath("selftest-schema.json").read_text())
RSEQ_OFF = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}


def _selftest(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return run_rseq_gen("selftest", "--json", "--seconds", "1.2", *args, check=False, env=env, timeout=300)


@pytest.mark.parametrize("cc, env, owner", [
    ("gcc", {}, "glibc"),
    ("gcc", RSEQ_OFF, "self"),
    ("clang", {}, "glibc"),
    ("i686-linux-gnu-gcc", RSEQ_OFF, "self"),
])
def test_selftest_passes_on_this_machine(cc, env, owner):
    require_tool(cc, {"i686-linux-gnu-gcc": "gcc-i686-linux-gnu"}.get(cc))
    proc = _selftest("--cc", cc, env_extra=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["registration"]["owner"] == owner and report["registration"]["length"] == 32
    props = report["properties"]
    for name in ("registration", "abort_on_preemption", "abort_on_signal", "abort_on_migration",
                 "no_lost_update", "mm_cid"):  # this machine: 2 CPUs, kernel 6.18 (mm_cid)
        assert props[name]["verdict"] == "pass", (name, props[name])
    assert props["abort_on_preemption"]["aborts"] > 0
    lengths = report["registration"]["length_errno"]
    if owner == "self":  # nobody registered the witness's fresh thread: 6.18 takes 32 and longer lengths
        assert lengths["32"] == lengths["64"] == 0 and 64 in props["registration"]["accepted_lengths"], lengths
    else:  # glibc registered it: the kernel refuses a second registration
        assert all(e != 0 for e in lengths.values()), lengths
    assert not report["atomicity_violated"] and report["failed"] == []


def test_text_report_names_every_property():
    proc = run_rseq_gen("selftest", "--seconds", "0.6", check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in selftest.PROPERTIES:
        assert f"  {name} " in proc.stdout and "PASS" in proc.stdout
    assert proc.stdout.rstrip().endswith("atomicity held in every phase")


FAKE_WITNESS = """#!/bin/sh
echo '{"event": "registration", "owner": "glibc", "length": 32, "errno": 0, "feature_size": 28, "feature_align": 32, "mm_cid_available": 1, "node_id_available": 1, "max_cpus": 2, "max_mm_cids": 2, "cpus_allowed": 2, "kernel": "6.19.0", "machine": "aarch64", "delay": 2000, "length_errno": {"32": 16, "64": 22}}'
echo '{"event": "phase", "name": "preemption-cpu", "disturbance": "preemption", "mode": "cpu", "threads": 3, "pinned_cpu": 0, "milliseconds": 100, "ops": 1000, "total": 998, "aborts": 0, "signals": 0, "moves": 0, "index_changes": 0, "index_max": 0, "index_bound": 2, "index_out_of_bound": 0}'
echo '{"event": "done"}'
"""


def test_a_lost_update_fails_with_exit_1(tmp_path):
    """A kernel that lets a preempted sequence commit (the arm64 6.19
    regression) shows as adds missing from the slots: a compiler that
    "builds" a witness reporting exactly that drives the CLI."""
    cc = tmp_path / "fake-cc"
    cc.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ "$1" = -o ]; then out=$2; fi; shift; done\n'
                  f"cat > \"$out\" <<'EOF'\n{FAKE_WITNESS}EOF\nchmod +x \"$out\"\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    proc = _selftest("--cc", str(cc))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["atomicity_violated"] and "abort_on_preemption" in report["failed"]
    assert "1000 adds done, 998 found" in report["properties"]["abort_on_preemption"]["detail"]
    # the phases that did not run are failures, not passes
    assert report["properties"]["no_lost_update"]["verdict"] == "fail"


def test_judge_calls_exact_totals_without_aborts_inconclusive():
    text = FAKE_WITNESS.replace('"total": 998', '"total": 1000')
    records = selftest.parse("\n".join(ln[len("echo '"):-1] for ln in text.splitlines() if ln.startswith("echo")))
    assert len(records) == 3
    report = selftest.judge(records)
    assert report["properties"]["abort_on_preemption"]["verdict"] == "inconclusive"


@pytest.mark.parametrize("args, message", [
    (("--seconds", "0"), "--seconds 0.0: give 0.1 to 600"),
    (("--cc", "no-such-compiler-x"), "compiler 'no-such-compiler-x' not found"),
    (("--cc", "gcc -DRSEQSELFTEST_RSEQ_ON_ABORT=nonsense("), "the witness did not build"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_rseq_gen("selftest", *args, check=False, timeout=300)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


# ---- known kernel problems ------------------------------------------------------

def test_the_arm64_regression_range():
    arm64 = next(p for p in KERNEL_PROBLEMS if p.id == "arm64-no-abort-on-preemption")
    assert status(arm64, "6.18.44", "aarch64") is None
    assert status(arm64, "6.19.3-arm64", "aarch64") == "affected"
    assert status(arm64, "6.19.3", "armv8l") == "affected"      # a 32-bit program on that kernel
    assert status(arm64, "7.0.5", "aarch64") == "possibly affected"
    assert status(arm64, "7.1.0", "aarch64") is None
    assert status(arm64, "7.2.13+deb14-cloud-arm64", "aarch64") is None
    assert status(arm64, "6.19.3", "x86_64") is None
    assert [p.id for p, _ in problems_for("6.19.1", "x86_64")] == ["cpu-id-start-not-rewritten"]


def test_every_problem_row_is_complete():
    for p in KERNEL_PROBLEMS:
        assert p.sources and p.effect and p.generated_code and p.title
        assert p.fixed_in is None or p.since < p.fixed_in
        assert all(p.since <= u < (p.fixed_in or (999, 0)) for u in p.uncertain)
    assert next(p for p in KERNEL_PROBLEMS if p.id == "cpu-id-start-not-rewritten").rule == "RSEQ706"


@pytest.mark.parametrize("release, machine, want", [
    ("6.19.2", "aarch64", ["arm64-no-abort-on-preemption", "cpu-id-start-not-rewritten"]),
    ("7.0.1", "aarch64", ["arm64-no-abort-on-preemption", "cpu-id-start-not-rewritten"]),
    ("6.18.44-fc-v1147", "x86_64", []),
    ("7.2.13+deb14-amd64", "x86_64", []),
])
def test_probe_reports_known_bad_kernels(release, machine, want):
    inp = ProbeInputs(machine=machine, kernel_release=release, rseq_errno=22)
    d = decide(inp)
    assert [p["id"] for p in d.kernel_problems] == want
    for p in d.kernel_problems:
        assert any(p["id"] in w and "known problem" in w for w in d.warnings), d.warnings
