/* plugin-counter: threads count events per CPU in the program (prefix
 * "counter") and in a dlopen'd plugin (prefix "plugin"); the per-CPU sums
 * must add up exactly, which they do only if every increment was atomic with
 * respect to preemption and migration (the rseq critical sections).
 *
 * usage: plugin-counter PLUGIN.so [THREADS [EVENTS]]
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "counter.h"
#include "counter_rseq.h"

#define SLOT_STRIDE 64

static char *slots;
static int slot_count;
static long events = 100000;
static plugin_count_fn plugin_count;

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < events; i++)
        counter_percpu_counter_add((intptr_t *)slots, SLOT_STRIDE, 1);
    plugin_count(events);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s PLUGIN.so [THREADS [EVENTS]]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (argc > 3)
        events = atol(argv[3]);
    if (threads < 1 || threads > 256 || events < 0) {
        fprintf(stderr, "%s: THREADS must be 1..256 and EVENTS >= 0\n", argv[0]);
        return 2;
    }
    /* One slot per possible CPU: the highest CPU number plus one (CPU
     * numbers can have holes, so the count of CPUs is not enough). */
    slot_count = counter_max_cpus();
    slots = calloc((size_t)slot_count, SLOT_STRIDE);
    intptr_t *plugin_slots = calloc((size_t)slot_count, sizeof *plugin_slots);
    if (slots == NULL || plugin_slots == NULL)
        return 1;

    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (plugin == NULL) {
        fprintf(stderr, "%s: %s\n", argv[0], dlerror());
        return 1;
    }
    plugin_count = (plugin_count_fn)(uintptr_t)dlsym(plugin, PLUGIN_COUNT_SYMBOL);
    plugin_totals_fn plugin_totals = (plugin_totals_fn)(uintptr_t)dlsym(plugin, PLUGIN_TOTALS_SYMBOL);
    if (plugin_count == NULL || plugin_totals == NULL) {
        fprintf(stderr, "%s: %s lacks %s/%s\n", argv[0], argv[1], PLUGIN_COUNT_SYMBOL,
                PLUGIN_TOTALS_SYMBOL);
        return 1;
    }

    pthread_t tid[256];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, worker, NULL) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);

    plugin_totals(plugin_slots, slot_count);
    intptr_t total = 0, plugin_total = 0;
    printf("%4s %12s %12s\n", "cpu", "program", "plugin");
    for (int cpu = 0; cpu < slot_count; cpu++) {
        intptr_t mine = *(intptr_t *)(slots + (size_t)cpu * SLOT_STRIDE);
        total += mine;
        plugin_total += plugin_slots[cpu];
        if (mine || plugin_slots[cpu])
            printf("%4d %12ld %12ld\n", cpu, (long)mine, (long)plugin_slots[cpu]);
    }
    long expected = (long)threads * events;
    printf("total %ld %ld (expected %ld each); registration: %s, protocol %s\n", (long)total,
           (long)plugin_total, expected, counter_owner(), COUNTER_RSEQ_PROTOCOL);

    /* The plugin is linked -z nodelete: dlclose leaves it mapped, so the
     * kernel never writes into a freed rseq area. */
    dlclose(plugin);
    int still_mapped = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != NULL;
    printf("plugin after dlclose: %s\n", still_mapped ? "still mapped (nodelete)" : "unloaded");

    if (total != expected || plugin_total != expected) {
        printf("FAIL: lost or duplicated increments\n");
        return 1;
    }
    printf("OK\n");
    return 0;
}
