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
 * generated module's own words (FLOOR_BENCH_WORDS, defined before including
 * this file, sets FLOOR_OFFSET_WORD and the mm_cid words), so that floor and generated code load the same variable and
 * differ only in their instructions: in one build the generated code's word
 * cost 9 % on current_cpu_raw (self-owned) against a floor-owned word at
 * another address, and reading the same word made both equally slow (a
 * link-layout effect, docs/benchmarks.md). Otherwise the floor has its own,
 * set by the program (FLOOR_DEFINE_OFFSET). FLOOR_BENCH_WORDS: the program
 * includes the generated bench_rseq.h, whose executable code has the words
 * (and whose shared-object code reads the module's own hidden words). */
#if defined(FLOOR_BENCH_WORDS) && defined(BENCH__AREA_OFFSET_AT_LOAD)
#define FLOOR_OFFSET_WORD bench__exe_area_offset_direct
#define FLOOR_MMCID_OFFSET_WORD bench__exe_mmcid_area_offset_direct
#define FLOOR_MMCID_THREAD_WORD bench__exe_mmcid_thread_offset
#define FLOOR_NULL_OFFSET_WORD bench__exe_null_area_offset_direct
#elif defined(FLOOR_BENCH_WORDS)
/* Shared-object code: the module's own words, hidden in the same library. */
#define FLOOR_OFFSET_WORD bench_rseq_area_offset
#define FLOOR_MMCID_OFFSET_WORD bench_rseq_mmcid_area_offset
#endif
#ifndef FLOOR_OFFSET_WORD
#define FLOOR_OFFSET_WORD floor_area_offset
#undef FLOOR_MMCID_OFFSET_WORD
#define FLOOR_MMCID_OFFSET_WORD floor_area_offset
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

/* The offset the mm_cid floors read: an area in which the kernel maintains
 * mm_cid (the generated module's mm_cid word; with a floor-owned word, the
 * area offset: the floor assumes a kernel >= 6.3). */
#ifndef FLOOR_MMCID_OFFSET_WORD
#define FLOOR_MMCID_OFFSET_WORD FLOOR_OFFSET_WORD
#endif
static inline ptrdiff_t floor_mmcid_process_offset(void)
{
    return __atomic_load_n(&FLOOR_MMCID_OFFSET_WORD, __ATOMIC_RELAXED);
}

/* The mm_cid operations' offset. With FLOOR_MMCID_THREAD_WORD (the generated
 * module's word per thread, with FLOOR_NULL_OFFSET_WORD its null area's
 * offset) x86_64 reads it per thread: the null area, whose mm_cid equals no
 * index, until the thread was seen registered (floor_mmcid_refresh, on the
 * index's unregistered path), so the operations compare mm_cid bare. */
#if defined(FLOOR_MMCID_THREAD_WORD) && defined(__x86_64__)
#define FLOOR_MMCID_PER_THREAD 1
#define FLOOR_STRINGIFY_(x) #x
#define FLOOR_STRINGIFY(x) FLOOR_STRINGIFY_(x)
static inline ptrdiff_t floor_mmcid_offset(void)
{
    return FLOOR_MMCID_THREAD_WORD;
}

/* The same word as a plain load at its offset from the thread pointer
 * (which the compiler may keep in a register), for the operations the
 * generated code reads it so (FLOOR_WORD_FROM_TP_<op>). */
static inline ptrdiff_t floor_mmcid_offset_from_tp(void)
{
    ptrdiff_t off;
    __asm__("movq " FLOOR_STRINGIFY(FLOOR_MMCID_THREAD_WORD) "@tpoff(%1), %0"
            : "=r"(off) : "r"(__builtin_thread_pointer()), "m"(FLOOR_MMCID_THREAD_WORD));
    return off;
}
#else
#define FLOOR_MMCID_PER_THREAD 0
static inline ptrdiff_t floor_mmcid_offset(void)
{
    return floor_mmcid_process_offset();
}

static inline ptrdiff_t floor_mmcid_offset_from_tp(void)
{
    return floor_mmcid_process_offset();
}
#endif

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

/* Points the thread's mm_cid word at the process's mm_cid area when the
 * thread is registered there, else at the null area (cold paths only). */
static inline void floor_mmcid_refresh(void)
{
#if FLOOR_MMCID_PER_THREAD
    ptrdiff_t off = floor_mmcid_process_offset();
    FLOOR_MMCID_THREAD_WORD = floor_load32(off, 4) >= 0 ? off : FLOOR_NULL_OFFSET_WORD;
#endif
}

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


/* ---- The per-CPU operations -------------------------------------------
 *
 * Each operation of rseq_gen/operations.py as the shortest correct sequence
 * for it, in both indexing modes: the same body after a compare of cpu_id
 * (CPU mode) or of mm_cid (mm_cid mode) with the index. 0 committed, 1 the
 * compare failed, -1 aborted or not on that index. A bare mm_cid compare
 * does not reject a thread whose area is not registered (mm_cid reads 0
 * there): on x86_64 the mm_cid floors read the generated module's word per
 * thread, which points at a null area until the thread is registered
 * (FLOOR_MMCID_PER_THREAD), or else fold the sign of cpu_id into that
 * compare (FLOOR_INDEX_CMP_24); on aarch64 they test it first. A thread that has no
 * rseq area runs the operation under one lock, out of line (floor_locked_*).
 *
 * Where the shortest form is not the fastest the floor takes the fastest:
 * deref_add adds the offset into a register and increments (%reg), since a
 * chain of read-modify-writes through (%base,%index) runs 3x slower on x86
 * cores (docs/benchmarks.md). The memcpy copies 8 bytes at a time, then the
 * remaining bytes (x86_64; aarch64: bytes, with its test at the bottom). */

#define FLOOR_UNPAREN(...) __VA_ARGS__
#define FLOOR_STR2(x) #x
#define FLOOR_STR(x) FLOOR_STR2(x)
#define FLOOR_CPU_ID 4
#define FLOOR_MM_CID 24

/* In a section of its own: beside the offset global in .bss, GCC's aarch64
 * section anchors address that global as anchor + 8 (one more add). */
static int floor_lock_word __attribute__((section(".bss.floor_lock_word")));

/* The fallbacks' attributes: out of line, and neither cold nor open to
 * GCC's interprocedural analysis. Either way GCC merged the path after a
 * fallback (which it could see returns 0) with the caller's success path
 * and moved that shared block into .cold: a jump out and back on every
 * iteration of a loop calling the floor. */
#if defined(__clang__)
#define FLOOR_OUT_OF_LINE __attribute__((noinline, unused))
#else
#define FLOOR_OUT_OF_LINE __attribute__((noinline, noipa, unused))
#endif

__attribute__((noinline, cold)) static void floor_lock(void)
{
    while (__atomic_exchange_n(&floor_lock_word, 1, __ATOMIC_ACQUIRE))
        ;
}

static void floor_unlock(void)
{
    __atomic_store_n(&floor_lock_word, 0, __ATOMIC_RELEASE);
}

/* The operations without an rseq area: under the lock, in C. */
FLOOR_OUT_OF_LINE static int floor_locked_add(intptr_t *v, intptr_t count)
{
    __atomic_fetch_add(v, count, __ATOMIC_RELAXED);
    return 0;
}

FLOOR_OUT_OF_LINE static int floor_locked_cmpxchg(intptr_t *v, intptr_t expect, intptr_t newv)
{
    return __atomic_compare_exchange_n(v, &expect, newv, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED) ? 0 : 1;
}

FLOOR_OUT_OF_LINE static int floor_locked_pop(intptr_t *head, intptr_t expect_not, long next_offset,
                                                            intptr_t *popped)
{
    int r = 1;
    floor_lock();
    if (*head != expect_not) {
        *popped = *head;
        *head = *(intptr_t *)(*head + next_offset);
        r = 0;
    }
    floor_unlock();
    return r;
}

FLOOR_OUT_OF_LINE static int floor_locked_deref_add(intptr_t *ptr, long offset, intptr_t inc)
{
    floor_lock();
    *(intptr_t *)(*ptr + offset) += inc;
    floor_unlock();
    return 0;
}

FLOOR_OUT_OF_LINE static int floor_locked_cmpxchg_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                                      intptr_t newv2, intptr_t newv)
{
    int r = 1;
    floor_lock();
    if (*v == expect) {
        *v2 = newv2;
        __atomic_store_n(v, newv, __ATOMIC_RELEASE);
        r = 0;
    }
    floor_unlock();
    return r;
}

