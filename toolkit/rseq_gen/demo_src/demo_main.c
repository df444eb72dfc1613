/* rseq-gen demo program: counts per CPU from several threads and reports
 * who owns the rseq registration. Optional argument: a plugin to dlopen. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_rseq.h"

#define THREADS 4
#define ADDS 100000L
#define STRIDE 64

static intptr_t *slots;
static int nslots;

static void *worker(void *arg)
{
    long i;
    (void)arg;
    for (i = 0; i < ADDS; i++)
        demo_percpu_counter_add(slots, STRIDE, 1);
    return NULL;
}

#ifdef DEMO_DYNAMIC
#include <dlfcn.h>
static const char *plugin_owner(const char *path, unsigned long *registrations, int *exact)
{
    static char owner[16] = "-";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const char *(*run)(unsigned long *, int *);
    if (h == NULL)
        return "dlopen-failed";
    *(void **)&run = dlsym(h, "demo_plugin_run");
    snprintf(owner, sizeof(owner), "%s", run(registrations, exact));
    dlclose(h);
    return owner;
}
#endif

int main(int argc, char **argv)
{
    pthread_t t[THREADS];
    long total = 0;
    unsigned long plugin_regs = 0;
    const char *plugin = "-";
    int i, plugin_exact = 1;
    nslots = 1024;
    slots = calloc((size_t)nslots, STRIDE);
    for (i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < nslots; i++)
        total += *(intptr_t *)((char *)slots + (size_t)i * STRIDE);
#ifdef DEMO_DYNAMIC
    if (argc > 1)
        plugin = plugin_owner(argv[1], &plugin_regs, &plugin_exact);
#else
    (void)argc;
    (void)argv;
#endif
    printf("{\"owner\": \"%s\", \"registrations\": %lu, \"cpu\": %d, \"node_id\": %d, "
           "\"exact\": %s, \"plugin_owner\": \"%s\"}\n",
           demo_owner(), demo_registration_count() + plugin_regs, demo_current_cpu(),
           demo_current_node_id(), total == THREADS * ADDS && plugin_exact ? "true" : "false", plugin);
    return 0;
}
