/* The floor: the shortest correct hand-written code for each fast path, what
 * the generated code is measured against (docs/benchmarks.md, "The floor").
 *
 * Each sequence assumes an area offset that is valid whenever the code runs
 * (pointing at an area whose cpu_id is < 0 on a thread that is not
 * registered) and promises nothing about calls made before it is set. Within
 * that promise each one is correct: it reads the offset once per call (a
 * global), never stores to a kernel-owned field, and the counter add is a
 * real restartable sequence (descriptor, signature, abort handler) with a
 * fallback for a thread the kernel does not update.
 *
 *   floor_current_cpu()        offset; cpu_id; sign test; sched_getcpu() when < 0
 *   floor_current_cpu_raw()    offset; cpu_id
 *   floor_area()               offset; cpu_id < 0 test; thread pointer + offset
 *   floor_counter_add64(slots) slots[cpu * 64 bytes] += 1: offset; cpu_id_start;
 *                              slot; descriptor store; cpu_id compare; add;
 *                              abort and mismatch handlers out of line
 *   floor_current_cpu_at(off), floor_counter_add64_at(off, slots): the same
 *                              with the offset given (read once before a loop)
 *
 * x86_64 is measured; aarch64 is compiled for the instruction table only.
 * The counter is written for the benchmark's stride (64 bytes) and count
 * (1): a hand-written sequence would take them as constants too. */
#ifndef BENCH_FLOOR_H
#define BENCH_FLOOR_H

#include "bench.h"  /* _GNU_SOURCE before <sched.h>: sched_getcpu */

#include <sched.h>

#define FLOOR_RSEQ_SIG 0x53053053

/* The offset global the floor reads. The benchmark programs point it at the
 * generated module's own word (FLOOR_OFFSET_WORD, defined before including
 * this file), so that floor and generated code load the same variable and
 * differ only in their instructions: in one build the generated code's word
 * cost 9 % on current_cpu_raw (self-owned) against a floor-owned word at
 * another address, and reading the same word made both equally slow (a
 * link-layout effect, docs/benchmarks.md). Otherwise the floor has its own,
 * set by the program (FLOOR_DEFINE_OFFSET). */
#ifndef FLOOR_OFFSET_WORD
#define FLOOR_OFFSET_WORD floor_area_offset
extern ptrdiff_t floor_area_offset __attribute__((visibility("hidden")));
#define FLOOR_DEFINE_OFFSET() ptrdiff_t floor_area_offset
#define FLOOR_SET_OFFSET(off) (floor_area_offset = (off))
#else
#define FLOOR_DEFINE_OFFSET() extern int floor_no_offset_of_its_own
#define FLOOR_SET_OFFSET(off) ((void)(off))
#endif

/* The fallbacks: not part of any hot path. */
__attribute__((noinline, cold)) static int floor_cpu_fallback(void)
{
    int cpu = sched_getcpu();
    return cpu >= 0 ? cpu : 0;
}

__attribute__((noinline, cold)) static int floor_counter_fallback(intptr_t *slots)
{
    int cpu = floor_cpu_fallback();
    __atomic_fetch_add((intptr_t *)((char *)slots + (size_t)cpu * 64), 1, __ATOMIC_RELAXED);
    return cpu;
}

/* After a label: the path from here is unlikely (the generated code says
 * so with __builtin_expect on its sections' result). Without it GCC takes the
 * retry loop for a hot one and aligns its head (-falign-loops), putting nops
 * on the hot path. */
#if defined(__clang__)
#define FLOOR_COLD_PATH ((void)0)
#else
#define FLOOR_COLD_PATH __attribute__((cold))
#endif

/* The offset global, read as the generated code reads its own: one plain
 * (relaxed) load per call. */
static inline ptrdiff_t floor_offset(void)
{
    return __atomic_load_n(&FLOOR_OFFSET_WORD, __ATOMIC_RELAXED);
}

/* No asm goto here has outputs: GCC 12.2 -O2 miscompiles asm goto outputs
 * (a goto path returning NULL got the output register instead), so values
 * come out of plain asm and branches out of output-free asm goto. */
/* The descriptor (start 1f, post-commit 2f, abort 4f) and its pointer. */
#define FLOOR_CS_DESCRIPTOR                                                  \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                     \
    ".balign 32\n"                                                           \
    "3:\t.long 0x0, 0x0\n\t"                                                 \
    ".quad 1f, (2f - 1f), 4f\n\t"                                            \
    ".popsection\n\t"                                                        \
    ".pushsection __rseq_cs_ptr_array, \"awR\"\n\t"                          \
    ".balign 8\n\t"                                                          \
    ".quad 3b\n\t"                                                           \
    ".popsection\n\t"

#if defined(__x86_64__)

static inline int32_t floor_load32(ptrdiff_t off, long field)
{
    int32_t v;
    /* The "m" operand only spells the address for %fs (never dereferenced
     * by the compiler), so the field offset folds into the displacement. */
    __asm__ __volatile__("movl %%fs:%1, %0" : "=r"(v) : "m"(*(const int32_t *)(intptr_t)(off + field)));
    return v;
}

