/* What the coexistence fixtures (tests/c/coexist_*.c) share: the kernel's
 * struct rseq (first 32 bytes), the thread pointer, the rseq system call
 * constants, and the interface the driver (coexist_main.c) uses to exercise
 * one peer.
 *
 * The peers are written by this project from the documented behaviour of
 * other adopters (shared/reference/rseq-abi.md sections 3-5 and the rows of
 * rseq_gen/adopters.py); they are not copies of those projects' code.
 * x86_64 only: the matrix runs natively on this machine. */
#ifndef COEXIST_PEER_H
#define COEXIST_PEER_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before including coexist_peer.h (sched_getaffinity)"
#endif
#if !defined(__x86_64__)
#error "the coexistence fixtures run natively on x86_64"
#endif

#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define COEXIST_RSEQ_SIG 0x53053053u
#define COEXIST_NR_RSEQ 334
#define COEXIST_FLAG_UNREGISTER 1
#define COEXIST_CPU_ID_UNINITIALIZED (-1)
#define COEXIST_CPU_ID_UNSUPPORTED (-2)
#define COEXIST_AT_RSEQ_FEATURE_SIZE 27
#define COEXIST_ORIGINAL_FEATURE_SIZE 20u
#define COEXIST_ORIGINAL_AREA_SIZE 32u

/* Aligned to 32 as the kernel's uapi struct is: a 32-byte registration must be. */
struct coexist_rseq {
    uint32_t cpu_id_start;
    int32_t cpu_id;
    uint64_t rseq_cs;
    uint32_t flags;
    uint32_t node_id;
    uint32_t mm_cid;
    uint32_t pad;
} __attribute__((aligned(32)));

static inline char *coexist_thread_pointer(void)
{
    char *tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

/* Peer states, as rseq_gen.coexistence names them. */
#define COEXIST_STATES(X) \
    X(UNTOUCHED, "untouched") X(OK, "ok") X(USES_GLIBC, "uses-glibc") X(SHARED, "shared") \
    X(SLOW_MODE, "slow-mode") X(REFUSED, "refused") X(DENIED, "denied")
#define COEXIST_ENUM(name, text) COEXIST_##name,
enum coexist_state { COEXIST_STATES(COEXIST_ENUM) COEXIST_NSTATES };
#undef COEXIST_ENUM

/* Exported by every C peer: the application's use of the peer, with the
 * peer's own success checks. The driver calls them through weak references
 * or dlsym. */
/* The peer's first use on the calling thread (once per thread). */
void coexist_peer_touch(void);
/* What the first use found, as a state name. */
const char *coexist_peer_state(void);
/* The peer's own checks on the calling thread, after every module acted:
 * 0 passed, otherwise a description of the failure is written to `why`. */
int coexist_peer_check(char *why, size_t len);

/* One line straight to stdout with write(2): usable before stdio or the C
 * library's constructors ran, and nothing is lost to abort(). Static: each
 * fixture and the driver carry their own copy, so that static links of
 * several of them do not collide. */
static __attribute__((format(printf, 1, 2), unused)) void coexist_emit(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n, off = 0;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    while (off < n) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w <= 0)
            return;
        off += (int)w;
    }
}

/* The area reports the CPU the thread is pinned to, on every allowed CPU
 * (the affinity is restored afterwards): the kernel keeps it up to date. */
static __attribute__((unused)) int coexist_area_follows_cpu(const volatile struct coexist_rseq *area)
{
    cpu_set_t allowed, one;
    int cpu, ok = 1;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return 0;
    for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof(one), &one) != 0)
            continue;
        sched_yield();
        if (area->cpu_id != cpu || sched_getcpu() != cpu)
            ok = 0;
    }
    sched_setaffinity(0, sizeof(allowed), &allowed);
    return ok;
}

#endif
