/* Portability check for generated rseq code (prefix "rseqgen"), built for
 * every architecture by tests/test_portability.py and run natively or under
 * qemu-user.
 *
 * THREADS threads add 1 to per-CPU slots ITERS times with
 * rseqgen_percpu_counter_add, and ITERS times through a percpu_cmpxchg retry
 * loop; the totals must be exact. (tests/c/percpu_ops.c runs every
 * operation's sequence against a fake area, and the per-CPU structures.)
 *
 * Prints "owner=<main> worker_owner=<thread> cpu=<n> ..." and "OK" or
 * "FAIL: ..." lines; exit status 0 only when everything held.
 */
#define _GNU_SOURCE 1
#include "rseqgen_rseq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef THREADS
#define THREADS 4
#endif

#include "check.h"

#define STRIDE 64 /* one slot per cache line */

static long ncpus;
static long iters;
static char *add_slots;
static char *cas_slots;
static const char *worker_owner;

static void *worker(void *arg)
{
    long i;
    if (arg != NULL)
        worker_owner = rseqgen_owner();
    for (i = 0; i < iters; i++) {
        int cpu = rseqgen_percpu_counter_add((intptr_t *)add_slots, STRIDE, 1);
        if (cpu < 0 || cpu >= ncpus) {
            printf("FAIL: cpu %d out of range\n", cpu);
            exit(1);
        }
        for (;;) {
            int c = rseqgen_current_cpu();
            intptr_t *slot = (intptr_t *)(cas_slots + (size_t)c * STRIDE);
            intptr_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
            if (rseqgen_percpu_cmpxchg(slot, old, old + 1, c) == 0)
                break;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t threads[THREADS];
    long add_total = 0, cas_total = 0, expected;
    int i;

    iters = argc > 1 ? atol(argv[1]) : 20000;
    ncpus = sysconf(_SC_NPROCESSORS_CONF);
    if (ncpus < 1)
        ncpus = 1;
    ncpus += 64; /* slack: a hot-plugged CPU may number past the count */
    add_slots = calloc((size_t)ncpus, STRIDE);
    cas_slots = calloc((size_t)ncpus, STRIDE);
    if (add_slots == NULL || cas_slots == NULL)
        return 2;

    for (i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, i == 0 ? (void *)1 : NULL) != 0) {
            printf("FAIL: pthread_create\n");
            return 2;
        }
    for (i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    for (i = 0; i < ncpus; i++) {
        add_total += *(intptr_t *)(add_slots + (size_t)i * STRIDE);
        cas_total += *(intptr_t *)(cas_slots + (size_t)i * STRIDE);
    }
    expected = (long)THREADS * iters;
    CHECK(add_total == expected, "percpu_counter_add total %ld, want %ld", add_total, expected);
    CHECK(cas_total == expected, "percpu_cmpxchg total %ld, want %ld", cas_total, expected);
    printf("owner=%s worker_owner=%s cpu=%d raw=%d errno=%d registrations=%lu add_total=%ld cas_total=%ld expected=%ld\n",
           rseqgen_owner(), worker_owner ? worker_owner : "?", rseqgen_current_cpu(),
           rseqgen_current_cpu_raw(), rseqgen_registration_errno(), rseqgen_registration_count(),
           add_total, cas_total, expected);
    printf(failures ? "FAILED\n" : "OK\n");
    return failures ? 1 : 0;
}