FLOOR_OUT_OF_LINE static int floor_locked_cmp2xchg(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                                 intptr_t expect2, intptr_t newv)
{
    int r = 1;
    floor_lock();
    if (*v == expect && *v2 == expect2) {
        *v = newv;
        r = 0;
    }
    floor_unlock();
    return r;
}

FLOOR_OUT_OF_LINE static int floor_locked_cmpxchg_memcpy(intptr_t *v, intptr_t expect, void *dst,
                                                                       const void *src, size_t len, intptr_t newv)
{
    int r = 1;
    floor_lock();
    if (*v == expect) {
        memcpy(dst, src, len);
        __atomic_store_n(v, newv, __ATOMIC_RELEASE);
        r = 0;
    }
    floor_unlock();
    return r;
}
#define floor_locked_cmpxchg_store_release floor_locked_cmpxchg_store
#define floor_locked_cmpxchg_memcpy_release floor_locked_cmpxchg_memcpy

#if defined(__x86_64__)

/* The sequence: descriptor, rseq_cs store, the index compare with the area
 * field at byte `field`, then `body`, which commits with its last
 * instruction. */
#define FLOOR_SEQ(field, body)                                               \
    FLOOR_CS_DESCRIPTOR                                                      \
    "leaq 3b(%%rip), %%rax\n\t"                                              \
    "movq %%rax, %%fs:8(%[o])\n"                                             \
    FLOOR_INDEX_CMP(field)                                                   \
    "jne %l[abort]\n\t" body                                                 \
    "2:\n\t" FLOOR_CS_ABORT
