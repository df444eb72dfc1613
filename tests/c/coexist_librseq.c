/* librseq-like peer: what compudj/librseq does with a thread's registration
 * (shared/reference/rseq-abi.md section 3.1, rseq_gen.adopters "librseq"),
 * written from that description:
 *
 * - exports rseq_offset, rseq_size (-1U until initialised, 0 until the first
 *   registration succeeds, then the kernel's feature size), rseq_flags,
 *   rseq_register_current_thread, rseq_unregister_current_thread and
 *   rseq_mempool_create (a stub: the name is part of how librseq is
 *   recognised in ELF files);
 * - its area is a private (static, so STB_LOCAL) initial-exec TLS object
 *   named __rseq_abi, aligned to 1024;
 * - finds glibc's registration with dlsym(RTLD_NEXT) only (no weak
 *   references), in a constructor and lazily from the first registration;
 * - registers a thread only when asked, with max(rseq_size, 32) bytes; a
 *   refused registration returns -1 while no thread succeeded, and
 *   abort()s after one did. */
#define _GNU_SOURCE 1
#include <dlfcn.h>

#include "coexist_librseq_abi.h"

#define AREA_ALLOC_SIZE 1024

ptrdiff_t rseq_offset;
unsigned int rseq_size = -1U;
unsigned int rseq_flags;

void *rseq_mempool_create(const char *name, const void *attr);

static __thread struct coexist_rseq __rseq_abi
    __attribute__((tls_model("initial-exec"), aligned(AREA_ALLOC_SIZE))) = {
        .cpu_id = COEXIST_CPU_ID_UNINITIALIZED };

static struct coexist_glibc_rseq find_glibc(void)
{
    struct coexist_glibc_rseq glibc = {
        dlsym(RTLD_NEXT, "__rseq_offset"), dlsym(RTLD_NEXT, "__rseq_size"), dlsym(RTLD_NEXT, "__rseq_flags") };
    return glibc;
}

static void init(void)
{
    coexist_librseq_init(find_glibc, &__rseq_abi);
}

__attribute__((constructor)) static void librseq_constructor(void)
{
    init();
}

__attribute__((destructor)) static void librseq_destructor(void)
{
    if (!coexist_ownership)
        return;
    rseq_offset = 0;
    rseq_size = -1U;
    coexist_ownership = 0;
}

static unsigned int registration_length(void)
{
    unsigned int size = __atomic_load_n(&rseq_size, __ATOMIC_RELAXED);
    return size < COEXIST_ORIGINAL_AREA_SIZE ? COEXIST_ORIGINAL_AREA_SIZE : size;
}

int rseq_register_current_thread(void)
{
    init();
    return coexist_ownership ? coexist_librseq_register(&__rseq_abi, registration_length(), "librseq") : 0;
}

int rseq_unregister_current_thread(void)
{
    return coexist_ownership ? coexist_librseq_unregister(&__rseq_abi, registration_length()) : 0;
}

void *rseq_mempool_create(const char *name, const void *attr)
{
    (void)name;
    (void)attr;
    errno = ENOSYS;
    return NULL;
}
