/* Item 2: a per-CPU counter, at 1..N threads.
 *
 *   bench_counter CASE THREADS ITERATIONS
 *     -> prints "ns_per_op=<float> wall_ns_per_op=<float> total_ok=<0|1> owner=<owner>"
 *
 * ns_per_op is the time one thread spends per increment: each thread's own
 * CPU time (CLOCK_THREAD_CPUTIME_ID) from a common start barrier to its last
 * increment, divided by its iterations, averaged over the threads. CPU time,
 * so that preemption by other work on the machine does not count;
 * wall_ns_per_op is the same with elapsed time.
 *
 * CASE: rseqgen (bench_percpu_counter_add on 64-byte-strided per-CPU slots),
 * floor (floor_counter_add64 from floor.h: the shortest correct hand-written
 * restartable sequence for the same add, in this same binary),
 * shared_atomic (__atomic_fetch_add on one shared counter),
 * sched_getcpu_atomic (__atomic_fetch_add on the slot of sched_getcpu()).
 *
 * rseqgen_at (bench_percpu_counter_add_at with off = bench_area_offset()
 * read once before the loop) beside floor_hoisted (the floor's critical
 * section with its offset read once before the loop): the offset-taking form
 * for hot loops. */
#include "bench.h"
#include "bench_rseq.h"
#define FLOOR_BENCH_WORDS 1  /* the floor reads the generated module's words (floor.h) */
#include "floor.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#define STRIDE 64
#define MAX_SLOTS 4096

volatile long bench_sink;
FLOOR_DEFINE_OFFSET();

static char *slots;
static _Alignas(64) intptr_t shared_counter;
static long nslots;

/* The slots stay clear of every offset word either case reads (4K
 * aliasing: bench.h). */
static char *alloc_slots(long n)
{
    const void *words[] = {&bench_rseq_area_offset, &FLOOR_OFFSET_WORD,
#ifdef BENCH__AREA_OFFSET_AT_LOAD
                           &bench__exe_area_offset,
#endif
    };
    return bench_alloc_clear_of((size_t)n, STRIDE, words, sizeof words / sizeof words[0]);
}

static intptr_t *slot_of(char *base, long cpu)
{
    return (intptr_t *)(base + (size_t)cpu * STRIDE);
}

BENCH_FN static void loop_rseqgen(long n)
{
    intptr_t *base = (intptr_t *)slots;  /* a register, not a reload per call */
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        bench_percpu_counter_add(base, STRIDE, 1);
}

BENCH_FN static void loop_floor(long n)
{
    intptr_t *base = (intptr_t *)slots;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        floor_counter_add64(base);
}

BENCH_FN static void loop_rseqgen_at(long n)
{
    intptr_t *base = (intptr_t *)slots;
    ptrdiff_t off = bench_area_offset();
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        bench_percpu_counter_add_at(off, base, STRIDE, 1);
}

BENCH_FN static void loop_floor_hoisted(long n)
{
    intptr_t *base = (intptr_t *)slots;
    ptrdiff_t off = floor_offset();
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        floor_counter_add64_at(off, base);
}

BENCH_FN static void loop_shared_atomic(long n)
{
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(&shared_counter, 1, __ATOMIC_RELAXED);
}

BENCH_FN static void loop_sched_getcpu_atomic(long n)
{
    char *base = slots;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(slot_of(base, sched_getcpu()), 1, __ATOMIC_RELAXED);
}

static void (*loop)(long);
static long iterations;
static pthread_barrier_t start;

struct result {
    uint64_t ns, wall_ns;
};

static void *worker(void *arg)
{
    struct result *r = arg;
    /* Register first: the floor never registers (and never needs to under
     * glibc's registration). */
    bench_register_current_thread();
    loop(iterations / 10 + 1);  /* warm up */
    pthread_barrier_wait(&start);
    uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
    loop(iterations);
    r->ns = bench_cpu_ns() - c0;
    r->wall_ns = bench_now_ns() - t0;
    return NULL;
}

static intptr_t total(void)
{
    intptr_t sum = shared_counter;
    for (long i = 0; i < nslots; i++)
        sum += *slot_of(slots, i);
    return sum;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s CASE THREADS ITERATIONS\n", argv[0]);
        return 2;
    }
    long threads = bench_arg_long(argv[2], "threads");
    iterations = bench_arg_long(argv[3], "iterations");
    if (strcmp(argv[1], "rseqgen") == 0)
        loop = loop_rseqgen;
    else if (strcmp(argv[1], "floor") == 0)
        loop = loop_floor;
    else if (strcmp(argv[1], "rseqgen_at") == 0)
        loop = loop_rseqgen_at;
    else if (strcmp(argv[1], "floor_hoisted") == 0)
        loop = loop_floor_hoisted;
    else if (strcmp(argv[1], "shared_atomic") == 0)
        loop = loop_shared_atomic;
    else if (strcmp(argv[1], "sched_getcpu_atomic") == 0)
        loop = loop_sched_getcpu_atomic;
    else {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    nslots = sysconf(_SC_NPROCESSORS_CONF);
    if (threads < 1 || nslots < 1 || nslots > MAX_SLOTS) {
        fprintf(stderr, "bad thread count or too many CPUs\n");
        return 2;
    }
    bench_register_current_thread();
    FLOOR_SET_OFFSET(bench__area_offset());  /* the same for every thread */
    slots = alloc_slots(nslots);
    if (slots == NULL) {
        perror("aligned_alloc");
        return 1;
    }
    pthread_t tid[threads];
    struct result res[threads];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (long t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, &res[t]) != 0) {
            perror("pthread_create");
            return 1;
        }
    double ns = 0, wall = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        ns += (double)res[t].ns;
        wall += (double)res[t].wall_ns;
    }
    intptr_t expect = (intptr_t)threads * (iterations + iterations / 10 + 1);
    double div = (double)threads * (iterations ? (double)iterations : 1.0);
    printf("ns_per_op=%.6f wall_ns_per_op=%.6f total_ok=%d owner=%s\n",
           ns / div, wall / div, total() == expect, bench_owner());
    return total() == expect ? 0 : 1;
}
