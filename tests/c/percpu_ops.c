/* The per-CPU operations and the per-CPU pool of generated code (prefix
 * "rseqgen"), exercised the way librseq's param_test and
 * basic_percpu_ops_test exercise theirs (written for rseq-gen). Built by
 * tests/test_percpu_ops.py (native x86_64 and i386, gcc and clang, C11 and
 * C++17, sanitizers) and tests/test_portability.py (every architecture,
 * under qemu-user), and run as:
 *
 *   percpu_ops selfcheck        every arch sequence of every operation, in
 *                               both indexing modes, against a fake area in
 *                               this thread's TLS (descriptor, signature,
 *                               results, the index field compared); then the
 *                               semantics of every public operation
 *   percpu_ops stress ITERS     16 threads over a per-CPU spinlock, linked
 *                               list (push/pop), pointer buffer, memcpy
 *                               buffer, counters and deref-add with slab
 *                               swaps, with forced migrations and a signal
 *                               storm, in both indexing modes; invariants
 *                               checked at the end
 *   percpu_ops pool             the per-CPU pool: zeroing, strides,
 *                               residency (mincore), exhaustion, threads
 *
 * Built with -DINJECT_DELAY, every sequence spins in a countdown just
 * before its commit store, so preemption, migration and signals land inside
 * the window; each kernel abort is counted (RSEQGEN_RSEQ_ON_ABORT).
 * Output: "key=value" lines, then "OK" or "FAIL: ..." lines; exit status 0
 * only when every check held. Written in the common subset of C11 and C++17.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static unsigned long aborts_seen;
#define RSEQGEN_RSEQ_ON_ABORT() __atomic_fetch_add(&aborts_seen, 1, __ATOMIC_RELAXED)
#ifdef INJECT_DELAY
/* RSEQGEN_RSEQ_INJECT_ASM for every architecture: the countdown rseq-gen
 * selftest's witness uses (rseq_gen.selftest.DELAY_LOOPS), written next to
 * the generated header by the test that builds with -DINJECT_DELAY. */
#include "rseqgen_inject_delay.h"
#endif
#include "rseqgen_rseq.h"

#include "check.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        printf("FAIL: out of memory\n");
        exit(2);
    }
    return p;
}

/* ---- selfcheck: the sequences against a fake area ---------------------- */

struct cs_descriptor {
    uint32_t version;
    uint32_t flags;
    uint64_t start_ip;
    uint64_t post_commit_offset;
    uint64_t abort_ip;
};

static __thread struct rseqgen_rseq_area fake_area;

static void check_descriptor(const char *what)
{
    uint64_t cs = *(volatile uint64_t *)&fake_area.rseq_cs; /* no 64-bit atomics on ppc32 */
    const struct cs_descriptor *d = (const struct cs_descriptor *)(uintptr_t)cs;
    uint32_t sig;
    if (RSEQGEN_RSEQ_DLOPEN_SAFE) {
        /* The sequence cleared rseq_cs when it ended (the descriptors are
         * checked in the ELF files instead). */
        CHECK(cs == 0, "%s: rseq_cs left set by dlopen-safe code", what);
        return;
    }
    CHECK(cs != 0, "%s: rseq_cs not set", what);
    if (cs == 0)
        return;
    CHECK(cs % 32 == 0, "%s: descriptor %#llx not 32-aligned", what, (unsigned long long)cs);
    CHECK((uintptr_t)cs == cs, "%s: rseq_cs high word set (%#llx)", what, (unsigned long long)cs);
    CHECK(d->version == 0 && d->flags == 0, "%s: version/flags %u/%u", what, d->version, d->flags);
    CHECK(d->start_ip != 0 && d->post_commit_offset > 0 && d->post_commit_offset < 512,
          "%s: start_ip %#llx post_commit_offset %llu", what,
          (unsigned long long)d->start_ip, (unsigned long long)d->post_commit_offset);
    CHECK(d->abort_ip < d->start_ip || d->abort_ip >= d->start_ip + d->post_commit_offset,
          "%s: abort_ip inside the critical section", what);
    memcpy(&sig, (const void *)(uintptr_t)(d->abort_ip - 4), sizeof sig);
    CHECK(sig == RSEQGEN__RSEQ_SIG, "%s: signature %#x before abort_ip, want %#x", what, sig,
          (unsigned)RSEQGEN__RSEQ_SIG);
    *(volatile uint64_t *)&fake_area.rseq_cs = 0;
}

struct item3 {
    intptr_t id, check1, check2;
};

/* Runs every operation of one indexing mode (arch infix `M`) against the
 * fake area: on the right index (`good`, checked result and descriptor),
 * with a failing compare, and on the wrong index (`bad`: the value of the
 * other mode's field, so a sequence that compared the wrong field passes). */
