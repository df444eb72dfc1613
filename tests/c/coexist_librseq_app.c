/* The application side of a librseq-API peer (coexist_librseq.c or
 * coexist_selftests.c, which export the same names): what librseq's own
 * basic_test checks, as the driver's coexist_peer_* interface.
 *
 * Its success checks: rseq_register_current_thread() returns 0 on every
 * thread it is asked for; then the area at thread pointer + rseq_offset
 * reports cpu_id >= 0 and follows the CPU the thread is pinned to, rseq_size
 * is a feature size (>= 20) and rseq_flags is 0. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>

#include "coexist_peer.h"

/* The librseq ABI (coexist_librseq_abi.h carries the libraries' side). */
extern ptrdiff_t rseq_offset;
extern unsigned int rseq_size;
extern unsigned int rseq_flags;
int rseq_register_current_thread(void);

/* To tell "librseq uses glibc's area" from "librseq registered its own". */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

#define COEXIST_NAME(name, text) text,
static const char *const state_names[] = { COEXIST_STATES(COEXIST_NAME) };
#undef COEXIST_NAME

static __thread enum coexist_state state = COEXIST_UNTOUCHED;
static __thread int touch_errno;
static __thread int cpu_after_register;

static const volatile struct coexist_rseq *peer_area(void)
{
    return (const volatile struct coexist_rseq *)(coexist_thread_pointer() + rseq_offset);
}

void coexist_peer_touch(void)
{
    if (state != COEXIST_UNTOUCHED)
        return;
    errno = 0;
    if (rseq_register_current_thread() == 0) {
        int glibc_area = &__rseq_size != NULL && __rseq_size != 0 && rseq_offset == __rseq_offset;
        state = glibc_area ? COEXIST_USES_GLIBC : COEXIST_OK;
        cpu_after_register = peer_area()->cpu_id;
    } else {
        touch_errno = errno;
        state = (touch_errno == ENOSYS || touch_errno == EPERM) ? COEXIST_DENIED : COEXIST_REFUSED;
    }
}

const char *coexist_peer_state(void)
{
    return state_names[state];
}

int coexist_peer_check(char *why, size_t len)
{
    switch (state) {
    case COEXIST_OK:
    case COEXIST_USES_GLIBC:
        break;
    case COEXIST_UNTOUCHED:
        snprintf(why, len, "never asked to register");
        return 1;
    default:
        snprintf(why, len, "rseq_register_current_thread() failed (errno %d)", touch_errno);
        return 1;
    }
    if (cpu_after_register < 0) {
        snprintf(why, len, "cpu_id %d right after a successful registration", cpu_after_register);
        return 1;
    }
    if (rseq_size < COEXIST_ORIGINAL_FEATURE_SIZE || rseq_size == -1U || rseq_flags != 0 || rseq_offset == 0) {
        snprintf(why, len, "rseq_size %u, rseq_flags %u, rseq_offset %ld", rseq_size, rseq_flags,
                 (long)rseq_offset);
        return 1;
    }
    if (!coexist_area_follows_cpu(peer_area())) {
        snprintf(why, len, "the area at thread pointer + rseq_offset does not follow the pinned CPU");
        return 1;
    }
    return 0;
}
