/* librseq-like public header (shared/reference/rseq-abi.md section 3.1):
 * librseq's operations are inline asm in its header, and each one lists its
 * descriptor in __rseq_cs_ptr_array and its early exits in
 * __rseq_exit_point_array, sections it opens with the flags "aw" (no
 * SHF_GNU_RETAIN). A translation unit that includes it beside a generated
 * header must still assemble, with either header first. x86_64 only: one
 * per-CPU add, on glibc's registration (__rseq_offset). */
#ifndef PEER_LIBRSEQ_HEADER_H
#define PEER_LIBRSEQ_HEADER_H

#include <stddef.h>
#include <stdint.h>

extern const ptrdiff_t __rseq_offset;

/* *v += count on CPU cpu: 0 committed, -1 aborted or on another CPU. */
static inline int peer_librseq_percpu_add(intptr_t *v, intptr_t count, int cpu)
{
    __asm__ __volatile__ goto(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n"
        "3:\t.long 0, 0\n\t"
        ".quad 1f, (2f - 1f), 4f\n\t"
        ".popsection\n\t"
        ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"
        ".quad 3b\n\t"
        ".popsection\n\t"
        ".pushsection __rseq_exit_point_array, \"aw\"\n\t"
        ".quad 1f, %l[abort]\n\t"
        ".popsection\n\t"
        "leaq 3b(%%rip), %%rax\n\t"
        "movq %%rax, %%fs:8(%[off])\n"
        "1:\tcmpl %[cpu], %%fs:4(%[off])\n\t"
        "jnz %l[abort]\n\t"
        "addq %[count], %[v]\n"
        "2:\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".byte 0x0f, 0xb9, 0x3d\n\t"
        ".long 0x53053053\n"
        "4:\tjmp %l[abort]\n\t"
        ".popsection\n\t"
        : /* no outputs */
        : [off] "r"(__rseq_offset), [cpu] "r"(cpu), [v] "m"(*v), [count] "er"(count)
        : "memory", "cc", "rax"
        : abort);
    return 0;
abort:
    return -1;
}

#endif
