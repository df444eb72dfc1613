/* The fast paths before and after the module knows its area.
 *
 * A constructor of priority 101 runs before the generated module's own
 * constructor (default priority) when both are in the executable: it calls
 * current_cpu_raw, the counter add, current_cpu (plain and _at) and area
 * first. Then THREADS threads add EVENTS each (plain and _at forms), and main checks the total exactly and the area the
 * fast paths read. Prints one key=value line; exit 0 when every check holds.
 *
 *   fastpath_early THREADS EVENTS */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_rseq.h"

#define STRIDE 64
#define MAX_CPUS 1024

static intptr_t slots[MAX_CPUS * STRIDE / sizeof(intptr_t)];
static long ncpu, events;
static int early_raw = -100, early_counter = -100, early_cpu = -100, early_area_ok = -1;
static unsigned long early_registrations;
static int bad_cpu;

static int cpu_ok(int cpu)
{
    return cpu >= 0 && cpu < ncpu;
}

__attribute__((constructor(101))) static void early(void)
{
    ncpu = sysconf(_SC_NPROCESSORS_CONF);
    early_registrations = fp_registration_count();
    early_raw = fp_current_cpu_raw();
    early_counter = fp_percpu_counter_add(slots, STRIDE, 1);
    early_cpu = fp_current_cpu();
    if (!cpu_ok(fp_current_cpu_at(fp_area_offset())))
        early_cpu = -3;
    struct fp_rseq_area *area = fp_area();
    early_area_ok = area == NULL || __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED) >= 0;
}

static void *worker(void *arg)
{
    (void)arg;
    ptrdiff_t off = fp_area_offset();  /* valid in this thread: the _at forms */
    for (long i = 0; i < events; i++) {
        int cpu = i & 1 ? fp_percpu_counter_add(slots, STRIDE, 1)
                        : fp_percpu_counter_add_at(off, slots, STRIDE, 1);
        if (!cpu_ok(cpu) || !cpu_ok(fp_current_cpu()) || !cpu_ok(fp_current_cpu_at(off)))
            __atomic_store_n(&bad_cpu, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int threads = atoi(argv[1]);
    events = atol(argv[2]);
    if (threads < 1 || threads > 64 || ncpu < 1 || ncpu > MAX_CPUS)
        return 2;
    pthread_t tid[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, worker, NULL) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);

    long total = 0;
    for (long c = 0; c < ncpu; c++)
        total += slots[c * (STRIDE / sizeof(intptr_t))];
    long expected = 1 + (long)threads * events;

    /* After the constructor: a registered area is what P_area returns, and
     * the raw read agrees with it. */
    struct fp_rseq_area *area = fp_area();
    int raw = fp_current_cpu_raw();
    int area_ok = strcmp(fp_owner(), "none") == 0
                      ? area == NULL
                      : area != NULL && raw >= 0 && raw == area->cpu_id;
    /* Executable code reads the word the header defines; the module must have
     * moved it to the area it found (or left it on the null area: none). */
    int word_ok = 1;
#ifdef FP__AREA_OFFSET_AT_LOAD
    if (area != NULL && fp_rseq_area_offset != 0)  /* 0: found per thread (dynamic TLS) */
        word_ok = (char *)area - (char *)fp__arch_thread_pointer() == fp__exe_area_offset
                  && fp__exe_area_offset == fp_rseq_area_offset;
#endif
    int ok = total == expected && !bad_cpu && (early_raw == -1 || cpu_ok(early_raw))
             && cpu_ok(early_counter) && cpu_ok(early_cpu) && early_area_ok == 1 && area_ok
             && word_ok;
    printf("owner=%s total=%ld expected=%ld early_raw=%d early_counter=%d early_cpu=%d "
           "early_registrations=%lu early_area_ok=%d area_ok=%d word_ok=%d bad_cpu=%d ok=%d\n",
           fp_owner(), total, expected, early_raw, early_counter, early_cpu, early_registrations,
           early_area_ok, area_ok, word_ok, bad_cpu, ok);
    return ok ? 0 : 1;
}
