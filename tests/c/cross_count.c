/* Portability check for generated rseq code (prefix "rseqgen"), built for
 * every architecture by tests/test_portability.py and run natively or under
 * qemu-user.
 *
 * 1. Sequence self-check: runs the architecture's critical sections against
 *    a fake, unregistered area in this thread's TLS (cpu_id set by hand).
 *    No kernel is involved, so this works under qemu too: it checks that the
 *    sequence stores the right descriptor address into rseq_cs (in the right
 *    word on 32-bit big endian), that the descriptor is sane and that the 4
 *    bytes before its abort IP are RSEQ_SIG, and the add/cmpxchg results.
 * 2. Counting: THREADS threads add 1 to per-CPU slots ITERS times with
 *    rseqgen_percpu_counter_add, and ITERS times through a percpu_cmpxchg
 *    retry loop; the totals must be exact.
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

struct cs_descriptor {
    uint32_t version;
    uint32_t flags;
    uint64_t start_ip;
    uint64_t post_commit_offset;
    uint64_t abort_ip;
};

static int failures;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            printf("FAIL: " __VA_ARGS__);                 \
            printf("\n");                                 \
            failures++;                                   \
        }                                                 \
    } while (0)

static __thread struct rseqgen_rseq_area fake_area;

static void check_descriptor(const char *what)
{
    uint64_t cs = *(volatile uint64_t *)&fake_area.rseq_cs; /* no 64-bit atomics on ppc32 */
    const struct cs_descriptor *d = (const struct cs_descriptor *)(uintptr_t)cs;
    uint32_t sig;
    CHECK(cs != 0, "%s: rseq_cs not set", what);
    if (cs == 0)
        return;
    CHECK(cs % 32 == 0, "%s: descriptor %#llx not 32-aligned", what, (unsigned long long)cs);
    CHECK((uintptr_t)cs == cs, "%s: rseq_cs high word set (%#llx)", what, (unsigned long long)cs);
    CHECK(d->version == 0 && d->flags == 0, "%s: version/flags %u/%u", what, d->version, d->flags);
    CHECK(d->start_ip != 0 && d->post_commit_offset > 0 && d->post_commit_offset < 256,
          "%s: start_ip %#llx post_commit_offset %llu", what,
          (unsigned long long)d->start_ip, (unsigned long long)d->post_commit_offset);
    CHECK(d->abort_ip < d->start_ip || d->abort_ip >= d->start_ip + d->post_commit_offset,
          "%s: abort_ip inside the critical section", what);
    memcpy(&sig, (const void *)(uintptr_t)(d->abort_ip - 4), sizeof sig);
    CHECK(sig == RSEQGEN__RSEQ_SIG, "%s: signature %#x before abort_ip, want %#x", what, sig,
          (unsigned)RSEQGEN__RSEQ_SIG);
    *(volatile uint64_t *)&fake_area.rseq_cs = 0;
}

static void self_check(void)
{
    intptr_t x = 0;
    ptrdiff_t off = (char *)&fake_area - (char *)rseqgen__arch_thread_pointer();
    int r;

    fake_area.cpu_id = 5;
    CHECK(rseqgen__arch_load_s32(off, 4) == 5, "load_s32 reads %d", (int)rseqgen__arch_load_s32(off, 4));
    r = rseqgen__arch_cs_add(off, &x, 3, 5);
    CHECK(r == 0 && x == 3, "cs_add on the right cpu: r=%d x=%ld", r, (long)x);
    check_descriptor("cs_add");
    r = rseqgen__arch_cs_add(off, &x, 3, 4);
    CHECK(r == -1 && x == 3, "cs_add on another cpu: r=%d x=%ld", r, (long)x);
    r = rseqgen__arch_cs_cmpxchg(off, &x, 3, 10, 5);
    CHECK(r == 0 && x == 10, "cs_cmpxchg match: r=%d x=%ld", r, (long)x);
    check_descriptor("cs_cmpxchg");
    r = rseqgen__arch_cs_cmpxchg(off, &x, 3, 11, 5);
    CHECK(r == 1 && x == 10, "cs_cmpxchg mismatch: r=%d x=%ld", r, (long)x);
    r = rseqgen__arch_cs_cmpxchg(off, &x, 10, 11, 4);
    CHECK(r == -1 && x == 10, "cs_cmpxchg on another cpu: r=%d x=%ld", r, (long)x);
    CHECK(fake_area.cpu_id == 5 && fake_area.cpu_id_start == 0, "area ids changed");
}

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

    self_check();

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
