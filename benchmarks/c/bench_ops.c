/* Item 6: every per-CPU operation, in both indexing modes, beside its floor.
 *
 *   bench_ops CASE ITERATIONS
 *     -> prints "ns_per_op=<float> wall_ns_per_op=<float> owner=<owner> retries=<n>"
 *   bench_ops CASE ITERATIONS paired
 *     -> the same, plus floor_ns_per_op and floor_wall_ns_per_op: CASE and
 *        its floor_ twin in one process, alternating in PAIRED_SLICES slices
 *        of ITERATIONS / PAIRED_SLICES calls each
 *
 * CASE is <mode>_<op> (the generated bench_<mode>_<op>) or floor_<mode>_<op>
 * (floor.h's hand-written sequence for the same operation), mode percpu or
 * mmcid, op one of the operations table (rseq_gen/operations.py); and
 * mmcid_counter_add, mmcid_index with their floor_ twins.
 *
 * One thread. The index (CPU or concurrency id) is read once before the
 * loop and again only after an operation returned -1 (an abort or a
 * migration), as a caller's retry loop does: the loop measures the
 * operation. Each operation succeeds on every call: cmpxchg-like ones
 * compare against the value the previous call stored, pop takes from a
 * two-node ring that never empties, memcpy copies 16 bytes. ns_per_op is
 * thread CPU time per call.
 *
 * Paired: on this machine a loop's speed drifts while it runs (the 16-byte
 * memcpy loop read 1.2 to 2.1 ns per call in consecutive 3-million-call
 * stretches of one process), and separate processes for a case and its
 * floor measure them in different stretches; alternating short slices in
 * one process gives both the same ones. */
#include "bench.h"
#include "bench_rseq.h"
#define FLOOR_BENCH_WORDS 1  /* the floor reads the generated module's words (floor.h) */
#include "floor.h"

#include <unistd.h>

volatile long bench_sink;
FLOOR_DEFINE_OFFSET();

#define COPY_BYTES 16
#define MAX_SLOTS 4096

/* One index's data; 256 bytes apart. */
struct slot {
    intptr_t word;          /* the compared and committed word */
    intptr_t data;          /* cmpxchg_store's second store */
    intptr_t zero;          /* cmp2xchg's second compare */
    intptr_t head;          /* pop: a ring of two nodes */
    intptr_t popped;
    intptr_t ptr;           /* deref_add: points at counters */
    intptr_t node[2];       /* node[i] holds the address of node[1 - i] */
    intptr_t counters[2];
    char dst[COPY_BYTES], src[COPY_BYTES];
} __attribute__((aligned(256)));

static struct slot *slots;

static struct slot *slot_of(int idx)
{
    return &slots[idx];
}

/* The index each mode works on, read by the generated code or the floor. */
#define INDEX_bench_percpu bench_current_cpu()
#define INDEX_bench_mmcid bench_mmcid_index()
#define INDEX_floor_percpu floor_current_cpu()
#define INDEX_floor_mmcid floor_mmcid_index()

/* The call of each operation on slot s with the word's current value x. */
#define CALL_add(fn) fn##_add(&s->word, 1, idx)
#define CALL_cmpxchg(fn) fn##_cmpxchg(&s->word, x, x + 1, idx)
#define CALL_pop(fn) fn##_pop(&s->head, 0, 0, &s->popped, idx)
#define CALL_deref_add(fn) fn##_deref_add(&s->ptr, (long)sizeof(intptr_t), 1, idx)
#define CALL_cmpxchg_store(fn) fn##_cmpxchg_store(&s->word, x, &s->data, x, x + 1, idx)
#define CALL_cmpxchg_store_release(fn) fn##_cmpxchg_store_release(&s->word, x, &s->data, x, x + 1, idx)
#define CALL_cmp2xchg(fn) fn##_cmp2xchg(&s->word, x, &s->zero, 0, x + 1, idx)
#define CALL_cmpxchg_memcpy(fn) fn##_cmpxchg_memcpy(&s->word, x, s->dst, s->src, COPY_BYTES, x + 1, idx)
#define CALL_cmpxchg_memcpy_release(fn) \
    fn##_cmpxchg_memcpy_release(&s->word, x, s->dst, s->src, COPY_BYTES, x + 1, idx)

/* An operation that compares the word stores x + 1; one that does not
 * leaves it (add increments it: x follows, unused). */
