/* The generated time-slice extension API under contention: two threads
 * pinned to one CPU (so the scheduler wants to switch between them) run
 * short regions between w_slice_begin() and w_slice_end(), each region a
 * spinlocked increment of a shared counter. Prints what the API reports,
 * the kernel's raw answers (prctl, rseq_slice_yield, rseq->flags), the
 * grants seen and the count (exact whether or not extensions are granted).
 * Built against the code generated for prefix w. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "w_rseq.h"

#define REGIONS 20000
#define WORK 200

static int lock;
static long counter;
static int cpu;

struct worker {
    long grants;
    int available;
    int err;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    cpu_set_t one;
    int i, j;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof(one), &one);
    w->available = w_slice_extension_available();
    w->err = w_slice_extension_errno();
    for (i = 0; i < REGIONS; i++) {
        w_slice_begin();
        while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
            ;
        for (j = 0; j < WORK; j++)
            __asm__ __volatile__("" ::: "memory");
        counter++;
        __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
        w->grants += w_slice_end();
    }
    return NULL;
}

int main(void)
{
    struct worker w[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    pthread_t t[2];
    struct w_rseq_area *area = w_area();
    long r, prctl_errno = 0, yield_errno = 0;
    int i;
    setvbuf(stdout, NULL, _IOLBF, 0);
    cpu = sched_getcpu();
    errno = 0;
    r = prctl(79 /* PR_RSEQ_SLICE_EXTENSION */, 1 /* GET */, 0, 0, 0);
    if (r < 0)
        prctl_errno = errno;
    errno = 0;
    if (syscall(471 /* rseq_slice_yield */) < 0)
        yield_errno = errno;
    for (i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, run, &w[i]);
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("{\"event\": \"slice\", \"owner\": \"%s\", \"len\": %u, \"flags\": %u, \"prctl\": %ld, "
           "\"prctl_errno\": %ld, \"yield_errno\": %ld, \"available\": [%d, %d], \"errno\": [%d, %d], "
           "\"grants\": %ld, \"count\": %ld, \"expected\": %d}\n",
           w_owner(), w_registration_length(), area ? area->flags : 0u, r, prctl_errno, yield_errno,
           w[0].available, w[1].available, w[0].err, w[1].err, w[0].grants + w[1].grants, counter,
           2 * REGIONS);
    return counter == 2 * REGIONS ? 0 : 1;
}
