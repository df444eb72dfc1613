/* tcmalloc-like peer: what google/tcmalloc's per-CPU caches do with rseq
 * (shared/reference/rseq-abi.md section 5, rseq_gen.adopters "tcmalloc"),
 * written from that description:
 *
 * - its area is the global 32-byte TLS __rseq_abi of coexist_tcmalloc_tls.S
 *   (interposable: an earlier definition in symbol lookup order wins);
 * - a thread is registered on its first per-CPU use (tcmalloc: the first
 *   malloc) when __rseq_abi.cpu_id < 0, with signals blocked; it never reads
 *   glibc's __rseq_* symbols and never unregisters;
 * - the process's first registration decides: success = fast mode, in which
 *   it checks that tcmalloc_slabs overlays __rseq_abi.cpu_id_start (so
 *   __rseq_abi must be its own) and every later thread must register
 *   (abort otherwise); failure = slow mode for the whole process, and each
 *   thread's __rseq_abi.cpu_id is set to -2;
 * - in fast mode it caches a pointer in tcmalloc_slabs, that is, it writes
 *   cpu_id_start. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "coexist_peer.h"

extern __thread volatile struct coexist_rseq __rseq_abi __attribute__((tls_model("initial-exec")));
extern __thread volatile uint64_t tcmalloc_slabs __attribute__((tls_model("initial-exec")));

#define CACHED_SLABS_BIT (1ull << 63)

enum { INIT_UNKNOWN, INIT_FAST, INIT_SLOW };
static int init_status = INIT_UNKNOWN;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char slabs_storage[64];

static __thread int registered_here;     /* this thread's registration is tcmalloc's syscall */
static __thread enum coexist_state state = COEXIST_UNTOUCHED;

#define COEXIST_NAME(name, text) text,
static const char *const state_names[] = { COEXIST_STATES(COEXIST_NAME) };
#undef COEXIST_NAME

static __attribute__((noreturn)) void check_failed(const char *why)
{
    coexist_emit("{\"event\": \"peer_abort\", \"peer\": \"tcmalloc\", \"why\": \"%s\"}", why);
    abort();
}

/* Register the calling thread unless its __rseq_abi is registered already. */
static int init_thread(void)
{
    sigset_t all, old;
    int ok;
    if (__rseq_abi.cpu_id >= 0)
        return 1;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ok = __rseq_abi.cpu_id >= 0;
    if (!ok && syscall(COEXIST_NR_RSEQ, &__rseq_abi, (unsigned int)sizeof(__rseq_abi), 0,
                       COEXIST_RSEQ_SIG) == 0)
        ok = registered_here = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

static void init_per_cpu(void)
{
    /* volatile: the compiler may not fold the comparison of two distinct
     * objects' addresses (they overlap by design). */
    volatile uintptr_t abi, slabs;
    if (!init_thread()) {
        init_status = INIT_SLOW;
        return;
    }
    init_status = INIT_FAST;
    abi = (uintptr_t)&__rseq_abi;
    slabs = (uintptr_t)&tcmalloc_slabs;
    if (abi % 32 != 0)
        check_failed("__rseq_abi is not 32-byte aligned");
    if (abi / 64 != slabs / 64 || slabs != abi - 4)
        check_failed("tcmalloc_slabs does not overlay __rseq_abi.cpu_id_start: __rseq_abi is not tcmalloc's");
}

void coexist_peer_touch(void)
{
    if (state != COEXIST_UNTOUCHED)
        return;
    pthread_once(&init_once, init_per_cpu);
    if (init_status == INIT_FAST && __rseq_abi.cpu_id == COEXIST_CPU_ID_UNINITIALIZED && !init_thread())
        check_failed("fast mode, and this thread's registration was refused");
    if (init_status == INIT_SLOW) {
        __rseq_abi.cpu_id = COEXIST_CPU_ID_UNSUPPORTED;
        state = COEXIST_SLOW_MODE;
        return;
    }
    state = registered_here ? COEXIST_OK : COEXIST_SHARED;
    tcmalloc_slabs = (uint64_t)(uintptr_t)slabs_storage | CACHED_SLABS_BIT;
}

const char *coexist_peer_state(void)
{
    return state_names[state];
}

int coexist_peer_check(char *why, size_t len)
{
    switch (state) {
    case COEXIST_SLOW_MODE:
        return 0;  /* works, without per-CPU caches */
    case COEXIST_OK:
    case COEXIST_SHARED:
        break;
    default:
        snprintf(why, len, "state %s", state_names[state]);
        return 1;
    }
    if (__rseq_abi.cpu_id < 0) {
        snprintf(why, len, "fast mode, but __rseq_abi.cpu_id is %d", __rseq_abi.cpu_id);
        return 1;
    }
    if (!coexist_area_follows_cpu(&__rseq_abi)) {
        snprintf(why, len, "__rseq_abi does not follow the pinned CPU");
        return 1;
    }
    return 0;
}
