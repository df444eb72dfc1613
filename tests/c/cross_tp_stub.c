/* Checks the machine-code stubs `rseq-gen probe` uses to read the thread
 * pointer from Python (rseq_gen.probe.TP_STUBS): the stub bytes come in
 * tp_stub.h (written by tests/test_portability.py), are copied to an
 * executable page and called like ctypes would call them; the result must
 * equal the generated header's rseqgen__arch_thread_pointer(), on the main
 * thread and on another thread. Prints "OK" and exits 0 when they agree. */
#define _GNU_SOURCE 1
#include "rseqgen_rseq.h"
#include "tp_stub.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef void *(*tp_fn)(void);

static tp_fn stub_fn;

static int check(const char *where)
{
    void *want = rseqgen__arch_thread_pointer();
    void *got = stub_fn();
    printf("%s: stub %p, header %p\n", where, got, want);
    return got == want ? 0 : 1;
}

static void *thread_main(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)check("thread");
}

int main(void)
{
    pthread_t t;
    void *res;
    int bad;
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 2;
    memcpy(page, tp_stub, sizeof tp_stub);
    if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
        return 2;
    __builtin___clear_cache((char *)page, (char *)page + sizeof tp_stub);
    /* A data pointer to a function pointer: what ctypes does. */
    memcpy(&stub_fn, &page, sizeof page);
    bad = check("main");
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, &res) != 0)
        return 2;
    bad |= (int)(intptr_t)res;
    printf(bad ? "FAILED\n" : "OK\n");
    return bad;
}