#define OP_LOOP(fn, op)                                                     \
    BENCH_FN static long loop_##fn##_##op(long n)                           \
    {                                                                       \
        int idx = INDEX_##fn;                                               \
        struct slot *s = slot_of(idx);                                      \
        intptr_t x = __atomic_load_n(&s->word, __ATOMIC_RELAXED);           \
        long retries = 0;                                                   \
        BENCH_PAD();                                                        \
        for (long i = 0; i < n; i++) {                                      \
            if (__builtin_expect(CALL_##op(fn) == 0, 1)) {                  \
                x++;                                                        \
                continue;                                                   \
            }                                                               \
            retries++;                                                      \
            idx = INDEX_##fn;                                               \
            s = slot_of(idx);                                               \
            x = __atomic_load_n(&s->word, __ATOMIC_RELAXED);                \
        }                                                                   \
        return retries;                                                     \
    }

#define OPS(X, fn)                                                          \
    X(fn, add) X(fn, cmpxchg) X(fn, pop) X(fn, deref_add) X(fn, cmpxchg_store) \
    X(fn, cmpxchg_store_release) X(fn, cmp2xchg) X(fn, cmpxchg_memcpy)      \
    X(fn, cmpxchg_memcpy_release)

OPS(OP_LOOP, bench_percpu)
OPS(OP_LOOP, bench_mmcid)
OPS(OP_LOOP, floor_percpu)
OPS(OP_LOOP, floor_mmcid)

BENCH_FN static long loop_bench_mmcid_counter_add(long n)
{
    intptr_t *base = (intptr_t *)slots;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        bench_mmcid_counter_add(base, 64, 1);
    return 0;
}

BENCH_FN static long loop_floor_mmcid_counter_add(long n)
{
    intptr_t *base = (intptr_t *)slots;
    BENCH_PAD();
    for (long i = 0; i < n; i++)
        floor_mmcid_counter_add64(base);
    return 0;
}

/* The index loops return their sum; these cases report no retries. */
#define INDEX_LOOP(name, expr)                      \
    BENCH_SUM_LOOP(sum_##name, expr)                \
    static long loop_##name(long n)                 \
    {                                               \
        bench_sink += sum_##name(n);                \
        return 0;                                   \
    }
INDEX_LOOP(bench_mmcid_index, bench_mmcid_index())
INDEX_LOOP(floor_mmcid_index, floor_mmcid_index())

/* Case names: the generated loops drop the "bench_" of their function. */
#define CASE(fn, op) {#fn "_" #op, loop_##fn##_##op},
static const struct {
    const char *name;
    long (*fn)(long);
} cases[] = {
    OPS(CASE, bench_percpu) OPS(CASE, bench_mmcid) OPS(CASE, floor_percpu) OPS(CASE, floor_mmcid)
    CASE(bench_mmcid, counter_add) CASE(floor_mmcid, counter_add)
    CASE(bench_mmcid, index) CASE(floor_mmcid, index)
};

static void init_slots(long n)
{
    /* Keep every slot clear of the offset words' low 12 bits (4K
     * aliasing, as in bench_counter.c). */
    const void *words[] = {&bench_rseq_area_offset, &bench_rseq_mmcid_area_offset, &FLOOR_OFFSET_WORD,
                           &FLOOR_MMCID_OFFSET_WORD};
    slots = bench_alloc_clear_of((size_t)n, sizeof(struct slot), words, sizeof words / sizeof words[0]);
    if (slots == NULL) {
        perror("aligned_alloc");
        exit(1);
    }
    for (long i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        s->node[0] = (intptr_t)&s->node[1];
        s->node[1] = (intptr_t)&s->node[0];
        s->head = (intptr_t)&s->node[0];
        s->ptr = (intptr_t)&s->counters[0];
    }
}

#define PAIRED_SLICES 20

/* The case named name (generated cases without their "bench_"), or -1. */
static int find_case(const char *name)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *c = cases[i].name;
        if (strncmp(c, "bench_", 6) == 0)
            c += 6;
        if (strcmp(name, c) == 0)
            return (int)i;
    }
    return -1;
}

/* CASE and floor_CASE alternately, n / PAIRED_SLICES calls at a time. */
static int run_paired(const char *name, long n)
{
    char floor_name[128];
    int g = find_case(name), f;
    if (snprintf(floor_name, sizeof floor_name, "floor_%s", name) >= (int)sizeof floor_name || g < 0
        || (f = find_case(floor_name)) < 0) {
        fprintf(stderr, "no case %s with a floor twin\n", name);
        return 2;
    }
    long slice = n / PAIRED_SLICES > 0 ? n / PAIRED_SLICES : 1;
    long retries = cases[g].fn(n / 10 + 1) + cases[f].fn(n / 10 + 1);  /* warm up */
    uint64_t cpu[2] = {0, 0}, wall[2] = {0, 0};
    for (int k = 0; k < PAIRED_SLICES; k++) {
        for (int which = 0; which < 2; which++) {
            uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
            retries += cases[which ? f : g].fn(slice);
            cpu[which] += bench_cpu_ns() - c0;
            wall[which] += bench_now_ns() - t0;
        }
    }
    double calls = (double)slice * PAIRED_SLICES;
    printf("ns_per_op=%.6f wall_ns_per_op=%.6f floor_ns_per_op=%.6f floor_wall_ns_per_op=%.6f owner=%s "
           "retries=%ld\n", (double)cpu[0] / calls, (double)wall[0] / calls, (double)cpu[1] / calls,
           (double)wall[1] / calls, bench_owner(), retries);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "paired") == 0)) {
        fprintf(stderr, "usage: %s CASE ITERATIONS [paired]\n", argv[0]);
        return 2;
    }
    long n = bench_arg_long(argv[2], "iterations");
    long nslots = sysconf(_SC_NPROCESSORS_CONF);
    if (bench_max_cpus() > nslots)
        nslots = bench_max_cpus();
    if (nslots < 1 || nslots > MAX_SLOTS) {
        fprintf(stderr, "too many CPUs\n");
        return 2;
    }
    bench_register_current_thread();
    FLOOR_SET_OFFSET(bench__area_offset());
    init_slots(nslots);
    if (argc == 4)
        return run_paired(argv[1], n);
    int i = find_case(argv[1]);
    if (i < 0) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    long retries = cases[i].fn(n / 10 + 1);  /* warm up */
    uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
    retries += cases[i].fn(n);
    uint64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
    double div = n ? (double)n : 1.0;
    printf("ns_per_op=%.6f wall_ns_per_op=%.6f owner=%s retries=%ld\n", (double)(c1 - c0) / div,
           (double)(t1 - t0) / div, bench_owner(), retries);
    return 0;
}
