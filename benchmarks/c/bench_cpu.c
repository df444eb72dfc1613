/* Item 1: the cost of reading the current CPU (and of finding the area).
 *
 *   bench_cpu CASE ITERATIONS
 *     -> prints "ns_per_op=<float> wall_ns_per_op=<float> owner=<owner> ..."
 *
 * ns_per_op is the thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID), so
 * preemption by other work on the machine does not count; wall_ns_per_op is
 * the elapsed time per call.
 *
 * CASE, generated code beside its floor (floor.h, the shortest correct
 * hand-written code for the same job, in this same binary):
 *   rseqgen       bench_current_cpu()          floor      floor_current_cpu()
 *   rseqgen_raw   bench_current_cpu_raw()      floor_raw  floor_current_cpu_raw()
 *   rseqgen_area  bench_area()                 floor_area floor_area()
 * References: sched_getcpu, syscall (the raw getcpu syscall), tls (a plain
 * initial-exec TLS load).
 *   rseqgen_at    bench_current_cpu_at(off)    floor_hoisted  floor_current_cpu()
 *                 with off = bench_area_offset() and the floor's offset read
 *                 once before the loop (the offset-taking form for hot loops) */
#include "bench.h"
#include "bench_rseq.h"
/* The floor reads the generated module's own offset word (floor.h). */
#ifdef BENCH__AREA_OFFSET_AT_LOAD
#define FLOOR_OFFSET_WORD bench__exe_area_offset_direct
#endif
#include "floor.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile long bench_sink;
FLOOR_DEFINE_OFFSET();
static __thread int floor_tls __attribute__((tls_model("initial-exec")));

#define CPU_LOOP(name, expr) BENCH_SUM_LOOP(loop_##name, expr)

CPU_LOOP(rseqgen, bench_current_cpu())
CPU_LOOP(floor, floor_current_cpu())
CPU_LOOP(rseqgen_raw, bench_current_cpu_raw())
CPU_LOOP(floor_raw, floor_current_cpu_raw())
CPU_LOOP(rseqgen_area, (intptr_t)bench_area())
CPU_LOOP(floor_area, (intptr_t)floor_area())
CPU_LOOP(sched_getcpu, sched_getcpu())
CPU_LOOP(tls, *(volatile int *)&floor_tls)

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

BENCH_FN static long loop_rseqgen_at(long n)
{
    long sum = 0;
    ptrdiff_t off = bench_area_offset();
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += bench_current_cpu_at(off);
    return sum;
}

BENCH_FN static long loop_floor_hoisted(long n)
{
    long sum = 0;
    ptrdiff_t off = floor_offset();
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        sum += floor_current_cpu_at(off);
    return sum;
}

static const struct {
    const char *name;
    long (*fn)(long);
} cases[] = {
    {"rseqgen", loop_rseqgen},
    {"floor", loop_floor},
    {"rseqgen_raw", loop_rseqgen_raw},
    {"floor_raw", loop_floor_raw},
    {"rseqgen_area", loop_rseqgen_area},
    {"floor_area", loop_floor_area},
    {"sched_getcpu", loop_sched_getcpu},
    {"syscall", loop_syscall},
    {"tls", loop_tls},
    {"rseqgen_at", loop_rseqgen_at},
    {"floor_hoisted", loop_floor_hoisted},
};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CASE ITERATIONS\n", argv[0]);
        return 2;
    }
    long n = bench_arg_long(argv[2], "iterations");
    /* Register first: the floor never registers, and its offset is the one
     * the generated code found (an area with cpu_id < 0 when there is none). */
    bench_register_current_thread();
    FLOOR_SET_OFFSET(bench__area_offset());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) != 0)
            continue;
        bench_sink += cases[i].fn(n / 10 + 1);  /* warm up */
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