#define FLOOR_INDEX_CMP(field) FLOOR_INDEX_CMP2(field)
#define FLOOR_INDEX_CMP2(field) FLOOR_INDEX_CMP_##field
#define FLOOR_INDEX_CMP_4 "1:\tcmpl %[i], %%fs:4(%[o])\n\t"
/* mm_cid: the registration test folded into the compare, no branch of its
 * own. The sign-extended top byte of cpu_id is -1 on a thread whose area is
 * not registered (cpu_id -1 or -2) and 0 on one that is (a CPU < 2^24);
 * ORed with mm_cid (0 when not registered) it equals the index only on a
 * registered thread (no index is 0xffffffff). One load and one OR more than
 * the cpu_id compare; the sign test and branch before the sequence it
 * replaces cost as many instructions and a branch more, and sar $31 of the
 * whole cpu_id one more (docs/benchmarks.md). */
#if FLOOR_MMCID_PER_THREAD
/* The thread's word points at the null area until it is registered. */
#define FLOOR_INDEX_CMP_24 "1:\tcmpl %[i], %%fs:24(%[o])\n\t"
#else
#define FLOOR_INDEX_CMP_24                                                   \
    "1:\tmovsbl %%fs:7(%[o]), %%eax\n\t"                                     \
    "orl %%fs:24(%[o]), %%eax\n\t"                                           \
    "cmpl %[i], %%eax\n\t"
#endif
#define FLOOR_MMCID_SEQ_CHECKS_REGISTERED 1
#define FLOOR_SEQ_BASE(off) [o] "r"(off)
#define FLOOR_SEQ_CLOBBERS "memory", "cc", "rax"
#define FLOOR_OPS_SETUP(off) ((void)0)

/* x86 is TSO: a release commit is a plain store. */
#define FLOOR_BODY_add(st) "addq %[count], (%[v])\n"
#define FLOOR_BODY_cmpxchg(st)                                               \
    "cmpq %[expect], (%[v])\n\tjne %l[cmpfail]\n\tmovq %[newv], (%[v])\n"
#define FLOOR_BODY_pop(st)                                                   \
    "movq (%[head]), %%rcx\n\t"                                              \
    "cmpq %[expect_not], %%rcx\n\t"                                          \
    "je %l[cmpfail]\n\t"                                                     \
    "movq %%rcx, (%[popped])\n\t"                                            \
    "movq (%%rcx, %[next_offset]), %%rcx\n\t"                                \
    "movq %%rcx, (%[head])\n"
