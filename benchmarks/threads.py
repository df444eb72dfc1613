"""Item 3: what a thread costs with the generated registration, per protocol
and glibc setting, in time and in syscalls."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from benchmarks.common import (C_DIR, GLIBC_ENVS, PROTOCOLS, Compiler, Sample, generate, run,
                               run_kv)

BASELINE = "none"

_SYSCALL_LINE = re.compile(r"^(\d+)\s+([a-z_0-9]+)\((.*)$")
_RESUMED_LINE = re.compile(r"^(\d+)\s+<\.\.\. ([a-z_0-9]+) resumed>(.*)$")

#: Calls whose number depends on timing, left out of the per-thread totals
#: the goals compare (each counted under its own name): futex (pthread_join
#: waiting or not) and munmap (glibc's thread-stack cache frees a stack or
#: not depending on when the thread finished: the same binary made 3 and 2
#: in two runs, which moved "extra syscalls per thread" by 0.05).
TIMING_DEPENDENT = ("futex", "munmap")


def _classify_rseq(counts: dict, args: str, result: str) -> None:
    fields = args.split(",")
    flags = fields[2].strip() if len(fields) > 2 else "0"
    try:
        unregister = "UNREGISTER" in flags or bool(int(flags, 0) & 1)
    except ValueError:
        unregister = False
    if unregister:
        counts["rseq_unregister"] += 1
    elif re.search(r"=\s*-1\b", result):
        counts["rseq_failed"] += 1
    else:
        counts["rseq_register"] += 1


def _split_result(text: str) -> tuple:
    """'0x7f, 0x20, 0, 0x53053053)   = -1 EINVAL (...)' -> (arguments, '= -1 EINVAL (...)')."""
    parts = re.split(r"\)\s*=", text, maxsplit=1)
    return (parts[0], "=" + parts[1]) if len(parts) == 2 else (text, "")


def count_syscalls(trace: str) -> dict:
    """Syscalls in an ``strace -f -o`` file: every call once (a call strace
    split into "<unfinished ...>" and "<... resumed>" counts once, classified
    by its result), rseq split by what it did. ``total`` leaves out the
    TIMING_DEPENDENT calls, each counted under its name."""
    counts = {"total": 0, **dict.fromkeys(TIMING_DEPENDENT, 0),
              "rseq_register": 0, "rseq_unregister": 0, "rseq_failed": 0}
    pending = {}  # pid -> arguments of an unfinished rseq call
    for line in trace.splitlines():
        m = _SYSCALL_LINE.match(line)
        if m:
            pid, name, rest = m.groups()
            if name in TIMING_DEPENDENT:
                counts[name] += 1
                continue
            counts["total"] += 1
            if name == "rseq":
                if rest.rstrip().endswith("<unfinished ...>"):
                    pending[pid] = rest
                else:
                    _classify_rseq(counts, *_split_result(rest))
            continue
        m = _RESUMED_LINE.match(line)
        if m and m.group(2) == "rseq" and m.group(1) in pending:
            whole = pending.pop(m.group(1)).replace("<unfinished ...>", "").rstrip() + m.group(3)
            _classify_rseq(counts, *_split_result(whole))
    for args in pending.values():  # never resumed (killed): count as made
        _classify_rseq(counts, args, "")
    return counts


def _protocols():
    """Protocol names and the owner each one should report, per environment,
    read from the generator's own table."""
    return {name: p.owner for name, p in PROTOCOLS.items()}


class Threads:
    def __init__(self, work: Path, cc: Compiler, *, threads_per_run: int, strace_threads: int,
                 reps: int, log, launcher=()):
        self.work, self.cc, self.k, self.ks, self.reps, self.log = (
            work, cc, threads_per_run, strace_threads, reps, log)
        self.launcher = list(launcher)

    def _build_all(self, protocols) -> dict:
        bins = {BASELINE: self.cc.build(self.work / "bench_thread_none",
                                        [C_DIR / "bench_thread.c"], gen_dir=None)}
        for proto in protocols:
            gen = generate(self.work / f"gen-{proto}", proto)
            bins[proto] = self.cc.build(self.work / f"bench_thread_{proto}",
                                        [C_DIR / "bench_thread.c", gen / "bench_rseq.c"],
                                        gen_dir=gen, flags=("-DWITH_RSEQ",))
        return bins

    def _strace(self, binary: Path, env: str, k: int) -> dict:
        out = self.work / f"strace-{binary.name}-{env}-{k}.txt"
        full_env = dict(os.environ)
        full_env.pop("GLIBC_TUNABLES", None)
        full_env.update(GLIBC_ENVS[env])
        run(["strace", "-f", "-qq", "-o", out, binary, "time", k], env=full_env)
        return count_syscalls(out.read_text())

    def run(self) -> dict:
        owners_expected = _protocols()
        bins = self._build_all(owners_expected)
        have_strace = shutil.which("strace") is not None
        records = []
        for env in GLIBC_ENVS:
            samples = {name: Sample() for name in bins}
            for rep in range(self.reps):
                for name, binary in bins.items():
                    out = run_kv([*self.launcher, binary, "time", self.k], GLIBC_ENVS[env])
                    samples[name].values.append(float(out["ns_per_thread"]))
            per_thread = {}
            if have_strace:
                # The difference of two runs (ks and 2*ks threads): the first
                # thread's one-time costs (its stack mmap, later reused from
                # glibc's cache) cancel out.
                for name, binary in bins.items():
                    c1 = self._strace(binary, env, self.ks)
                    c2 = self._strace(binary, env, 2 * self.ks)
                    per_thread[name] = {key: (c2[key] - c1[key]) / self.ks for key in c2}
            base_ns = samples[BASELINE].median
            for name, binary in bins.items():
                info = run_kv([binary, "info"], GLIBC_ENVS[env])
                rec = {"item": "registration", "env": env, "protocol": name,
                       "owner": info.get("owner"),
                       "expected_owner": owners_expected.get(name, {}).get(env, "n/a"),
                       "registrations_seen": int(info.get("registrations", 0)),
                       "threads_per_run": self.k, **samples[name].as_dict(),
                       "ratio": samples[name].median / base_ns if base_ns else None}
                if name in per_thread:
                    rec["syscalls_per_thread"] = per_thread[name]
                    rec["extra_syscalls_per_thread"] = {
                        key: per_thread[name][key] - per_thread[BASELINE][key]
                        for key in per_thread[name]}
                records.append(rec)
            self.log(f"registration/{env}: done")
        return {"records": records, "strace": have_strace,
                "strace_threads": self.ks if have_strace else 0}
