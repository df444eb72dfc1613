/* The fast paths as separate functions, for the instruction table
 * (benchmarks/hotpath.py): each wrapper is the inlined sequence of one fast
 * path with the arguments the benchmark loops use, and nothing else.
 * Compiled (not run) for every compiler and architecture of the table, as
 * executable code (-fPIE) and as shared-object code (-fPIC). hp_gen_* is the
 * generated code, hp_floor_* the hand-written floor (floor.h) for the same
 * job. */
#include "bench.h"
#include "floor.h"

#include "bench_rseq.h"

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

HOT_PATH int hp_gen_percpu_add(intptr_t *v, int cpu) { return bench_percpu_add(v, 1, cpu); }
HOT_PATH int hp_gen_percpu_cmpxchg(intptr_t *v, intptr_t expect, intptr_t newv, int cpu)
{
    return bench_percpu_cmpxchg(v, expect, newv, cpu);
}
