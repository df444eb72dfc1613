/* libstats: per-CPU counters on the restartable sequences of st_rseq.h,
 * which the build generates (rseq-gen generate --prefix st). */
#include <stdint.h>
#include <stdlib.h>

#include "st_rseq.h"
#include "stats.h"

#define SLOT_STRIDE 64 /* one cache line per CPU */

static char *slots;
static int slot_count;

__attribute__((constructor)) static void stats_init(void)
{
    slot_count = st_max_cpus();
    slots = calloc((size_t)slot_count, SLOT_STRIDE);
    if (slots == NULL)
        abort();
}

int stats_count(long n)
{
    int cpu = -1;
    for (long i = 0; i < n; i++)
        cpu = st_percpu_counter_add((intptr_t *)slots, SLOT_STRIDE, 1);
    return cpu;
}

long long stats_total(void)
{
    long long total = 0;
    for (int cpu = 0; cpu < slot_count; cpu++)
        total += __atomic_load_n((intptr_t *)(slots + (size_t)cpu * SLOT_STRIDE), __ATOMIC_RELAXED);
    return total;
}

int stats_cpus(void)
{
    return slot_count;
}

const char *stats_rseq_owner(void)
{
    return st_owner();
}
