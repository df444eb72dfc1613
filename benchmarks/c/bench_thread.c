/* Item 3: the cost of a thread, with and without the generated registration.
 *
 *   bench_thread time K   -> creates and joins K threads one after another;
 *                            prints "ns_per_thread=<float>"
 *   bench_thread info     -> one thread; prints what it saw
 *
 * Each thread reads its CPU once: with WITH_RSEQ through bench_current_cpu()
 * (which registers the thread lazily when the protocol says so), without it
 * through sched_getcpu(). The syscalls are counted by the runner under
 * strace -f. */
#include "bench.h"

#include <pthread.h>
#include <sched.h>

#ifdef WITH_RSEQ
#include "bench_rseq.h"
#endif

volatile long bench_sink;

static void *body(void *arg)
{
    (void)arg;
#ifdef WITH_RSEQ
    bench_sink += bench_current_cpu();
#else
    bench_sink += sched_getcpu();
#endif
    return NULL;
}

static void *info_body(void *arg)
{
    (void)arg;
    body(NULL);
#ifdef WITH_RSEQ
    printf("owner=%s registrations=%lu\n", bench_owner(), bench_registration_count());
#else
    printf("owner=n/a registrations=0\n");
#endif
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t;
    if (argc == 2 && strcmp(argv[1], "info") == 0) {
        if (pthread_create(&t, NULL, info_body, NULL) != 0)
            return 1;
        pthread_join(t, NULL);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "time") != 0) {
        fprintf(stderr, "usage: %s time K | info\n", argv[0]);
        return 2;
    }
    long k = bench_arg_long(argv[2], "thread count");
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < k; i++) {
        if (pthread_create(&t, NULL, body, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
        pthread_join(t, NULL);
    }
    uint64_t t1 = bench_now_ns();
    printf("ns_per_thread=%.3f\n", k ? (double)(t1 - t0) / (double)k : 0.0);
    return 0;
}
