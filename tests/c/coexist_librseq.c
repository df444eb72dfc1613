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
 * - registers a thread only when asked; a refused registration returns -1
 *   while no thread succeeded, and abort()s after one did. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/syscall.h>

#include "coexist_peer.h"

#define AREA_ALLOC_SIZE 1024

ptrdiff_t rseq_offset;
unsigned int rseq_size = -1U;
unsigned int rseq_flags;

int rseq_register_current_thread(void);
int rseq_unregister_current_thread(void);
void *rseq_mempool_create(const char *name, const void *attr);

static int ownership;
static int init_done;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread struct coexist_rseq __rseq_abi
    __attribute__((tls_model("initial-exec"), aligned(AREA_ALLOC_SIZE))) = {
        .cpu_id = COEXIST_CPU_ID_UNINITIALIZED };

static unsigned int kernel_feature_size(void)
{
    unsigned long size = getauxval(COEXIST_AT_RSEQ_FEATURE_SIZE);
    return size ? (unsigned int)size : COEXIST_ORIGINAL_FEATURE_SIZE;
}

static void init(void)
{
    const ptrdiff_t *libc_offset;
    const unsigned int *libc_size, *libc_flags;
    if (__atomic_load_n(&init_done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&init_lock);
    if (init_done)
        goto unlock;
    libc_offset = dlsym(RTLD_NEXT, "__rseq_offset");
    libc_size = dlsym(RTLD_NEXT, "__rseq_size");
    libc_flags = dlsym(RTLD_NEXT, "__rseq_flags");
    if (libc_offset && libc_size && libc_flags && *libc_size != 0) {
        /* glibc owns every thread's registration: publish its area. 20 and
         * 32 both mean a 32-byte registration (glibc's __rseq_size history). */
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
        rseq_offset = (char *)&__rseq_abi - coexist_thread_pointer();
        rseq_flags = 0;
        rseq_size = 0;
    }
    __atomic_store_n(&init_done, 1, __ATOMIC_RELEASE);
unlock:
    pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void librseq_constructor(void)
{
    init();
}

__attribute__((destructor)) static void librseq_destructor(void)
{
    if (!ownership)
        return;
    rseq_offset = 0;
    rseq_size = -1U;
    ownership = 0;
}

static unsigned int registration_length(void)
{
    unsigned int size = __atomic_load_n(&rseq_size, __ATOMIC_RELAXED);
    return size < COEXIST_ORIGINAL_AREA_SIZE ? COEXIST_ORIGINAL_AREA_SIZE : size;
}

int rseq_register_current_thread(void)
{
    init();
    if (!ownership)
        return 0;
    if (syscall(COEXIST_NR_RSEQ, &__rseq_abi, registration_length(), 0, COEXIST_RSEQ_SIG) != 0) {
        if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) > 0) {
            coexist_emit("{\"event\": \"peer_abort\", \"peer\": \"librseq\", "
                         "\"why\": \"registration refused (errno %d) after another thread succeeded\"}",
                         errno);
            abort();
        }
        return -1;
    }
    if (__rseq_abi.cpu_id < 0)
        abort();
    if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&rseq_size, kernel_feature_size(), __ATOMIC_RELAXED);
    return 0;
}

int rseq_unregister_current_thread(void)
{
    if (!ownership)
        return 0;
    return syscall(COEXIST_NR_RSEQ, &__rseq_abi, registration_length(), COEXIST_FLAG_UNREGISTER,
                   COEXIST_RSEQ_SIG) == 0 ? 0 : -1;
}

void *rseq_mempool_create(const char *name, const void *attr)
{
    (void)name;
    (void)attr;
    errno = ENOSYS;
    return NULL;
}