static inline void *floor_thread_pointer(void)
{
    void *tp;
    __asm__("movq %%fs:0, %0" : "=r"(tp));
    return tp;
}

#define FLOOR_IF_NEGATIVE_CPU_ID(off, label) \
    __asm__ __volatile__ goto("cmpl $0, %%fs:4(%0)\n\tjs %l[" #label "]" : : "r"(off) : "cc" : label)

/* After the signature, the abort handler jumps to the C label `abort`. */
#define FLOOR_CS_ABORT                                                       \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                             \
    ".long 0x53053053\n"                                                     \
    "4:\tjmp %l[abort]\n\t"                                                  \
    ".popsection"

/* slot += 1 if the thread is still on `cpu` (cpu_id == cpu). */
#define FLOOR_CS_ADD1(off, cpu, slot)                                        \
    __asm__ __volatile__ goto(FLOOR_CS_DESCRIPTOR                            \
                              "leaq 3b(%%rip), %%rax\n\t"                    \
                              "movq %%rax, %%fs:8(%[o])\n"                   \
                              "1:\tcmpl %[c], %%fs:4(%[o])\n\t"              \
                              "jne %l[abort]\n\t"                            \
                              "addq $1, (%[s])\n"                            \
                              "2:\n\t" FLOOR_CS_ABORT                        \
                              :                                              \
                              : [o] "r"(off), [c] "r"(cpu), [s] "r"(slot)    \
                              : "memory", "cc", "rax"                        \
                              : abort)

#elif defined(__aarch64__)

static inline void *floor_thread_pointer(void)
{
    void *tp;
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
    return tp;
}

static inline int32_t floor_load32(ptrdiff_t off, long field)
{
    int32_t v;
    __asm__ __volatile__("ldr %w0, [%1, #%2]"
                         : "=r"(v)
                         : "r"((char *)floor_thread_pointer() + off), "I"(field));
    return v;
}

#define FLOOR_IF_NEGATIVE_CPU_ID(off, label)                                          \
    __asm__ __volatile__ goto("ldr w16, [%0, #4]\n\ttbnz w16, #31, %l[" #label "]"   \
                              : : "r"((char *)floor_thread_pointer() + (off)) : "x16" : label)

#define FLOOR_CS_ADD1(off, cpu, slot)                                        \
    __asm__ __volatile__ goto(                                               \
        FLOOR_CS_DESCRIPTOR                                                  \
        "adrp x16, 3b\n\t"                                                   \
        "add x16, x16, :lo12:3b\n\t"                                         \
        "str x16, [%[a], #8]\n"                                              \
        "1:\tldr w16, [%[a], #4]\n\t"                                        \
        "cmp w16, %w[c]\n\t"                                                 \
        "b.ne %l[abort]\n\t"                                                 \
        "ldr x16, [%[s]]\n\t"                                                \
        "add x16, x16, #1\n\t"                                               \
        "str x16, [%[s]]\n"                                                  \
        "2:\n\t"                                                             \
        ".pushsection __rseq_failure, \"ax\"\n\t"                            \
        ".inst 0xd428bc00\n"                                                 \
        "4:\tb %l[abort]\n\t"                                                \
        ".popsection"                                                        \
        :                                                                    \
        : [a] "r"((char *)floor_thread_pointer() + (off)), [c] "r"(cpu),     \
          [s] "r"(slot)                                                      \
        : "memory", "cc", "x16"                                              \
        : abort)

#endif

static inline int floor_current_cpu_at(ptrdiff_t off)
{
    int cpu = floor_load32(off, 4);
    if (__builtin_expect(cpu >= 0, 1))
        return cpu;
    return floor_cpu_fallback();
}

static inline int floor_current_cpu(void)
{
    return floor_current_cpu_at(floor_offset());
}

static inline int floor_current_cpu_raw(void)
{
    return floor_load32(floor_offset(), 4);
}

/* The test is an asm branch: as a C condition the compiler turns it into a
 * cmov, and in a loop summing the results that chains every iteration to the
 * previous one (2.5x slower than the branch). */
static inline void *floor_area(void)
{
    ptrdiff_t off = floor_offset();
    FLOOR_IF_NEGATIVE_CPU_ID(off, none);
    return (char *)floor_thread_pointer() + off;
none:
    return NULL;
}

/* Start from cpu_id_start; the section's cpu_id compare rejects a thread
 * that is not registered (cpu_id < 0 never equals it): no sign test first. */
static inline int floor_counter_add64_at(ptrdiff_t off, intptr_t *slots)
{
    uint32_t cpu;
retry:
    cpu = (uint32_t)floor_load32(off, 0);
    FLOOR_CS_ADD1(off, cpu, (uintptr_t)slots + (uintptr_t)cpu * 64);
    return (int)cpu;
abort:
    FLOOR_COLD_PATH;
    if (floor_load32(off, 4) >= 0)
        goto retry;
    return floor_counter_fallback(slots);
}

static inline int floor_counter_add64(intptr_t *slots)
{
    return floor_counter_add64_at(floor_offset(), slots);
}

#endif
