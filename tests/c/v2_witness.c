/* Witness of the kernel's v2-mode rule (Linux 7.1+): a registration longer
 * than 32 bytes makes cpu_id_start, cpu_id, node_id and mm_cid read-only,
 * and the kernel kills a process that stores to them; a 32-byte (legacy)
 * registration tolerates it (the kernel rewrites the ids). The generated code
 * never stores there; this program does it on purpose.
 *
 *   v2_witness store|read
 *
 * Prints {"event": "witness", ...} with the owner and the registration
 * length, then (with "store") adds 1000 to cpu_id_start of the thread's
 * registered area, makes the kernel update the ids (migrations between the
 * CPUs, sleeps) and prints {"event": "survived"}. Built against the code
 * generated for prefix w. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "w_rseq.h"

int main(int argc, char **argv)
{
    int store = argc > 1 && strcmp(argv[1], "store") == 0;
    struct w_rseq_area *area = w_area();
    cpu_set_t allowed, one;
    int i, cpus[CPU_SETSIZE], ncpus = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("{\"event\": \"witness\", \"owner\": \"%s\", \"len\": %u, \"store\": %d}\n", w_owner(),
           w_registration_length(), store);
    if (area == NULL)
        return 3;
    sched_getaffinity(0, sizeof(allowed), &allowed);
    for (i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &allowed))
            cpus[ncpus++] = i;
    if (store) {
        volatile uint32_t *start = &area->cpu_id_start;
        *start = *start + 1000;
    }
    for (i = 0; i < 200; i++) {
        CPU_ZERO(&one);
        CPU_SET(cpus[i % ncpus], &one);
        sched_setaffinity(0, sizeof(one), &one);
        usleep(100);
    }
    printf("{\"event\": \"survived\", \"cpu\": %d}\n", w_current_cpu());
    return 0;
}
