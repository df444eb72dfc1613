/* The fast paths as separate functions, for the instruction table
 * (benchmarks/hotpath.py): each wrapper is the inlined sequence of one fast
 * path with the arguments the benchmark loops use, and nothing else.
 * Compiled (not run) for every compiler and architecture of the table, as
 * executable code (-fPIE) and as shared-object code (-fPIC). hp_gen_* is the
 * generated code, hp_floor_* the hand-written floor (floor.h) for the same
 * job. */
#include "bench.h"
#include "bench_rseq.h"
#define FLOOR_BENCH_WORDS 1  /* the floor reads the generated module's words (floor.h) */
#include "floor.h"

#if defined(__clang__)
#define HOT_PATH __attribute__((noinline, used))
#else
#define HOT_PATH __attribute__((noinline, noclone, used))
#endif

FLOOR_DEFINE_OFFSET();

HOT_PATH int hp_gen_current_cpu(void) { return bench_current_cpu(); }
HOT_PATH int hp_floor_current_cpu(void) { return floor_current_cpu(); }

HOT_PATH int hp_gen_current_cpu_raw(void) { return bench_current_cpu_raw(); }
HOT_PATH int hp_floor_current_cpu_raw(void) { return floor_current_cpu_raw(); }

HOT_PATH void *hp_gen_area(void) { return bench_area(); }
HOT_PATH void *hp_floor_area(void) { return floor_area(); }

HOT_PATH int hp_gen_counter_add(intptr_t *slots) { return bench_percpu_counter_add(slots, 64, 1); }
HOT_PATH int hp_floor_counter_add(intptr_t *slots) { return floor_counter_add64(slots); }

HOT_PATH int hp_gen_current_cpu_at(ptrdiff_t off) { return bench_current_cpu_at(off); }
HOT_PATH int hp_floor_current_cpu_at(ptrdiff_t off) { return floor_current_cpu_at(off); }

HOT_PATH int hp_gen_counter_add_at(ptrdiff_t off, intptr_t *slots)
{
    return bench_percpu_counter_add_at(off, slots, 64, 1);
}
HOT_PATH int hp_floor_counter_add_at(ptrdiff_t off, intptr_t *slots)
{
    return floor_counter_add64_at(off, slots);
}

/* Every per-CPU operation in both indexing modes, with the benchmark's
 * constants (bench_ops.c): count 1, next offset 0, deref offset 8, 16
 * bytes copied. */
#define HP_OP(mode, name, params, args)                                                     \
    HOT_PATH int hp_gen_##mode##_##name params { return bench_##mode##_##name args; }      \
    HOT_PATH int hp_floor_##mode##_##name params { return floor_##mode##_##name args; }
#define HP_OPS(mode)                                                                        \
    HP_OP(mode, add, (intptr_t *v, int i), (v, 1, i))                                       \
    HP_OP(mode, cmpxchg, (intptr_t *v, intptr_t e, intptr_t n, int i), (v, e, n, i))       \
    HP_OP(mode, pop, (intptr_t *h, intptr_t *p, int i), (h, 0, 0, p, i))                   \
    HP_OP(mode, deref_add, (intptr_t *p, int i), (p, 8, 1, i))                             \
    HP_OP(mode, cmpxchg_store, (intptr_t *v, intptr_t e, intptr_t *v2, intptr_t n2, intptr_t n, int i), \
          (v, e, v2, n2, n, i))                                                             \
    HP_OP(mode, cmpxchg_store_release,                                                      \
          (intptr_t *v, intptr_t e, intptr_t *v2, intptr_t n2, intptr_t n, int i), (v, e, v2, n2, n, i)) \
    HP_OP(mode, cmp2xchg, (intptr_t *v, intptr_t e, intptr_t *v2, intptr_t e2, intptr_t n, int i), \
          (v, e, v2, e2, n, i))                                                             \
    HP_OP(mode, cmpxchg_memcpy, (intptr_t *v, intptr_t e, void *d, const void *s, intptr_t n, int i), \
          (v, e, d, s, 16, n, i))                                                           \
    HP_OP(mode, cmpxchg_memcpy_release,                                                     \
          (intptr_t *v, intptr_t e, void *d, const void *s, intptr_t n, int i), (v, e, d, s, 16, n, i))
HP_OPS(percpu)
HP_OPS(mmcid)

HOT_PATH int hp_gen_mmcid_counter_add(intptr_t *slots) { return bench_mmcid_counter_add(slots, 64, 1); }
HOT_PATH int hp_floor_mmcid_counter_add(intptr_t *slots) { return floor_mmcid_counter_add64(slots); }

HOT_PATH int hp_gen_mmcid_index(void) { return bench_mmcid_index(); }
HOT_PATH int hp_floor_mmcid_index(void) { return floor_mmcid_index(); }
