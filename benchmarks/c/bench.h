/* Shared helpers of the benchmark programs (built by `python -m benchmarks`).
 *
 * Every measured loop lives in its own BENCH_FN function: not inlined, the
 * function aligned to 64 bytes. The runner builds the programs either with
 * -falign-loops=64 (every loop head on a 64-byte boundary: all cases compared
 * at the same alignment) or with -falign-loops=1 and -DPAD_BYTES=k, which
 * shifts the loop by k bytes to sweep the alignments and report a range. */
#ifndef BENCH_H
#define BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PAD_BYTES
#define PAD_BYTES 0
#endif
#define BENCH_STR2(x) #x
#define BENCH_STR(x) BENCH_STR2(x)
/* k one-byte nops before the loop: moves the loop head by k bytes. */
#if PAD_BYTES > 0
#define BENCH_PAD() __asm__ __volatile__(".skip " BENCH_STR(PAD_BYTES) ", 0x90")
#else
#define BENCH_PAD() ((void)0)
#endif
#if defined(__clang__)
#define BENCH_FN __attribute__((noinline, aligned(64)))
#else
#define BENCH_FN __attribute__((noinline, noclone, aligned(64)))
#endif

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: what the measured loops report, so that
 * time spent preempted by other work on a shared machine does not count.
 * (Wall time is printed next to it.) */
static inline uint64_t bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline long bench_arg_long(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

/* Two addresses 4 KiB apart look alike to the store-to-load disambiguation
 * of x86 cores ("4K aliasing"): a load of an area offset right after a store
 * to a slot whose address has the same low 12 bits (64-byte granules) waits
 * for that store. A static array can land there by accident of the link
 * layout. n zeroed elements of `size` bytes (a multiple of 64), none within
 * the 64-byte granule of any of the `navoid` words modulo 4 KiB; NULL if out
 * of memory. (The effect is noted in docs/benchmarks.md.) */
static inline int bench_aliases(const void *a, const void *b)
{
    return (((uintptr_t)a ^ (uintptr_t)b) & 0xfc0) == 0;
}

static inline void *bench_alloc_clear_of(size_t n, size_t size, const void *const *avoid, size_t navoid)
{
    char *base = aligned_alloc(4096, n * size + 8192);
    if (base == NULL)
        return NULL;
    for (size_t shift = 0; shift < 4096; shift += 64) {
        int bad = 0;
        for (size_t i = 0; i < n && !bad; i++)
            for (size_t w = 0; w < navoid && !bad; w++)
                bad = bench_aliases(base + shift + i * size, avoid[w]);
        if (!bad) {
            memset(base + shift, 0, n * size);
            return base + shift;
        }
    }
    memset(base, 0, n * size);
    return base;
}

/* A measured loop of n calls of expr, returning the sum of the results
 * (which keeps them alive without a store per iteration). */
#define BENCH_SUM_LOOP(name, expr)                  \
    BENCH_FN static long name(long n)               \
    {                                               \
        long sum = 0;                               \
        BENCH_PAD();                                \
        for (long i = 0; i < n; i++)                \
            sum += (long)(expr);                    \
        return sum;                                 \
    }

/* Keeps results alive without a store per iteration. */
extern volatile long bench_sink;

#endif
