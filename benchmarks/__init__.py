"""Benchmarks of the code rseq-gen generates (issue 6).

``python -m benchmarks [--quick] [--json FILE]`` generates the code into a
temporary directory, builds the C programs under ``benchmarks/c`` with -O2,
runs every case several times (interleaved) and prints one table: median
ns/op, the spread, and the ratio to the baseline measured in the same run.

Cases (see docs/benchmarks.md for what each one measures and the results):

1. current CPU: ``bench_current_cpu()`` vs ``sched_getcpu()`` vs the raw
   getcpu syscall vs a plain TLS load (the floor), under glibc ownership and
   with glibc's registration off (``GLIBC_TUNABLES=glibc.pthread.rseq=0``);
2. per-CPU counter: ``bench_percpu_counter_add`` vs one shared
   ``__atomic_fetch_add`` counter vs ``sched_getcpu()`` + an atomic on a
   per-CPU slot, at 1 thread and at ``nproc`` threads;
3. registration: pthread_create + join with and without the generated code,
   per protocol, both glibc settings, and the syscalls per thread (strace -f);
4. build overhead: configure + build of a small CMake project with and
   without ``rseq_gen_add_library``, and a no-op rebuild.

``benchmarks/verify_bench.py`` belongs to the verifier benchmark and is not run
from here.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    from benchmarks.runner import main as _main

    return _main(argv)
