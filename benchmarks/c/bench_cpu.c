/* Item 1: the cost of reading the current CPU.
 *
 *   bench_cpu CASE ITERATIONS
 *     -> prints "ns_per_op=<float> wall_ns_per_op=<float> owner=<owner> ..."
 *
 * ns_per_op is the thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID), so
 * preemption by other work on the machine does not count; wall_ns_per_op is
 * the elapsed time per call.
 *
 * CASE: rseqgen (bench_current_cpu), sched_getcpu, syscall (the raw getcpu
 * syscall), tls (a plain initial-exec TLS load: the floor).
 *
 * Diagnostics (what the fast path would cost if shaped differently; they use
 * the generated header's internals, bench_rseq_area_offset and
 * bench__arch_load_s32, and are not part of the API):
 *   rseqgen_raw       bench_current_cpu_raw() (no cpu >= 0 check)
 *   diag_no_offcheck  one load of the offset, the TLS load, the cpu >= 0
 *                     check: bench_current_cpu() without its offset != 0
 *                     branch (as if the offset always pointed at an area)
 *   diag_hoisted      the offset read once before the loop: the TLS load
 *                     and the cpu >= 0 check per call */
#include "bench.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench_rseq.h"

volatile long bench_sink;
static __thread int floor_tls __attribute__((tls_model("initial-exec")));

BENCH_FN static long loop_rseqgen(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += bench_current_cpu();
    return sum;
}

BENCH_FN static long loop_rseqgen_raw(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += bench_current_cpu_raw();
    return sum;
}

BENCH_FN static long loop_sched_getcpu(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += sched_getcpu();
    return sum;
}

BENCH_FN static long loop_syscall(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++) {
        unsigned int cpu = 0;
        syscall(SYS_getcpu, &cpu, NULL, NULL);
        sum += cpu;
    }
    return sum;
}

BENCH_FN static long loop_tls(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += *(volatile int *)&floor_tls;
    return sum;
}

static inline int cpu_no_offcheck(void)
{
    int cpu = bench__arch_load_s32(__atomic_load_n(&bench_rseq_area_offset, __ATOMIC_RELAXED),
                                     offsetof(struct bench_rseq_area, cpu_id));
    if (__builtin_expect(cpu >= 0, 1))
        return cpu;
    return bench__current_cpu_slow();
}

BENCH_FN static long loop_diag_no_offcheck(long n)
{
    long sum = 0;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += cpu_no_offcheck();
    return sum;
}

BENCH_FN static long loop_diag_hoisted(long n)
{
    long sum = 0;
    ptrdiff_t off = __atomic_load_n(&bench_rseq_area_offset, __ATOMIC_RELAXED);
    if (off == 0)
        return loop_rseqgen(n);
    BENCH_PAD();
    for (long i = 0; i < n; i++) {
        int cpu = bench__arch_load_s32(off, offsetof(struct bench_rseq_area, cpu_id));
        sum += __builtin_expect(cpu >= 0, 1) ? cpu : bench__current_cpu_slow();
    }
    return sum;
}

static const struct {
    const char *name;
    long (*fn)(long);
} cases[] = {
    {"rseqgen", loop_rseqgen},
    {"rseqgen_raw", loop_rseqgen_raw},
    {"sched_getcpu", loop_sched_getcpu},
    {"syscall", loop_syscall},
    {"tls", loop_tls},
    {"diag_no_offcheck", loop_diag_no_offcheck},
    {"diag_hoisted", loop_diag_hoisted},
};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CASE ITERATIONS\n", argv[0]);
        return 2;
    }
    long n = bench_arg_long(argv[2], "iterations");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) != 0)
            continue;
        bench_sink += cases[i].fn(n / 10 + 1);  /* warm up (and register) */
        uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
        bench_sink += cases[i].fn(n);
        uint64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
        double div = n ? (double)n : 1.0;
        printf("ns_per_op=%.6f wall_ns_per_op=%.6f owner=%s registrations=%lu\n",
               (double)(c1 - c0) / div, (double)(t1 - t0) / div, bench_owner(),
               bench_registration_count());
        return 0;
    }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
