/* Resident memory of the per-CPU pool (benchmarks/pool_rss.py).
 *
 *   bench_pool_rss ITEMS ITEM_SIZE TOUCHED
 *
 * Creates a P_POOL_CPU pool, allocates ITEMS items of ITEM_SIZE bytes, then
 * counts into every item on each of the first TOUCHED allowed CPUs in turn
 * (the main thread pinned there, so no thread stack or arena muddies the
 * RSS; P_percpu_counter_add with the pool stride, as a per-CPU counter
 * would), and prints the process RSS before and after each step
 * (RssAnon, /proc/self/status) and the pages mincore() finds resident in each copy of
 * the items. Output: key=value pairs. */
#define _GNU_SOURCE 1
#include "bench_rseq.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long page;
static void **items;
static long nitems;

/* Anonymous resident memory in pages (RssAnon of /proc/self/status: the
 * file-backed text pages first calls fault in do not count). */
static long rss_pages(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024 / page;
}

static long resident_in(const char *p, size_t len)
{
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t n = ((uintptr_t)p + len - start + (size_t)page - 1) / (size_t)page, i;
    unsigned char *vec = calloc(n, 1);
    long count = 0;
    if (vec == NULL || mincore((void *)start, n * (size_t)page, vec) != 0) {
        free(vec);
        return -1;
    }
    for (i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

/* Adds into every item while pinned to `cpu`; returns how many landed on
 * that CPU's copy. */
static long touch(int cpu)
{
    cpu_set_t one;
    long i, landed = 0;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
    for (i = 0; i < nitems; i++)
        landed += bench_percpu_counter_add((intptr_t *)items[i], BENCH_POOL_STRIDE, 1) == cpu;
    return landed;
}

int main(int argc, char **argv)
{
    struct bench_pool *pool;
    cpu_set_t allowed;
    long size, touched, i, before, after_alloc, after_touch, landed[CPU_SETSIZE];
    int c, k, copies, cpus[CPU_SETSIZE];
    if (argc != 4)
        return 2;
    nitems = atol(argv[1]);
    size = atol(argv[2]);
    touched = atol(argv[3]);
    page = sysconf(_SC_PAGESIZE);
    items = calloc((size_t)nitems, sizeof *items);
    if (items == NULL)
        return 2;
    sched_getaffinity(0, sizeof allowed, &allowed);
    if (touched > CPU_COUNT(&allowed))
        touched = CPU_COUNT(&allowed);

    memset(landed, 0, sizeof landed); /* its stack pages, before the first reading */
    memset(cpus, 0, sizeof cpus);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    printf("%s", ""); /* stdio's buffer before the first RSS reading */
    before = rss_pages();
    pool = bench_pool_create((size_t)size, 0, BENCH_POOL_CPU);
    if (pool == NULL)
        return 3;
    for (i = 0; i < nitems; i++)
        if ((items[i] = bench_pool_alloc(pool)) == NULL)
            return 3;
    after_alloc = rss_pages();
    copies = bench_pool_copies(pool);
    for (c = 0, k = 0; c < CPU_SETSIZE && k < touched; c++)
        if (CPU_ISSET(c, &allowed)) {
            landed[k] = touch(c);
            cpus[k++] = c;
        }
    after_touch = rss_pages();
    sched_setaffinity(0, sizeof allowed, &allowed);
    for (k = 0; k < touched; k++)
        printf("cpu%d_adds_on_own_copy=%ld ", cpus[k], landed[k]);
    printf("items=%ld item_size=%ld copies=%d touched=%ld page=%ld rss_before=%ld rss_after_alloc=%ld "
           "rss_after_touch=%ld", nitems, size, copies, touched, page, before, after_alloc, after_touch);
    for (c = 0; c < copies; c++) {
        /* the items sit in consecutive slots of the first ranges */
        long res = 0;
        for (i = 0; i < nitems; i++) {
            char *p = bench_pool_ptr(items[i], c);
            if (i == 0 || ((uintptr_t)p & ~(uintptr_t)(page - 1)) !=
                          ((uintptr_t)bench_pool_ptr(items[i - 1], c) & ~(uintptr_t)(page - 1)))
                res += resident_in(p, 1);
        }
        printf(" copy%d_resident_pages=%ld", c, res);
    }
    printf("\n");
    bench_pool_destroy(pool);
    return 0;
}