#define FLOOR_BODY_deref_add(st)                                             \
    "movq (%[ptr]), %%rcx\n\t"                                               \
    "addq %[offset], %%rcx\n\t"                                              \
    "addq %[inc], (%%rcx)\n"
#define FLOOR_BODY_cmpxchg_store(st)                                         \
    "cmpq %[expect], (%[v])\n\tjne %l[cmpfail]\n\t"                          \
    "movq %[newv2], (%[v2])\n\tmovq %[newv], (%[v])\n"
#define FLOOR_BODY_cmp2xchg(st)                                              \
    "cmpq %[expect], (%[v])\n\tjne %l[cmpfail]\n\t"                          \
    "cmpq %[expect2], (%[v2])\n\tjne %l[cmpfail]\n\t"                        \
    "movq %[newv], (%[v])\n"
#define FLOOR_BODY_cmpxchg_memcpy(st)                                        \
    "cmpq %[expect], (%[v])\n\tjne %l[cmpfail]\n\t"                          \
    "xorl %%ecx, %%ecx\n\t"                                                  \
    "jmp 5f\n"                                                               \
    "6:\tmovq (%[src], %%rcx), %%rdx\n\t"                                    \
    "movq %%rdx, (%[dst], %%rcx)\n\t"                                        \
    "addq $8, %%rcx\n"                                                       \
    "5:\tleaq 8(%%rcx), %%rdx\n\t"                                           \
    "cmpq %[len], %%rdx\n\t"                                                 \
    "jbe 6b\n\t"                                                             \
    "jmp 8f\n"                                                               \
    "7:\tmovb (%[src], %%rcx), %%dl\n\t"                                     \
    "movb %%dl, (%[dst], %%rcx)\n\t"                                         \
    "incq %%rcx\n"                                                           \
    "8:\tcmpq %[len], %%rcx\n\t"                                             \
    "jne 7b\n\t"                                                             \
    "movq %[newv], (%[v])\n"
/* Operand constraints: addresses in registers, values as registers or
 * 32-bit immediates. */
#define FLOOR_V "er"
#define FLOOR_C "r"   /* compared with memory: cmp %reg, (mem) fuses with its branch, cmp $imm, (mem) does not */
#define FLOOR_S "er"  /* stored */
#define FLOOR_N "r"   /* used as an index register */
#define FLOOR_CLOBBER_POP , "rcx"
#define FLOOR_CLOBBER_DEREF , "rcx"
#define FLOOR_CLOBBER_MEMCPY , "rcx", "rdx"

#elif defined(__aarch64__)

#define FLOOR_SEQ(field, body)                                               \
    FLOOR_CS_DESCRIPTOR                                                      \
    "adrp x16, 3b\n\t"                                                       \
    "add x16, x16, :lo12:3b\n\t"                                             \
    "str x16, [%[a], #8]\n"                                                  \
    "1:\tldr w16, [%[a], #" FLOOR_STR(field) "]\n\t"                         \
    "cmp w16, %w[i]\n\t"                                                     \
    "b.ne %l[abort]\n\t" body                                                \
    "2:\n\t"                                                                 \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".inst 0xd428bc00\n"                                                     \
    "4:\tb %l[abort]\n\t"                                                    \
    ".popsection"
#define FLOOR_MMCID_SEQ_CHECKS_REGISTERED 0
#define FLOOR_SEQ_BASE(off) [a] "r"(floor_area_base)
#define FLOOR_SEQ_CLOBBERS "memory", "cc", "x16", "x17"
#define FLOOR_OPS_SETUP(off) char *floor_area_base = (char *)floor_thread_pointer() + (off)

/* st: the commit store ("str", or "stlr" for release). */
#define FLOOR_BODY_add(st) "ldr x17, [%[v]]\n\tadd x17, x17, %[count]\n\t" st " x17, [%[v]]\n"
#define FLOOR_BODY_cmpxchg(st)                                               \
    "ldr x17, [%[v]]\n\tcmp x17, %[expect]\n\tb.ne %l[cmpfail]\n\t"          \
    st " %[newv], [%[v]]\n"
#define FLOOR_BODY_pop(st)                                                   \
    "ldr x17, [%[head]]\n\t"                                                 \
    "cmp x17, %[expect_not]\n\t"                                             \
    "b.eq %l[cmpfail]\n\t"                                                   \
    "str x17, [%[popped]]\n\t"                                               \
    "ldr x17, [x17, %[next_offset]]\n\t"                                     \
    st " x17, [%[head]]\n"
