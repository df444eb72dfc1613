/* TLS block of the tcmalloc-like peer (coexist_tcmalloc.c), laid out as
 * google/tcmalloc lays out its own (shared/reference/rseq-abi.md section 5):
 * a global, interposable 32-byte TLS __rseq_abi defined in assembly
 * (cpu_id_start 0, cpu_id -1), at offset 32 of a 64-byte line, with the
 * 8-byte tcmalloc_slabs 4 bytes before it, so that its upper half is
 * __rseq_abi.cpu_id_start. */
        .section .tdata, "awT", @progbits
        .p2align 6
        .globl tcmalloc_slabs
        .type tcmalloc_slabs, @object
        .globl __rseq_abi
        .type __rseq_abi, @object
        .zero 64 + 32 - 4
tcmalloc_slabs:
        .long 0
__rseq_abi:
        .long 0                 /* cpu_id_start */
        .long 0xffffffff        /* cpu_id: uninitialised */
        .quad 0                 /* rseq_cs */
        .long 0                 /* flags */
        .long 0                 /* node_id */
        .long 0                 /* mm_cid */
        .long 0
        .size __rseq_abi, 32
        .size tcmalloc_slabs, 8

        .section .note.GNU-stack, "", @progbits
