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
 * - a refused registration returns -1 while no thread succeeded, abort()s
 *   after one did. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/syscall.h>

#include "coexist_peer.h"

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
extern const unsigned int __rseq_flags __attribute__((weak));

ptrdiff_t rseq_offset;
unsigned int rseq_size = -1U;
unsigned int rseq_flags;

int rseq_register_current_thread(void);
int rseq_unregister_current_thread(void);

static int ownership;
static int init_done;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int alloc_size;  /* the length registered, reused to unregister */

static __thread union {
    struct coexist_rseq abi;
    char dummy[1024];
} __rseq __attribute__((tls_model("initial-exec"))) = { .abi = { .cpu_id = COEXIST_CPU_ID_UNINITIALIZED } };

static unsigned int kernel_feature_size(void)
{
    unsigned long size = getauxval(COEXIST_AT_RSEQ_FEATURE_SIZE);
    return size ? (unsigned int)size : COEXIST_ORIGINAL_FEATURE_SIZE;
}

static void init(void)
{
    const ptrdiff_t *libc_offset = &__rseq_offset;
    const unsigned int *libc_size = &__rseq_size, *libc_flags = &__rseq_flags;
    if (__atomic_load_n(&init_done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&init_lock);
    if (init_done)
        goto unlock;
    if (!libc_size || !*libc_size) {
        libc_offset = dlsym(RTLD_NEXT, "__rseq_offset");
        libc_size = dlsym(RTLD_NEXT, "__rseq_size");
        libc_flags = dlsym(RTLD_NEXT, "__rseq_flags");
    }
    if (libc_offset && libc_size && libc_flags && *libc_size != 0) {
        unsigned int size = *libc_size;
        rseq_offset = *libc_offset;
        rseq_flags = *libc_flags;
        if (size == COEXIST_ORIGINAL_FEATURE_SIZE || size == COEXIST_ORIGINAL_AREA_SIZE) {
            unsigned int feature = kernel_feature_size();
            size = feature < COEXIST_ORIGINAL_AREA_SIZE ? feature : COEXIST_ORIGINAL_AREA_SIZE;
        }
        rseq_size = size;
    } else {
        ownership = 1;
        rseq_offset = (char *)&__rseq.abi - coexist_thread_pointer();
        rseq_flags = 0;
        rseq_size = 0;
        alloc_size = COEXIST_ORIGINAL_AREA_SIZE;
    }
    __atomic_store_n(&init_done, 1, __ATOMIC_RELEASE);
unlock:
    pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void selftests_constructor(void)
{
    init();
}

int rseq_register_current_thread(void)
{
    init();
    if (!ownership)
        return 0;
    if (syscall(COEXIST_NR_RSEQ, &__rseq.abi, alloc_size, 0, COEXIST_RSEQ_SIG) != 0) {
        if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) > 0) {
            coexist_emit("{\"event\": \"peer_abort\", \"peer\": \"selftests\", "
                         "\"why\": \"registration refused (errno %d) after another thread succeeded\"}",
                         errno);
            abort();
        }
        return -1;
    }
    if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&rseq_size, kernel_feature_size(), __ATOMIC_RELAXED);
    return 0;
}

int rseq_unregister_current_thread(void)
{
    if (!ownership)
        return 0;
    return syscall(COEXIST_NR_RSEQ, &__rseq.abi, alloc_size, COEXIST_FLAG_UNREGISTER,
                   COEXIST_RSEQ_SIG) == 0 ? 0 : -1;
}