#define SELF_CHECK_MODE(M, name, good, bad)                                                      \
    static void self_check_##name(ptrdiff_t off)                                                 \
    {                                                                                            \
        intptr_t x = 0, y = 0, popped = 0;                                                       \
        intptr_t nodes[2];                                                                       \
        intptr_t slab[4] = {0, 0, 0, 0};                                                         \
        intptr_t slabp = (intptr_t)slab;                                                         \
        char src[13], dst[13];                                                                   \
        int r;                                                                                   \
        r = rseqgen__arch_cs_##M##add(off, &x, 3, good);                                         \
        CHECK(r == 0 && x == 3, #name " add: r=%d x=%ld", r, (long)x);                           \
        check_descriptor(#name " add");                                                          \
        r = rseqgen__arch_cs_##M##add(off, &x, 3, bad);                                          \
        CHECK(r == -1 && x == 3, #name " add, wrong index: r=%d x=%ld", r, (long)x);             \
        r = rseqgen__arch_cs_##M##cmpxchg(off, &x, 3, 10, good);                                 \
        CHECK(r == 0 && x == 10, #name " cmpxchg: r=%d x=%ld", r, (long)x);                      \
        check_descriptor(#name " cmpxchg");                                                      \
        r = rseqgen__arch_cs_##M##cmpxchg(off, &x, 3, 11, good);                                 \
        CHECK(r == 1 && x == 10, #name " cmpxchg mismatch: r=%d x=%ld", r, (long)x);             \
        r = rseqgen__arch_cs_##M##cmpxchg(off, &x, 10, 11, bad);                                 \
        CHECK(r == -1 && x == 10, #name " cmpxchg, wrong index: r=%d", r);                       \
        /* list: head -> nodes[0] -> nodes[1] -> 0 (next at offset 0) */                         \
        nodes[0] = (intptr_t)&nodes[1];                                                          \
        nodes[1] = 0;                                                                            \
        x = (intptr_t)&nodes[0];                                                                 \
        r = rseqgen__arch_cs_##M##pop(off, &x, 0, 0, &popped, good);                             \
        CHECK(r == 0 && popped == (intptr_t)&nodes[0] && x == (intptr_t)&nodes[1],               \
              #name " pop: r=%d", r);                                                            \
        check_descriptor(#name " pop");                                                          \
        r = rseqgen__arch_cs_##M##pop(off, &x, 0, 0, &popped, bad);                              \
        CHECK(r == -1 && x == (intptr_t)&nodes[1], #name " pop, wrong index: r=%d", r);          \
        r = rseqgen__arch_cs_##M##pop(off, &x, 0, 0, &popped, good);                             \
        CHECK(r == 0 && popped == (intptr_t)&nodes[1] && x == 0, #name " pop 2: r=%d", r);       \
        popped = 7;                                                                              \
        r = rseqgen__arch_cs_##M##pop(off, &x, 0, 0, &popped, good);                             \
        CHECK(r == 1 && x == 0 && popped == 7, #name " pop empty: r=%d", r);                     \
        /* a node whose next pointer sits one word in: x + w is &nodes[1] */                     \
        x = (intptr_t)&nodes[1] - (intptr_t)sizeof(intptr_t);                                    \
        nodes[1] = 0x55;                                                                         \
        r = rseqgen__arch_cs_##M##pop(off, &x, 0, (long)sizeof(intptr_t), &popped, good);        \
        CHECK(r == 0 && x == 0x55, #name " pop with next_offset: r=%d x=%#lx", r, (long)x);      \
        r = rseqgen__arch_cs_##M##deref_add(off, &slabp, 2 * sizeof(intptr_t), 5, good);         \
        CHECK(r == 0 && slab[2] == 5 && slab[0] == 0, #name " deref_add: r=%d", r);              \
        check_descriptor(#name " deref_add");                                                    \
        r = rseqgen__arch_cs_##M##deref_add(off, &slabp, 2 * sizeof(intptr_t), 5, bad);          \
        CHECK(r == -1 && slab[2] == 5, #name " deref_add, wrong index: r=%d", r);                \
        x = 4;                                                                                   \
        y = 0;                                                                                   \
        r = rseqgen__arch_cs_##M##cmpxchg_store(off, &x, 4, &y, 99, 5, good);                    \
        CHECK(r == 0 && x == 5 && y == 99, #name " cmpxchg_store: r=%d", r);                     \
        check_descriptor(#name " cmpxchg_store");                                                \
        r = rseqgen__arch_cs_##M##cmpxchg_store(off, &x, 4, &y, 98, 6, good);                    \
        CHECK(r == 1 && x == 5 && y == 99, #name " cmpxchg_store mismatch: r=%d", r);            \
        r = rseqgen__arch_cs_##M##cmpxchg_store_release(off, &x, 5, &y, 97, 6, good);            \
        CHECK(r == 0 && x == 6 && y == 97, #name " cmpxchg_store_release: r=%d", r);             \
        check_descriptor(#name " cmpxchg_store_release");                                        \
        r = rseqgen__arch_cs_##M##cmpxchg_store_release(off, &x, 6, &y, 96, 7, bad);             \
        CHECK(r == -1 && x == 6 && y == 97, #name " cmpxchg_store_release, wrong index");        \
        r = rseqgen__arch_cs_##M##cmp2xchg(off, &x, 6, &y, 97, 8, good);                         \
        CHECK(r == 0 && x == 8 && y == 97, #name " cmp2xchg: r=%d", r);                          \
        check_descriptor(#name " cmp2xchg");                                                     \
        r = rseqgen__arch_cs_##M##cmp2xchg(off, &x, 8, &y, 1, 9, good);                          \
        CHECK(r == 1 && x == 8, #name " cmp2xchg, second compare fails: r=%d", r);               \
        r = rseqgen__arch_cs_##M##cmp2xchg(off, &x, 7, &y, 97, 9, good);                         \
        CHECK(r == 1 && x == 8, #name " cmp2xchg, first compare fails: r=%d", r);                \
        memcpy(src, "hello, world", 13);                                                         \
        memset(dst, '.', sizeof dst);                                                            \
        r = rseqgen__arch_cs_##M##cmpxchg_memcpy(off, &x, 8, dst, src, 13, 9, good);             \
        CHECK(r == 0 && x == 9 && memcmp(dst, src, 13) == 0, #name " cmpxchg_memcpy: r=%d", r);  \
        check_descriptor(#name " cmpxchg_memcpy");                                               \
        memset(dst, '.', sizeof dst);                                                            \
        r = rseqgen__arch_cs_##M##cmpxchg_memcpy(off, &x, 8, dst, src, 13, 10, good);            \
        CHECK(r == 1 && x == 9 && dst[0] == '.', #name " cmpxchg_memcpy mismatch: r=%d", r);     \
        r = rseqgen__arch_cs_##M##cmpxchg_memcpy_release(off, &x, 9, dst, src, 0, 10, good);     \
        CHECK(r == 0 && x == 10 && dst[0] == '.', #name " cmpxchg_memcpy_release len 0: r=%d", r); \
        check_descriptor(#name " cmpxchg_memcpy_release");                                       \
        r = rseqgen__arch_cs_##M##cmpxchg_memcpy_release(off, &x, 10, dst, src, 5, 11, good);    \
        CHECK(r == 0 && x == 11 && memcmp(dst, "hello.", 6) == 0,                                \
              #name " cmpxchg_memcpy_release: r=%d", r);                                         \
        r = rseqgen__arch_cs_##M##cmpxchg_memcpy_release(off, &x, 11, dst, src, 13, 12, bad);    \
        CHECK(r == -1 && x == 11 && dst[6] == '.', #name " cmpxchg_memcpy_release, wrong index"); \
    }

SELF_CHECK_MODE(, cpu, 5, 7)
SELF_CHECK_MODE(mmcid_, mmcid, 7, 5)

/* The semantics of every public operation on the real path of this
 * process (rseq when the thread has an area, the fallback otherwise). */
#define RETRY(expr) \
    do {            \
        r = (expr); \
    } while (r < 0)

static int mode_mmcid;

static int current_index(void)
{
    return mode_mmcid ? rseqgen_mmcid_index() : rseqgen_current_cpu();
}

#define OP(name, ...) (mode_mmcid ? rseqgen_mmcid_##name(__VA_ARGS__) : rseqgen_percpu_##name(__VA_ARGS__))

static void check_semantics(void)
{
    intptr_t x = 0, y = 0, popped = 0;
    intptr_t nodes[2];
    intptr_t slab[3] = {0, 0, 0};
    intptr_t slabp = (intptr_t)slab;
    char src[9] = "abcdefgh", dst[9];
    int r, idx;
    const char *m = mode_mmcid ? "mmcid" : "percpu";

    RETRY(OP(add, &x, 4, idx = current_index()));
    CHECK(r == 0 && x == 4, "%s_add: r=%d x=%ld", m, r, (long)x);
    RETRY(OP(cmpxchg, &x, 4, 6, idx = current_index()));
    CHECK(r == 0 && x == 6, "%s_cmpxchg: r=%d", m, r);
    RETRY(OP(cmpxchg, &x, 4, 7, idx = current_index()));
    CHECK(r == 1 && x == 6, "%s_cmpxchg mismatch: r=%d", m, r);
    nodes[0] = (intptr_t)&nodes[1];
    nodes[1] = 0;
    x = (intptr_t)&nodes[0];
    RETRY(OP(pop, &x, 0, 0, &popped, idx = current_index()));
    CHECK(r == 0 && popped == (intptr_t)&nodes[0] && x == (intptr_t)&nodes[1], "%s_pop: r=%d", m, r);
    RETRY(OP(pop, &x, 0, 0, &popped, idx = current_index()));
    RETRY(OP(pop, &x, 0, 0, &popped, idx = current_index()));
    CHECK(r == 1 && x == 0, "%s_pop empty: r=%d", m, r);
    RETRY(OP(deref_add, &slabp, sizeof(intptr_t), -3, idx = current_index()));
    CHECK(r == 0 && slab[1] == -3, "%s_deref_add: r=%d", m, r);
    x = 1;
    RETRY(OP(cmpxchg_store, &x, 1, &y, 42, 2, idx = current_index()));
    CHECK(r == 0 && x == 2 && y == 42, "%s_cmpxchg_store: r=%d", m, r);
    RETRY(OP(cmpxchg_store_release, &x, 1, &y, 43, 3, idx = current_index()));
    CHECK(r == 1 && x == 2 && y == 42, "%s_cmpxchg_store_release mismatch: r=%d y=%ld", m, r, (long)y);
    RETRY(OP(cmpxchg_store_release, &x, 2, &y, 43, 3, idx = current_index()));
    CHECK(r == 0 && x == 3 && y == 43, "%s_cmpxchg_store_release: r=%d", m, r);
    RETRY(OP(cmp2xchg, &x, 3, &y, 44, 4, idx = current_index()));
    CHECK(r == 1 && x == 3, "%s_cmp2xchg mismatch: r=%d", m, r);
    RETRY(OP(cmp2xchg, &x, 3, &y, 43, 4, idx = current_index()));
    CHECK(r == 0 && x == 4, "%s_cmp2xchg: r=%d", m, r);
    memset(dst, 0, sizeof dst);
    RETRY(OP(cmpxchg_memcpy, &x, 5, dst, src, 9, 6, idx = current_index()));
    CHECK(r == 1 && x == 4 && dst[0] == 0, "%s_cmpxchg_memcpy mismatch: r=%d", m, r);
    RETRY(OP(cmpxchg_memcpy, &x, 4, dst, src, 9, 5, idx = current_index()));
    CHECK(r == 0 && x == 5 && strcmp(dst, src) == 0, "%s_cmpxchg_memcpy: r=%d", m, r);
    memset(dst, 0, sizeof dst);
    RETRY(OP(cmpxchg_memcpy_release, &x, 5, dst, src, 3, 6, idx = current_index()));
    CHECK(r == 0 && x == 6 && strcmp(dst, "abc") == 0, "%s_cmpxchg_memcpy_release: r=%d", m, r);
    (void)idx;
}

static int run_selfcheck(void)
{
    ptrdiff_t off = (char *)&fake_area - (char *)rseqgen__arch_thread_pointer();
    int mc = rseqgen_max_cpus(), mm = rseqgen_max_mm_cids();
    fake_area.cpu_id = 5;
    fake_area.mm_cid = 7;
    self_check_cpu(off);
    self_check_mmcid(off);
    CHECK(fake_area.cpu_id == 5 && fake_area.mm_cid == 7 && fake_area.cpu_id_start == 0, "area ids changed");
    for (mode_mmcid = 0; mode_mmcid <= 1; mode_mmcid++)
        check_semantics();
    CHECK(mc >= 1 && mm >= 1 && mm <= mc, "max_cpus %d max_mm_cids %d", mc, mm);
    CHECK(rseqgen_current_cpu() < mc, "cpu %d >= max_cpus %d", rseqgen_current_cpu(), mc);
    CHECK(rseqgen_mmcid_index() >= 0 && rseqgen_mmcid_index() < mm, "mmcid_index %d", rseqgen_mmcid_index());
    /* The kernel's mm_cid (or -1) under both names; the index the P_mmcid_*
     * forms use is that mm_cid whenever the kernel maintains it. */
    CHECK(rseqgen_kernel_mm_cid() == rseqgen_current_mm_cid(), "kernel_mm_cid %d current_mm_cid %d",
          rseqgen_kernel_mm_cid(), rseqgen_current_mm_cid());
    CHECK(rseqgen_mm_cid_available() ? rseqgen_kernel_mm_cid() == rseqgen_mmcid_index() : rseqgen_kernel_mm_cid() == -1,
          "kernel_mm_cid %d mmcid_index %d available %d", rseqgen_kernel_mm_cid(), rseqgen_mmcid_index(),
          rseqgen_mm_cid_available());
    printf("owner=%s max_cpus=%d max_mm_cids=%d mm_cid_available=%d mmcid_index=%d\n", rseqgen_owner(), mc, mm,
           rseqgen_mm_cid_available(), rseqgen_mmcid_index());
    return 0;
}

/* ---- stress ------------------------------------------------------------ */

#define THREADS 16
#define LINE 64
#define NODES_PER_SLOT 4
#define ITEMS_PER_SLOT 4
#define SLABS 4096

struct spin_slot {
    intptr_t lock;
    long count;
    char pad[LINE - sizeof(intptr_t) - sizeof(long)];
};
struct node {
    intptr_t next;
    long id;
    int in_use;
};
struct head_slot {
    intptr_t head;
    char pad[LINE - sizeof(intptr_t)];
};
/* Buffers hold up to every item there is, so a push never waits. */
struct ptr_buf {
    intptr_t offset;
    intptr_t *array;
} __attribute__((aligned(LINE)));
struct mem_buf {
    intptr_t offset;
    struct item3 *array;
} __attribute__((aligned(LINE)));
struct slab {
    long count;
    long retired_count;   /* its count when it was swapped out; -1: in use */
    char pad[LINE - 2 * sizeof(long)];
};
struct ptr_slot {
    intptr_t ptr;
    char pad[LINE - sizeof(intptr_t)];
};

static int nslots;
static long iters;
static struct spin_slot *spins;
static struct node *nodes;
static int nnodes;
static struct head_slot *heads;
static struct node *bufitems;
static int nbufitems;
static intptr_t buf_cap;
static struct ptr_buf *pbufs;
static struct mem_buf *mbufs;
static intptr_t *counters;        /* nslots x LINE bytes */
static struct slab *slabs;
static int next_slab;
static struct ptr_slot *slab_ptrs;
static long deref_adds;
static int workers_done;
static unsigned long signals_seen, migrations, swaps;
static pthread_t workers[THREADS];
static cpu_set_t allowed;
static int nallowed;

static void on_signal(int sig)
{
    (void)sig;
    __atomic_fetch_add(&signals_seen, 1, __ATOMIC_RELAXED);
}

static void stress_init(void)
{
    int i, s;
    nnodes = nslots * NODES_PER_SLOT;
    nbufitems = nslots * ITEMS_PER_SLOT;
    buf_cap = nbufitems;
    spins = (struct spin_slot *)xcalloc((size_t)nslots, sizeof *spins);
    nodes = (struct node *)xcalloc((size_t)nnodes, sizeof *nodes);
    heads = (struct head_slot *)xcalloc((size_t)nslots, sizeof *heads);
    bufitems = (struct node *)xcalloc((size_t)nbufitems, sizeof *bufitems);
    pbufs = (struct ptr_buf *)xcalloc((size_t)nslots, sizeof *pbufs);
    mbufs = (struct mem_buf *)xcalloc((size_t)nslots, sizeof *mbufs);
    counters = (intptr_t *)xcalloc((size_t)nslots, LINE);
    slabs = (struct slab *)xcalloc(SLABS, sizeof *slabs);
    slab_ptrs = (struct ptr_slot *)xcalloc((size_t)nslots, sizeof *slab_ptrs);
    for (i = 0; i < nnodes; i++) {
        s = i % nslots;
        nodes[i].id = i;
        nodes[i].next = heads[s].head;
        heads[s].head = (intptr_t)&nodes[i];
    }
    for (s = 0; s < nslots; s++) {
        pbufs[s].array = (intptr_t *)xcalloc((size_t)buf_cap, sizeof(intptr_t));
        mbufs[s].array = (struct item3 *)xcalloc((size_t)buf_cap, sizeof(struct item3));
        for (i = 0; i < ITEMS_PER_SLOT; i++) {
            struct node *it = &bufitems[s * ITEMS_PER_SLOT + i];
            it->id = s * ITEMS_PER_SLOT + i;
            pbufs[s].array[i] = (intptr_t)it;
            mbufs[s].array[i].id = 1000000 + it->id;
            mbufs[s].array[i].check1 = ~(1000000 + it->id);
            mbufs[s].array[i].check2 = (1000000 + it->id) * 7;
        }
        pbufs[s].offset = ITEMS_PER_SLOT;
        mbufs[s].offset = ITEMS_PER_SLOT;
        slabs[s].retired_count = -1;
        slab_ptrs[s].ptr = (intptr_t)&slabs[s];
    }
    next_slab = nslots;
    deref_adds = 0;
    swaps = 0;
}

static void stress_free(void)
{
    int s;
    for (s = 0; s < nslots; s++) {
        free(pbufs[s].array);
        free(mbufs[s].array);
    }
    free(spins);
    free(nodes);
    free(heads);
    free(bufitems);
    free(pbufs);
    free(mbufs);
    free(counters);
    free(slabs);
    free(slab_ptrs);
}

static void take(struct node *n, const char *what)
{
    int was = __atomic_exchange_n(&n->in_use, 1, __ATOMIC_RELAXED);
    CHECK(was == 0, "%s: item %ld handed out twice", what, n->id);
}

static void give_back(struct node *n)
{
    __atomic_store_n(&n->in_use, 0, __ATOMIC_RELAXED);
}

static void migrate(long i);

/* This slot is empty: yield, and now and then move to the next CPU. Items
 * move between slots (popped on one CPU, pushed on another), so they may
 * all gather where no thread runs; a worker pinned to the empty slot's CPU
 * would wait there for ever (seen under qemu-user, where every operation
 * takes the fallback and no scheduler balancing helps). */
static void wait_for_items(int tries)
{
    if (tries % 8 == 0)
        sched_yield();
    if (tries % 64 == 0)
        migrate((long)tries / 64 * 97);
}

static void do_spinlock(void)
{
    int r, idx, tries = 0;
    for (;;) {
        idx = current_index();
        r = OP(cmpxchg, &spins[idx].lock, 0, 1, idx);
        if (r == 0)
            break;
        if (++tries % 16 == 0)
            sched_yield(); /* the holder may be preempted */
    }
    /* The lock word may have been released from another CPU: order the
     * reads of the data after it (as librseq's spinlock test does).
     * ThreadSanitizer models no fences; the header's annotations tell it. */
#ifndef __SANITIZE_THREAD__
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
    spins[idx].count++;
    __atomic_store_n(&spins[idx].lock, 0, __ATOMIC_RELEASE);
}

static void do_list(void)
{
    intptr_t popped, old;
    struct node *n;
    int r, idx, tries = 0;
    for (;;) {
        idx = current_index();
        r = OP(pop, &heads[idx].head, 0, (long)offsetof(struct node, next), &popped, idx);
        if (r == 0)
            break;
        if (r == 1)
            wait_for_items(++tries); /* this slot's list is empty for now */
    }
    n = (struct node *)popped;
    take(n, "list pop");
    give_back(n);
    for (;;) {
        idx = current_index();
        old = LOAD(&heads[idx].head);
        STORE(&n->next, old);
        if (OP(cmpxchg, &heads[idx].head, old, (intptr_t)n, idx) == 0)
            break;
    }
}

static void do_ptr_buffer(int release)
{
    struct node *it;
    intptr_t o, item;
    int r, idx, tries = 0;
    for (;;) {
        idx = current_index();
        o = LOAD(&pbufs[idx].offset);
        if (o == 0) {
            wait_for_items(++tries);
            continue;
        }
        item = LOAD(&pbufs[idx].array[o - 1]);
        r = OP(cmp2xchg, &pbufs[idx].offset, o, &pbufs[idx].array[o - 1], item, o - 1, idx);
        if (r == 0)
            break;
    }
    it = (struct node *)item;
    take(it, "pointer buffer pop");
    give_back(it);
    for (;;) {
        idx = current_index();
        o = LOAD(&pbufs[idx].offset);
        if (release)
            r = OP(cmpxchg_store_release, &pbufs[idx].offset, o, &pbufs[idx].array[o], item, o + 1, idx);
        else
            r = OP(cmpxchg_store, &pbufs[idx].offset, o, &pbufs[idx].array[o], item, o + 1, idx);
        if (r == 0)
            break;
    }
}

static void do_mem_buffer(int release)
{
    struct item3 it;
    intptr_t o;
    int r, idx, tries = 0;
    for (;;) {
        idx = current_index();
        o = LOAD(&mbufs[idx].offset);
        if (o == 0) {
            wait_for_items(++tries);
            continue;
        }
        r = OP(cmpxchg_memcpy, &mbufs[idx].offset, o, &it, &mbufs[idx].array[o - 1], sizeof it, o - 1, idx);
        if (r == 0)
            break;
    }
    CHECK(it.check1 == ~it.id && it.check2 == it.id * 7, "memcpy buffer: torn item %ld", (long)it.id);
    for (;;) {
        idx = current_index();
        o = LOAD(&mbufs[idx].offset);
        if (release)
            r = OP(cmpxchg_memcpy_release, &mbufs[idx].offset, o, &mbufs[idx].array[o], &it, sizeof it, o + 1, idx);
        else
            r = OP(cmpxchg_memcpy, &mbufs[idx].offset, o, &mbufs[idx].array[o], &it, sizeof it, o + 1, idx);
        if (r == 0)
            break;
    }
}

static void do_counter(void)
{
    if (mode_mmcid)
        rseqgen_mmcid_counter_add(counters, LINE, 1);
    else
        rseqgen_percpu_counter_add(counters, LINE, 1);
}

static void do_deref_add(void)
{
    int idx;
    for (;;) {
        idx = current_index();
        if (OP(deref_add, &slab_ptrs[idx].ptr, (long)offsetof(struct slab, count), 1, idx) == 0)
            break;
    }
    __atomic_fetch_add(&deref_adds, 1, __ATOMIC_RELAXED);
}

/* Swap the current slot's slab for a fresh one; once the swap committed no
 * deref_add may land in the old slab (on one CPU, an add in flight was
 * preempted by the swap and aborts): its count is final. */
static void do_slab_swap(void)
{
    int fresh = __atomic_fetch_add(&next_slab, 1, __ATOMIC_RELAXED);
    struct slab *old;
    intptr_t oldp;
    int idx;
    if (fresh >= SLABS)
        return;
    slabs[fresh].retired_count = -1;
    for (;;) {
        idx = current_index();
        oldp = LOAD(&slab_ptrs[idx].ptr);
        if (OP(cmpxchg, &slab_ptrs[idx].ptr, oldp, (intptr_t)&slabs[fresh], idx) == 0)
            break;
    }
    old = (struct slab *)oldp;
    STORE(&old->retired_count, LOAD(&old->count));
    __atomic_fetch_add(&swaps, 1, __ATOMIC_RELAXED);
}

static void migrate(long i)
{
    cpu_set_t one;
    int k, n = (int)(i / 97) % (nallowed + 1), c;
    if (n == nallowed) {
        sched_setaffinity(0, sizeof allowed, &allowed);
        return;
    }
    for (c = 0, k = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed) && k++ == n)
            break;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0)
        __atomic_fetch_add(&migrations, 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg)
{
    long i, seed = (long)(intptr_t)arg;
    for (i = 0; i < iters; i++) {
        switch ((i + seed) % 8) {
        case 0: do_spinlock(); break;
        case 1: do_list(); break;
        case 2: do_ptr_buffer(0); break;
        case 3: do_ptr_buffer(1); break;
        case 4: do_mem_buffer(i & 1); break;
        case 5: do_counter(); break;
        case 6: do_deref_add(); break;
        case 7: if (i % 64 == 7) do_slab_swap(); else do_counter(); break;
        }
        if (i % 97 == 0)
            migrate(i + seed);
    }
    sched_setaffinity(0, sizeof allowed, &allowed);
    __atomic_fetch_add(&workers_done, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Signals every worker in turn until all are done (a finished thread that
 * is not joined yet may still be signalled). */
static void *storm(void *arg)
{
    struct timespec ts = {0, 20000};
    unsigned int k = 0;
    (void)arg;
    while (__atomic_load_n(&workers_done, __ATOMIC_RELAXED) < THREADS) {
        pthread_kill(workers[k++ % THREADS], SIGUSR1);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static long expected_of(int which)
{
    /* iterations of each kind over all workers (seed = thread number) */
    long t, i, n = 0;
    for (t = 0; t < THREADS; t++)
        for (i = 0; i < iters; i++) {
            long k = (i + t) % 8;
            if (which == 5 ? (k == 5 || (k == 7 && i % 64 != 7)) : k == which)
                n++;
        }
    return n;
}

static void stress_check(const char *m)
{
    long spin_total = 0, counter_total = 0, slab_total = 0;
    int i, s, seen_nodes = 0, seen_items = 0, seen_mem = 0;
    char *mark = (char *)xcalloc((size_t)(nnodes + nbufitems), 1);
    for (s = 0; s < nslots; s++) {
        intptr_t p;
        spin_total += spins[s].count;
        CHECK(spins[s].lock == 0, "%s: spinlock %d left held", m, s);
        counter_total += *(intptr_t *)((char *)counters + (size_t)s * LINE);
        for (p = heads[s].head; p != 0; p = ((struct node *)p)->next) {
            long id = ((struct node *)p)->id;
            CHECK(id >= 0 && id < nnodes && !mark[id], "%s: list node %ld lost track or duplicated", m, id);
            if (id < 0 || id >= nnodes || mark[id] || ++seen_nodes > nnodes)
                break;
            mark[id] = 1;
        }
        CHECK(pbufs[s].offset >= 0 && pbufs[s].offset <= buf_cap, "%s: buffer offset %ld", m, (long)pbufs[s].offset);
        for (i = 0; i < pbufs[s].offset && i < buf_cap; i++) {
            long id = ((struct node *)pbufs[s].array[i])->id;
            CHECK(!mark[nnodes + id], "%s: buffer item %ld duplicated", m, id);
            mark[nnodes + id] = 1;
            seen_items++;
        }
        for (i = 0; i < mbufs[s].offset && i < buf_cap; i++) {
            struct item3 *it = &mbufs[s].array[i];
            CHECK(it->check1 == ~it->id && it->check2 == it->id * 7, "%s: memcpy buffer item torn", m);
            seen_mem++;
        }
    }
    /* memcpy buffer ids: exactly the initial set */
    {
        char *mk = (char *)xcalloc((size_t)nbufitems, 1);
        for (s = 0; s < nslots; s++)
            for (i = 0; i < mbufs[s].offset && i < buf_cap; i++) {
                long id = (long)mbufs[s].array[i].id - 1000000;
                CHECK(id >= 0 && id < nslots * ITEMS_PER_SLOT && !mk[id], "%s: memcpy item %ld duplicated", m, id);
                if (id >= 0 && id < nbufitems)
                    mk[id] = 1;
            }
        free(mk);
    }
    for (i = 0; i < SLABS && i < next_slab; i++) {
        slab_total += slabs[i].count;
        CHECK(slabs[i].retired_count < 0 || slabs[i].retired_count == slabs[i].count,
              "%s: slab %d got %ld adds after it was swapped out", m, i,
              slabs[i].count - slabs[i].retired_count);
    }
    CHECK(spin_total == expected_of(0), "%s: spinlock count %ld, want %ld", m, spin_total, expected_of(0));
    CHECK(counter_total == expected_of(5), "%s: counter total %ld, want %ld", m, counter_total, expected_of(5));
    CHECK(slab_total == deref_adds && deref_adds == expected_of(6),
          "%s: deref_add total %ld, want %ld (%ld counted)", m, slab_total, expected_of(6), deref_adds);
    CHECK(seen_nodes == nnodes, "%s: %d list nodes, want %d", m, seen_nodes, nnodes);
    CHECK(seen_items == nslots * ITEMS_PER_SLOT, "%s: %d buffer items, want %d", m, seen_items, nslots * ITEMS_PER_SLOT);
    CHECK(seen_mem == nslots * ITEMS_PER_SLOT, "%s: %d memcpy items, want %d", m, seen_mem, nslots * ITEMS_PER_SLOT);
    free(mark);
}

static int run_stress(long n)
{
    struct sigaction sa;
    pthread_t storm_thread;
    int i;
    iters = n;
    nslots = rseqgen_max_cpus() > rseqgen_max_mm_cids() ? rseqgen_max_cpus() : rseqgen_max_mm_cids();
    sched_getaffinity(0, sizeof allowed, &allowed);
    nallowed = CPU_COUNT(&allowed);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    for (mode_mmcid = 0; mode_mmcid <= 1; mode_mmcid++) {
        const char *m = mode_mmcid ? "mmcid" : "percpu";
        unsigned long aborts_before = LOAD(&aborts_seen), signals_before = LOAD(&signals_seen);
        unsigned long migrations_before = LOAD(&migrations);
        stress_init();
        workers_done = 0;
        for (i = 0; i < THREADS; i++)
            if (pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) != 0) {
                printf("FAIL: pthread_create\n");
                return 2;
            }
        if (pthread_create(&storm_thread, NULL, storm, NULL) != 0) {
            printf("FAIL: pthread_create\n");
            return 2;
        }
        pthread_join(storm_thread, NULL);
        for (i = 0; i < THREADS; i++)
            pthread_join(workers[i], NULL);
        stress_check(m);
        printf("mode=%s owner=%s mm_cid_available=%d threads=%d iters=%ld slots=%d aborts=%lu signals=%lu "
               "migrations=%lu swaps=%lu\n",
               m, rseqgen_owner(), rseqgen_mm_cid_available(), THREADS, iters, nslots,
               LOAD(&aborts_seen) - aborts_before, LOAD(&signals_seen) - signals_before,
               LOAD(&migrations) - migrations_before, LOAD(&swaps));
        stress_free();
    }
    return 0;
}

/* ---- pool ---------------------------------------------------------------- */

static long page_size;

/* Resident pages of [p, p + len) (mincore). */
static long resident_pages(const void *p, size_t len)
{
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page_size - 1);
    size_t n = ((uintptr_t)p + len - start + (size_t)page_size - 1) / (size_t)page_size;
    unsigned char *vec = (unsigned char *)xcalloc(n, 1);
    long count = 0;
    size_t i;
    if (mincore((void *)start, n * (size_t)page_size, vec) != 0) {
        free(vec);
        return -1;
    }
    for (i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

static int all_zero(const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

struct pool_thread_arg {
    struct rseqgen_pool *pool;
    int id;
};

static void *pool_worker(void *arg)
{
    struct pool_thread_arg *a = (struct pool_thread_arg *)arg;
    void *mine[16];
    int i, k;
    for (i = 0; i < 300; i++) {
        for (k = 0; k < 16; k++) {
            mine[k] = rseqgen_pool_alloc(a->pool);
            CHECK(mine[k] != NULL, "pool thread: alloc failed (%d)", errno);
            if (mine[k] == NULL)
                return NULL;
            /* a copy another thread also holds would trip this */
            CHECK(__atomic_exchange_n((int *)mine[k], a->id + 1, __ATOMIC_RELAXED) == 0,
                  "pool thread: item handed out twice");
            rseqgen_percpu_counter_add((intptr_t *)((char *)mine[k] + sizeof(intptr_t)), RSEQGEN_POOL_STRIDE, 1);
        }
        for (k = 0; k < 16; k++) {
            CHECK(__atomic_load_n((int *)mine[k], __ATOMIC_RELAXED) == a->id + 1, "pool thread: item changed");
            rseqgen_pool_free(a->pool, mine[k]);
        }
    }
    return NULL;
}

static int run_pool(void)
{
    struct rseqgen_pool *pool;
    void *items[1000], *item, *again;
    int copies, c, i, ok;
    long before, res;
    page_size = sysconf(_SC_PAGESIZE);

    CHECK(rseqgen_pool_create(0, 8, RSEQGEN_POOL_CPU) == NULL && errno == EINVAL, "item size 0");
    CHECK(rseqgen_pool_create(RSEQGEN_POOL_STRIDE + 1, 8, RSEQGEN_POOL_CPU) == NULL && errno == EINVAL, "item too big");
    CHECK(rseqgen_pool_create(8, 24, RSEQGEN_POOL_CPU) == NULL && errno == EINVAL, "alignment 24");
    CHECK(rseqgen_pool_create(8, 8, 7) == NULL && errno == EINVAL, "mode 7");

    pool = rseqgen_pool_create(40, 64, RSEQGEN_POOL_MM_CID);
    CHECK(pool != NULL, "pool_create: errno %d", errno);
    if (pool == NULL)
        return 0;
    copies = rseqgen_pool_copies(pool);
    CHECK(copies == rseqgen_max_mm_cids(), "copies %d, max_mm_cids %d", copies, rseqgen_max_mm_cids());
    item = rseqgen_pool_alloc(pool);
    CHECK(item != NULL && (uintptr_t)item % 64 == 0, "first item %p", item);
    /* Only copy 0 was touched: the other copies' pages stay out of memory. */
    memset(item, 0xab, 40);
    res = resident_pages(item, 40);
    CHECK(res == 1, "copy 0 resident pages %ld", res);
    for (c = 1; c < copies; c++) {
        char *cp = (char *)rseqgen_pool_ptr(item, c);
        CHECK(cp - (char *)item == (ptrdiff_t)c * RSEQGEN_POOL_STRIDE, "stride of copy %d", c);
        res = resident_pages(cp, 40);
        CHECK(res == 0, "untouched copy %d has %ld resident pages", c, res);
    }
    /* 999 more items of 40 bytes in 64-byte slots: copy 0 of each touched,
     * the others never (one range per 1024 slots). */
    for (i = 1; i < 1000; i++) {
        items[i] = rseqgen_pool_alloc(pool);
        CHECK(items[i] != NULL && (uintptr_t)items[i] % 64 == 0, "item %d", i);
        if (items[i] == NULL)
            return 0;
        memset(items[i], i & 0xff, 40);
    }
    items[0] = item;
    for (i = 1, ok = 1; i < 1000; i++)
        ok &= (char *)items[i] - (char *)items[i - 1] == 64; /* first fit, one range */
    CHECK(ok, "items are not consecutive 64-byte slots");
    for (c = 1; c < copies; c++) {
        res = resident_pages(rseqgen_pool_ptr(items[0], c), 1000 * 64);
        CHECK(res == 0, "copy %d: %ld pages resident, no CPU touched it", c, res);
    }
    res = resident_pages(items[0], 1000 * 64);
    CHECK(res == (1000 * 64 + page_size - 1) / page_size, "copy 0: %ld pages resident", res);
    for (c = 0; c < copies; c++)
        CHECK(all_zero((char *)rseqgen_pool_ptr(items[0], c) + 40, 24), "slot padding of copy %d", c);
    /* Free and allocate again: the item comes back zeroed in every copy,
     * and copies nobody wrote stay out of memory. */
    if (copies > 1)
        memset(rseqgen_pool_ptr(items[7], 1), 0x5a, 40);
    rseqgen_pool_free(pool, items[7]);
    again = rseqgen_pool_alloc(pool);
    CHECK(again == items[7], "freed slot reused (%p, %p)", again, items[7]);
    for (c = 0; c < copies; c++)
        CHECK(all_zero((char *)rseqgen_pool_ptr(again, c), 40), "reused item, copy %d not zeroed", c);
    for (i = 0; i < 1000; i++)
        rseqgen_pool_free(pool, items[i]);
    rseqgen_pool_free(pool, NULL);
    rseqgen_pool_destroy(pool);

    /* Exhaustion: items of a whole stride, one per range. */
    pool = rseqgen_pool_create(RSEQGEN_POOL_STRIDE, 0, RSEQGEN_POOL_CPU);
    CHECK(pool != NULL, "pool of stride-sized items");
    if (pool == NULL)
        return 0;
    for (i = 0; i < 1000; i++) {
        items[i] = rseqgen_pool_alloc(pool);
        if (items[i] == NULL)
            break;
    }
    CHECK(i > 0 && i < 1000 && errno == ENOMEM, "exhausted after %d items, errno %d", i, errno);
    printf("pool_capacity_stride_items=%d\n", i);
    if (i > 0) {
        rseqgen_pool_free(pool, items[i - 1]);
        items[i - 1] = rseqgen_pool_alloc(pool);
        CHECK(items[i - 1] != NULL, "alloc after free in a full pool");
    }
    rseqgen_pool_destroy(pool);

    /* Threads allocating and freeing, and counting per CPU in their items. */
    {
        pthread_t t[8];
        struct pool_thread_arg args[8];
        before = 0;
        pool = rseqgen_pool_create(2 * sizeof(intptr_t), 0, RSEQGEN_POOL_CPU);
        CHECK(pool != NULL, "pool for threads");
        if (pool == NULL)
            return 0;
        for (i = 0; i < 8; i++) {
            args[i].pool = pool;
            args[i].id = i;
            pthread_create(&t[i], NULL, pool_worker, &args[i]);
        }
        for (i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        item = rseqgen_pool_alloc(pool);
        for (c = 0; c < rseqgen_pool_copies(pool); c++)
            before += *(intptr_t *)((char *)rseqgen_pool_ptr(item, c) + sizeof(intptr_t));
        CHECK(before == 0, "a freed item kept its counts (%ld)", before);
        rseqgen_pool_destroy(pool);
    }
    printf("pool_copies=%d page_size=%ld\n", copies, page_size);
    return 0;
}

int main(int argc, char **argv)
{
    int r = 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "selfcheck") == 0)
        r = run_selfcheck();
    else if (argc >= 3 && strcmp(argv[1], "stress") == 0)
        r = run_stress(atol(argv[2]));
    else if (argc >= 2 && strcmp(argv[1], "pool") == 0)
        r = run_pool();
    else {
        fprintf(stderr, "usage: %s selfcheck | stress ITERS | pool\n", argv[0]);
        return 2;
    }
    if (r != 0)
        return r;
    printf(failures ? "FAILED\n" : "OK\n");
    return failures ? 1 : 0;
}

#ifdef WHOLE_PROGRAM
/* The generated source in this translation unit: the test hooks then apply
 * to the sequences its slow paths run too. */
#include "rseqgen_rseq.c"
#endif
