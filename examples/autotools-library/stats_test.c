/* The test program: four threads count through libstats; the total must be
 * exact whichever CPUs they ran on and whoever registered rseq. */
#include <pthread.h>
#include <stdio.h>

#include "stats.h"

#define THREADS 4
#define EVENTS 100000L

static int last_cpu[THREADS];

static void *worker(void *slot)
{
    *(int *)slot = stats_count(EVENTS);
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];
    int bad = 0;
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, &last_cpu[i]) != 0)
            return 1;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        bad += last_cpu[i] < 0 || last_cpu[i] >= stats_cpus();
    }
    long long total = stats_total();
    printf("libstats: %lld events on %d CPU slots, rseq owner %s\n", total, stats_cpus(),
           stats_rseq_owner());
    if (bad || total != THREADS * EVENTS) {
        printf("FAIL: expected %ld events, %d threads saw a bad CPU\n", THREADS * EVENTS, bad);
        return 1;
    }
    printf("OK\n");
    return 0;
}
