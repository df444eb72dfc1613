/* What librseq and the kernel selftests' copy of it have in common (and the
 * coexistence fixtures coexist_librseq.c and coexist_selftests.c share): the
 * exported names, the ownership decision taken once, and a registration
 * that returns -1 while no thread succeeded and abort()s after one did.
 * They differ in how they find glibc's symbols and in their area. */
#ifndef COEXIST_LIBRSEQ_ABI_H
#define COEXIST_LIBRSEQ_ABI_H

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/syscall.h>

#include "coexist_peer.h"

/* The librseq ABI: the area is at thread pointer + rseq_offset; rseq_size is
 * -1U until initialised, 0 until a registration succeeded (when the library
 * owns registration), then the feature size. */
extern ptrdiff_t rseq_offset;
extern unsigned int rseq_size;
extern unsigned int rseq_flags;
int rseq_register_current_thread(void);
int rseq_unregister_current_thread(void);

/* glibc's three symbols, or NULL: how each library looks them up. */
struct coexist_glibc_rseq {
    const ptrdiff_t *offset;
    const unsigned int *size;
    const unsigned int *flags;
};

static int coexist_ownership;
static int coexist_init_done;
static pthread_mutex_t coexist_init_lock = PTHREAD_MUTEX_INITIALIZER;

static __attribute__((unused)) unsigned int coexist_kernel_feature_size(void)
{
    unsigned long size = getauxval(COEXIST_AT_RSEQ_FEATURE_SIZE);
    return size ? (unsigned int)size : COEXIST_ORIGINAL_FEATURE_SIZE;
}

/* Decide once: glibc's area when glibc registered (all three symbols found
 * and __rseq_size != 0), else the library's own. 20 and 32 both mean a
 * 32-byte registration (glibc's __rseq_size history). */
static void coexist_librseq_init(struct coexist_glibc_rseq (*find_glibc)(void),
                                 volatile struct coexist_rseq *own_area)
{
    struct coexist_glibc_rseq glibc;
    if (__atomic_load_n(&coexist_init_done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&coexist_init_lock);
    if (coexist_init_done)
        goto unlock;
    glibc = find_glibc();
    if (glibc.offset && glibc.size && glibc.flags && *glibc.size != 0) {
        unsigned int size = *glibc.size;
        rseq_offset = *glibc.offset;
        rseq_flags = *glibc.flags;
        if (size == COEXIST_ORIGINAL_FEATURE_SIZE || size == COEXIST_ORIGINAL_AREA_SIZE) {
            unsigned int feature = coexist_kernel_feature_size();
            size = feature < COEXIST_ORIGINAL_AREA_SIZE ? feature : COEXIST_ORIGINAL_AREA_SIZE;
        }
        rseq_size = size;
    } else {
        coexist_ownership = 1;
        rseq_offset = (const char *)own_area - coexist_thread_pointer();
        rseq_flags = 0;
        rseq_size = 0;
    }
    __atomic_store_n(&coexist_init_done, 1, __ATOMIC_RELEASE);
unlock:
    pthread_mutex_unlock(&coexist_init_lock);
}

/* Register the calling thread's own area with `len`: 0, or -1 while no
 * thread succeeded; abort() when a thread succeeded before. */
static int coexist_librseq_register(volatile struct coexist_rseq *area, unsigned int len, const char *peer)
{
    if (syscall(COEXIST_NR_RSEQ, area, len, 0, COEXIST_RSEQ_SIG) != 0) {
        if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) > 0) {
            coexist_emit("{\"event\": \"peer_abort\", \"peer\": \"%s\", "
                         "\"why\": \"registration refused (errno %d) after another thread succeeded\"}",
                         peer, errno);
            abort();
        }
        return -1;
    }
    if (area->cpu_id < 0)
        abort();
    if (__atomic_load_n(&rseq_size, __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&rseq_size, coexist_kernel_feature_size(), __ATOMIC_RELAXED);
    return 0;
}

static __attribute__((unused)) int coexist_librseq_unregister(volatile struct coexist_rseq *area, unsigned int len)
{
    return syscall(COEXIST_NR_RSEQ, area, len, COEXIST_FLAG_UNREGISTER, COEXIST_RSEQ_SIG) == 0 ? 0 : -1;
}

#endif
