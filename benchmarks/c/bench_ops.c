/* Item 6: every per-CPU operation, in both indexing modes, beside its floor.
 *
 *   bench_ops CASE ITERATIONS
 *     -> prints "ns_per_op=<float> wall_ns_per_op=<float> owner=<owner> retries=<n>"
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
 * thread CPU time per call. */
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CASE ITERATIONS\n", argv[0]);
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
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = cases[i].name;
        if (strncmp(name, "bench_", 6) == 0)
            name += 6;
        if (strcmp(argv[1], name) != 0)
            continue;
        long retries = cases[i].fn(n / 10 + 1);  /* warm up */
        uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
        retries += cases[i].fn(n);
        uint64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
        double div = n ? (double)n : 1.0;
        printf("ns_per_op=%.6f wall_ns_per_op=%.6f owner=%s retries=%ld\n", (double)(c1 - c0) / div,
               (double)(t1 - t0) / div, bench_owner(), retries);
        return 0;
    }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