#define FLOOR_BODY_deref_add(st)                                             \
    "ldr x17, [%[ptr]]\n\t"                                                  \
    "add x17, x17, %[offset]\n\t"                                            \
    "ldr x16, [x17]\n\t"                                                     \
    "add x16, x16, %[inc]\n\t" st " x16, [x17]\n"
#define FLOOR_BODY_cmpxchg_store(st)                                         \
    "ldr x17, [%[v]]\n\tcmp x17, %[expect]\n\tb.ne %l[cmpfail]\n\t"          \
    "str %[newv2], [%[v2]]\n\t" st " %[newv], [%[v]]\n"
#define FLOOR_BODY_cmp2xchg(st)                                              \
    "ldr x17, [%[v]]\n\tcmp x17, %[expect]\n\tb.ne %l[cmpfail]\n\t"          \
    "ldr x17, [%[v2]]\n\tcmp x17, %[expect2]\n\tb.ne %l[cmpfail]\n\t"        \
    st " %[newv], [%[v]]\n"
#define FLOOR_BODY_cmpxchg_memcpy(st)                                        \
    "ldr x17, [%[v]]\n\tcmp x17, %[expect]\n\tb.ne %l[cmpfail]\n\t"          \
    "mov x17, #0\n\t"                                                        \
    "cbz %[len], 7f\n"                                                       \
    "6:\tldrb w16, [%[src], x17]\n\t"                                        \
    "strb w16, [%[dst], x17]\n\t"                                            \
    "add x17, x17, #1\n\t"                                                   \
    "cmp x17, %[len]\n\t"                                                    \
    "b.ne 6b\n"                                                              \
    "7:\t" st " %[newv], [%[v]]\n"
#define FLOOR_V "rI"
#define FLOOR_C "rI"
#define FLOOR_S "r"
#define FLOOR_N "r"
#define FLOOR_CLOBBER_POP
#define FLOOR_CLOBBER_DEREF
#define FLOOR_CLOBBER_MEMCPY

#endif

#ifdef FLOOR_SEQ
/* One operation's sequence in one mode: floor_cs_<mode>_<name>(off, params,
 * index). */
