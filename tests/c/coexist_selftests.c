/* selftests-like peer: the registration code of the kernel's rseq selftests
 * (tools/testing/selftests/rseq/rseq.c; shared/reference/rseq-abi.md section
 * 4, rseq_gen.adopters "selftests"), written from that description:
 *
 * - weak undefined references to glibc's __rseq_offset/__rseq_size/
 *   __rseq_flags (NULL where absent, and they work in static links), then
 *   dlsym(RTLD_NEXT) when those say nothing;
 * - a private initial-exec TLS union __rseq of 1024 bytes, its struct
 *   aligned to 32 as in the 2024-25 selftests (the 2026 ones align it to
 *   256; glibc then cannot dlopen them, as it cannot dlopen librseq: an
 *   initial-exec TLS block aligned above the start-up TLS alignment, 64 on
 *   this machine, fails with "cannot allocate memory in static TLS block");
 * - exports the librseq names (rseq_offset, rseq_size, rseq_flags,
 *   rseq_register_current_thread, rseq_unregister_current_thread), no
 *   mempool;
 * - registers 32 bytes and remembers the length to unregister; a refused
 *   registration returns -1 while no thread succeeded, abort()s after one
 *   did. */
#define _GNU_SOURCE 1
#include <dlfcn.h>

#include "coexist_librseq_abi.h"

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
extern const unsigned int __rseq_flags __attribute__((weak));

ptrdiff_t rseq_offset;
unsigned int rseq_size = -1U;
unsigned int rseq_flags;

static const unsigned int alloc_size = COEXIST_ORIGINAL_AREA_SIZE;

static __thread union {
    struct coexist_rseq abi;
    char dummy[1024];
} __rseq __attribute__((tls_model("initial-exec"))) = { .abi = { .cpu_id = COEXIST_CPU_ID_UNINITIALIZED } };

static struct coexist_glibc_rseq find_glibc(void)
{
    struct coexist_glibc_rseq glibc = { &__rseq_offset, &__rseq_size, &__rseq_flags };
    if (glibc.size == NULL || *glibc.size == 0) {
        glibc.offset = dlsym(RTLD_NEXT, "__rseq_offset");
        glibc.size = dlsym(RTLD_NEXT, "__rseq_size");
        glibc.flags = dlsym(RTLD_NEXT, "__rseq_flags");
    }
    return glibc;
}

static void init(void)
{
    coexist_librseq_init(find_glibc, &__rseq.abi);
}

__attribute__((constructor)) static void selftests_constructor(void)
{
    init();
}

int rseq_register_current_thread(void)
{
    init();
    return coexist_ownership ? coexist_librseq_register(&__rseq.abi, alloc_size, "selftests") : 0;
}

int rseq_unregister_current_thread(void)
{
    return coexist_ownership ? coexist_librseq_unregister(&__rseq.abi, alloc_size) : 0;
}
