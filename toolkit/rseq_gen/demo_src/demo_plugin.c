/* rseq-gen demo plugin: dlopen'd by the demo program, counts per CPU with
 * its own generated code (prefix demoplugin, --dlopen-safe). */
#include <stdint.h>
#include <stdlib.h>

#include "demoplugin_rseq.h"

const char *demo_plugin_run(unsigned long *registrations, int *exact);

const char *demo_plugin_run(unsigned long *registrations, int *exact)
{
    intptr_t *slots = calloc(1024, 64);
    long total = 0;
    int i;
    for (i = 0; i < 10000; i++)
        demoplugin_percpu_counter_add(slots, 64, 1);
    for (i = 0; i < 1024; i++)
        total += *(intptr_t *)((char *)slots + (size_t)i * 64);
    free(slots);
    *exact = total == 10000;
    *registrations = demoplugin_registration_count();
    return demoplugin_owner();
}