#define FLOOR_CS_FN(mode, field, name, store, params, operands, clobbers)   \
    static inline int floor_cs_##mode##_##name(ptrdiff_t off, FLOOR_UNPAREN params, int idx) \
    {                                                                        \
        FLOOR_OPS_SETUP(off);                                                \
        __asm__ __volatile__ goto(FLOOR_SEQ(field, store)                    \
                                  :                                          \
                                  : FLOOR_SEQ_BASE(off), [i] "r"(idx), FLOOR_UNPAREN operands \
                                  : FLOOR_SEQ_CLOBBERS clobbers           \
                                  : abort, cmpfail);                         \
        return 0;                                                            \
    cmpfail:                                                                 \
        return 1;                                                            \
    abort:                                                                   \
        return -1;                                                           \
    }                                                                        \
    /* The generated API's shape: a CPU form that falls back when the     */ \
    /* thread has no area; an mm_cid form that tests cpu_id's sign first. */ \
    static inline int floor_##mode##_##name(FLOOR_UNPAREN params, int idx)  \
    {                                                                        \
        ptrdiff_t off = FLOOR_MODE_OFFSET_##mode(FLOOR_WORD_FROM_TP_##name); \
        int r;                                                               \
        FLOOR_MODE_CHECK_##mode(off, unregistered);                          \
        r = floor_cs_##mode##_##name(off, FLOOR_ARGS_##name, idx);           \
        if (__builtin_expect(r >= 0, 1))                                     \
            return r;                                                        \
        if (__builtin_expect(FLOOR_MODE_RETRY_##mode(off), 1))               \
            return -1;                                                       \
    unregistered:                                                            \
        return floor_locked_##name(FLOOR_ARGS_##name);                       \
    }
#define FLOOR_MODE_OFFSET_percpu(from_tp) floor_offset()
#define FLOOR_MODE_OFFSET_mmcid(from_tp) ((from_tp) ? floor_mmcid_offset_from_tp() : floor_mmcid_offset())
/* The operations whose mm_cid word the generated code reads from the
 * thread pointer (rseq_gen.operations, mmcid_word_from_thread_pointer;
 * tests/test_hot_paths.py keeps the two in step). */
#define FLOOR_WORD_FROM_TP_add 0
#define FLOOR_WORD_FROM_TP_cmpxchg 0
#define FLOOR_WORD_FROM_TP_pop 1
#define FLOOR_WORD_FROM_TP_deref_add 0
#define FLOOR_WORD_FROM_TP_cmpxchg_store 0
#define FLOOR_WORD_FROM_TP_cmpxchg_store_release 0
#define FLOOR_WORD_FROM_TP_cmp2xchg 0
#define FLOOR_WORD_FROM_TP_cmpxchg_memcpy 0
#define FLOOR_WORD_FROM_TP_cmpxchg_memcpy_release 0
/* CPU mode: the cpu_id compare rejects an unregistered thread (-1 never
 * equals a CPU); after a -1, the sign of cpu_id tells abort from no area. */
#define FLOOR_MODE_CHECK_percpu(off, label) \
    do {                                    \
        if (0)                              \
            goto label;                     \
    } while (0)
#define FLOOR_MODE_RETRY_percpu(off) (floor_load32((off), FLOOR_CPU_ID) >= 0)
/* mm_cid mode: where the sequence tests registration (x86_64), as CPU mode;
 * elsewhere the sign of cpu_id first. */
#if FLOOR_MMCID_SEQ_CHECKS_REGISTERED
#define FLOOR_MODE_CHECK_mmcid FLOOR_MODE_CHECK_percpu
#define FLOOR_MODE_RETRY_mmcid FLOOR_MODE_RETRY_percpu
#else
#define FLOOR_MODE_CHECK_mmcid(off, label) FLOOR_IF_NEGATIVE_CPU_ID(off, label)
#define FLOOR_MODE_RETRY_mmcid(off) 1
#endif

#define FLOOR_ARGS_add v, count
#define FLOOR_ARGS_cmpxchg v, expect, newv
#define FLOOR_ARGS_pop head, expect_not, next_offset, popped
#define FLOOR_ARGS_deref_add ptr, offset, inc
#define FLOOR_ARGS_cmpxchg_store v, expect, v2, newv2, newv
#define FLOOR_ARGS_cmpxchg_store_release FLOOR_ARGS_cmpxchg_store
#define FLOOR_ARGS_cmp2xchg v, expect, v2, expect2, newv
#define FLOOR_ARGS_cmpxchg_memcpy v, expect, dst, src, len, newv
#define FLOOR_ARGS_cmpxchg_memcpy_release FLOOR_ARGS_cmpxchg_memcpy

#define FLOOR_OPS(mode, field)                                               \
    FLOOR_CS_FN(mode, field, add, FLOOR_BODY_add("str"),                     \
                (intptr_t *v, intptr_t count),                               \
                ([v] "r"(v), [count] FLOOR_V(count)), )               \
    FLOOR_CS_FN(mode, field, cmpxchg, FLOOR_BODY_cmpxchg("str"),             \
                (intptr_t *v, intptr_t expect, intptr_t newv),               \
                ([v] "r"(v), [expect] FLOOR_C(expect), [newv] FLOOR_S(newv)), ) \
    FLOOR_CS_FN(mode, field, pop, FLOOR_BODY_pop("str"),                     \
                (intptr_t *head, intptr_t expect_not, long next_offset, intptr_t *popped), \
                ([head] "r"(head), [expect_not] FLOOR_V(expect_not),         \
                 [next_offset] FLOOR_N(next_offset), [popped] "r"(popped)), FLOOR_CLOBBER_POP) \
    FLOOR_CS_FN(mode, field, deref_add, FLOOR_BODY_deref_add("str"),         \
                (intptr_t *ptr, long offset, intptr_t inc),                  \
                ([ptr] "r"(ptr), [offset] FLOOR_V(offset), [inc] FLOOR_V(inc)), FLOOR_CLOBBER_DEREF) \
    FLOOR_CS_FN(mode, field, cmpxchg_store, FLOOR_BODY_cmpxchg_store("str"), \
                (intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv), \
                ([v] "r"(v), [expect] FLOOR_C(expect), [v2] "r"(v2),         \
                 [newv2] FLOOR_S(newv2), [newv] FLOOR_S(newv)), )     \
    FLOOR_CS_FN(mode, field, cmpxchg_store_release, FLOOR_BODY_cmpxchg_store("stlr"), \
                (intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv), \
                ([v] "r"(v), [expect] FLOOR_C(expect), [v2] "r"(v2),         \
                 [newv2] FLOOR_S(newv2), [newv] FLOOR_S(newv)), )     \
    FLOOR_CS_FN(mode, field, cmp2xchg, FLOOR_BODY_cmp2xchg("str"),           \
                (intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t expect2, intptr_t newv), \
                ([v] "r"(v), [expect] FLOOR_C(expect), [v2] "r"(v2),         \
                 [expect2] FLOOR_C(expect2), [newv] FLOOR_S(newv)), ) \
    FLOOR_CS_FN(mode, field, cmpxchg_memcpy, FLOOR_BODY_cmpxchg_memcpy("str"), \
                (intptr_t *v, intptr_t expect, void *dst, const void *src, size_t len, intptr_t newv), \
                ([v] "r"(v), [expect] FLOOR_C(expect), [dst] "r"(dst), [src] "r"(src), \
                 [len] "r"(len), [newv] FLOOR_S(newv)), FLOOR_CLOBBER_MEMCPY) \
    FLOOR_CS_FN(mode, field, cmpxchg_memcpy_release, FLOOR_BODY_cmpxchg_memcpy("stlr"), \
                (intptr_t *v, intptr_t expect, void *dst, const void *src, size_t len, intptr_t newv), \
                ([v] "r"(v), [expect] FLOOR_C(expect), [dst] "r"(dst), [src] "r"(src), \
                 [len] "r"(len), [newv] FLOOR_S(newv)), FLOOR_CLOBBER_MEMCPY)

FLOOR_OPS(percpu, FLOOR_CPU_ID)
FLOOR_OPS(mmcid, FLOOR_MM_CID)

/* mm_cid of the thread, from an area where the kernel maintains it; the
 * thread's CPU when it has no area. */
static inline int floor_mmcid_index(void)
{
    ptrdiff_t off = floor_mmcid_offset();
    FLOOR_IF_NEGATIVE_CPU_ID(off, unregistered);
    return floor_load32(off, FLOOR_MM_CID);
unregistered:
    FLOOR_COLD_PATH;
    floor_mmcid_refresh();  /* before the call, which stays a tail call */
    return floor_cpu_fallback();
}

/* slots[mm_cid * 64 bytes] += 1, retrying until done. With the bare
 * mm_cid compare (FLOOR_MMCID_PER_THREAD) it reads the process's word and
 * folds the registration test into the cid it starts from instead: mm_cid
 * ORed with the sign-extended top byte of cpu_id, all ones on a thread not
 * registered, which no area's mm_cid equals. */
static inline int floor_mmcid_counter_add64(intptr_t *slots)
{
    ptrdiff_t off = floor_mmcid_process_offset();
    uint32_t cid;
retry:
#if !FLOOR_MMCID_SEQ_CHECKS_REGISTERED
    FLOOR_IF_NEGATIVE_CPU_ID(off, unregistered);
#endif
#if FLOOR_MMCID_PER_THREAD
    __asm__ __volatile__("movsbl %%fs:7(%1), %0\n\torl %%fs:24(%1), %0" : "=&r"(cid) : "r"(off) : "cc");
#else
    cid = (uint32_t)floor_load32(off, FLOOR_MM_CID);
#endif
    if (__builtin_expect(floor_cs_mmcid_add(off, (intptr_t *)((uintptr_t)slots + (uintptr_t)cid * 64), 1,
                                            (int)cid) == 0, 1))
        return (int)cid;
#if FLOOR_MMCID_SEQ_CHECKS_REGISTERED
    /* The section rejects a thread not registered (mm_cid 0 there). */
    if (floor_load32(off, FLOOR_CPU_ID) >= 0)
        goto retry;
    goto unregistered;
#else
    goto retry;
#endif
unregistered:
    FLOOR_COLD_PATH;
    return floor_counter_fallback(slots);
}
#endif

#endif
