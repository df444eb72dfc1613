/* Driver of the coexistence matrix (tests/test_coexistence.py): one process
 * holding an rseq-gen module (prefix r, tests/c/matrix_module.c) and at most
 * one peer: a C fixture (coexist_librseq.c, coexist_selftests.c,
 * coexist_tcmalloc.c) or a second rseq-gen module (prefix q). Prints one JSON
 * object per line.
 *
 *   coexist [--threads N] [--adds N] [--dlopen-rgen PATH] [--dlopen-peer PATH]
 *   environment: COEXIST_FIRST=peer|rseq-gen (default rseq-gen)
 *
 * Units linked at start-up are reached through weak references (NULL when
 * the program was linked without them), units given with --dlopen-* are
 * loaded by main() and reached through dlsym.
 *
 * Order of first use, on every thread: COEXIST_FIRST's group first. On the
 * main thread an rseq-gen module acts in its own constructor, as in any
 * program (so two of them act in constructor order); a C peer linked at
 * start-up acts before every constructor when it goes first (from the
 * executable's .preinit_array, which the dynamic linker runs first; from a
 * constructor of priority 101 under static musl, which runs no
 * .preinit_array), else at the start of main(); a dlopen'd unit right after
 * it is loaded. Workers are created after every unit is loaded and use
 * them one worker at a time (so that an abort names one thread), then count
 * concurrently. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "coexist_peer.h"
#include "matrix_module.h"

#define MAX_THREADS 16
#define WHY_LEN 160

/* Start-up units: weak, so the same driver links with any subset. */
#define WEAK_RGEN(p)                                                         \
    void p##_mod_info(struct mod_info *out) __attribute__((weak));           \
    int p##_mod_count(intptr_t *slots, int nslots, long n) __attribute__((weak));
WEAK_RGEN(r)
WEAK_RGEN(q)
void coexist_peer_touch(void) __attribute__((weak));
const char *coexist_peer_state(void) __attribute__((weak));
int coexist_peer_check(char *why, size_t len) __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

struct unit {
    const char *name;        /* "r", "q" or "peer" */
    int present;
    void (*info)(struct mod_info *);
    int (*count)(intptr_t *, int, long);
    void (*touch)(void);
    const char *(*state)(void);
    int (*check)(char *, size_t);
};

enum { UNIT_R, UNIT_PEER, NUNITS };
static struct unit units[NUNITS] = { { .name = "r" }, { .name = "peer" } };
static int peer_first;

struct thread_report {
    long tid;
    struct mod_info info[NUNITS];
    const char *peer_state;
    int peer_failed;
    char peer_why[WHY_LEN];
};

static void bind_rgen(struct unit *u, const char *prefix, void (*info)(struct mod_info *),
                      int (*count)(intptr_t *, int, long))
{
    u->name = prefix;
    u->info = info;
    u->count = count;
    u->present = info != NULL && count != NULL;
}

static void bind_peer(struct unit *u, void (*touch)(void), const char *(*state)(void),
                      int (*check)(char *, size_t))
{
    u->touch = touch;
    u->state = state;
    u->check = check;
    u->present = touch != NULL && state != NULL && check != NULL;
}

static void bind_startup_units(void)
{
    bind_rgen(&units[UNIT_R], "r", r_mod_info, r_mod_count);
    if (q_mod_info != NULL)
        bind_rgen(&units[UNIT_PEER], "q", q_mod_info, q_mod_count);
    else
        bind_peer(&units[UNIT_PEER], coexist_peer_touch, coexist_peer_state, coexist_peer_check);
}

static void touch(struct unit *u, const char *thread)
{
    struct mod_info scratch;
    if (!u->present)
        return;
    coexist_emit("{\"event\": \"touch\", \"thread\": \"%s\", \"unit\": \"%s\"}", thread, u->name);
    if (u->info != NULL)
        u->info(&scratch);       /* registers as the protocol says */
    else
        u->touch();
}

static void touch_all(const char *thread)
{
    int i;
    for (i = 0; i < NUNITS; i++)
        touch(&units[peer_first ? NUNITS - 1 - i : i], thread);
}

/* The C peer's first use on the main thread, when it goes first: before
 * the constructors of the rseq-gen modules. */
static void early_touch(void)
{
    bind_startup_units();
    if (peer_first && units[UNIT_PEER].touch != NULL)
        touch(&units[UNIT_PEER], "main");
}

static void read_first_from(char **envp)
{
    const char *first = NULL;
    for (; envp != NULL && *envp != NULL; envp++)
        if (strncmp(*envp, "COEXIST_FIRST=", 14) == 0)
            first = *envp + 14;
    peer_first = first != NULL && strcmp(first, "peer") == 0;
}

#if defined(__GLIBC__)
/* The dynamic linker (and static glibc's start code) runs this before every
 * constructor, with the process's arguments and environment. */
static void early(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    read_first_from(envp);
    early_touch();
}
__attribute__((section(".preinit_array"), used)) static void (*const early_entry)(int, char **, char **) = early;
#else
extern char **environ;
/* musl runs no .preinit_array; in a static link this runs before the
 * default-priority constructors of the rseq-gen objects. */
__attribute__((constructor(101))) static void early(void)
{
    read_first_from(environ);
    early_touch();
}
#endif

/* ---- after start-up ------------------------------------------------------ */

static void *open_unit(const char *path, int global)
{
    void *h = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (h == NULL) {
        coexist_emit("{\"event\": \"error\", \"what\": \"dlopen\", \"detail\": \"%s\"}", dlerror());
        exit(3);
    }
    return h;
}

static void *sym(void *h, const char *name)
{
    return dlsym(h, name);
}

static void load_later(const char *rgen_path, const char *peer_path)
{
    if (rgen_path != NULL) {
        void *h = open_unit(rgen_path, 0);
        void (*info)(struct mod_info *);
        int (*count)(intptr_t *, int, long);
        *(void **)&info = sym(h, "r_mod_info");
        *(void **)&count = sym(h, "r_mod_count");
        bind_rgen(&units[UNIT_R], "r", info, count);
        touch(&units[UNIT_R], "main");
    }
    if (peer_path != NULL) {
        /* RTLD_GLOBAL: a library a program loads for everyone (librseq's
         * names are then visible to dlsym(RTLD_DEFAULT)). */
        void *h = open_unit(peer_path, 1);
        if (sym(h, "q_mod_info") != NULL) {
            void (*info)(struct mod_info *);
            int (*count)(intptr_t *, int, long);
            *(void **)&info = sym(h, "q_mod_info");
            *(void **)&count = sym(h, "q_mod_count");
            bind_rgen(&units[UNIT_PEER], "q", info, count);
        } else {
            void (*t)(void);
            const char *(*s)(void);
            int (*c)(char *, size_t);
            *(void **)&t = sym(h, "coexist_peer_touch");
            *(void **)&s = sym(h, "coexist_peer_state");
            *(void **)&c = sym(h, "coexist_peer_check");
            bind_peer(&units[UNIT_PEER], t, s, c);
        }
        touch(&units[UNIT_PEER], "main");
    }
}

/* ---- workers ----------------------------------------------------------- */

static int nthreads = 3, nslots;
static long adds = 4000;
static pthread_mutex_t touch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t touched;
static intptr_t *slots[NUNITS];
static struct thread_report reports[MAX_THREADS + 1];
static int allowed_cpus[CPU_SETSIZE], ncpus;

static void report_thread(struct thread_report *rep)
{
    int i;
    rep->tid = (long)syscall(SYS_gettid);
    for (i = 0; i < NUNITS; i++)
        if (units[i].present && units[i].info != NULL)
            units[i].info(&rep->info[i]);
    if (units[UNIT_PEER].present && units[UNIT_PEER].state != NULL) {
        rep->peer_state = units[UNIT_PEER].state();
        rep->peer_failed = units[UNIT_PEER].check(rep->peer_why, sizeof(rep->peer_why));
    }
}

static void pin(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof(one), &one);
}

static void *worker(void *arg)
{
    long idx = (long)(intptr_t)arg, done = 0, chunk = 500;
    char name[32];
    int round = 0, i;
    snprintf(name, sizeof(name), "worker%ld", idx);
    pthread_mutex_lock(&touch_lock);
    touch_all(name);
    pthread_mutex_unlock(&touch_lock);
    pthread_barrier_wait(&touched);
    /* every rseq-gen unit counts, with a migration every chunk */
    while (done < adds) {
        long n = adds - done < chunk ? adds - done : chunk;
        pin(allowed_cpus[(idx + round++) % ncpus]);
        for (i = 0; i < NUNITS; i++)
            if (units[i].present && units[i].count != NULL)
                units[i].count(slots[i], nslots, n);
        done += n;
    }
    report_thread(&reports[idx + 1]);
    return NULL;
}

static long sum(const intptr_t *s)
{
    long total = 0;
    int i;
    for (i = 0; i < nslots; i++)
        total += *(const intptr_t *)((const char *)s + (size_t)i * MATRIX_STRIDE);
    return total;
}

static void print_report(const char *thread, const struct thread_report *rep)
{
    char owners[256] = "", *p = owners;
    int i;
    for (i = 0; i < NUNITS; i++) {
        if (!units[i].present || units[i].info == NULL)
            continue;
        p += snprintf(p, sizeof(owners) - (size_t)(p - owners),
                      "%s\"%s\": {\"owner\": \"%s\", \"errno\": %d, \"registrations\": %lu, \"cpu\": %d}",
                      p == owners ? "" : ", ", units[i].name, rep->info[i].owner, rep->info[i].err,
                      rep->info[i].registrations, rep->info[i].cpu);
    }
    if (rep->peer_state != NULL)
        coexist_emit("{\"event\": \"thread\", \"thread\": \"%s\", \"tid\": %ld, \"owners\": {%s}, "
                     "\"peer\": {\"state\": \"%s\", \"check\": \"%s\"}}",
                     thread, rep->tid, owners, rep->peer_state, rep->peer_failed ? rep->peer_why : "");
    else
        coexist_emit("{\"event\": \"thread\", \"thread\": \"%s\", \"tid\": %ld, \"owners\": {%s}}",
                     thread, rep->tid, owners);
}

int main(int argc, char **argv)
{
    const char *rgen_path = NULL, *peer_path = NULL;
    pthread_t threads[MAX_THREADS];
    cpu_set_t allowed;
    long i;
    int u;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nthreads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--adds") == 0 && i + 1 < argc)
            adds = atol(argv[++i]);
        else if (strcmp(argv[i], "--dlopen-rgen") == 0 && i + 1 < argc)
            rgen_path = argv[++i];
        else if (strcmp(argv[i], "--dlopen-peer") == 0 && i + 1 < argc)
            peer_path = argv[++i];
        else {
            fprintf(stderr, "coexist: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    if (nthreads < 1 || nthreads > MAX_THREADS)
        nthreads = 3;
    if (!peer_first && units[UNIT_PEER].touch != NULL)
        touch(&units[UNIT_PEER], "main");   /* after the rseq-gen constructors */
    load_later(rgen_path, peer_path);

    nslots = (int)sysconf(_SC_NPROCESSORS_CONF);
    sched_getaffinity(0, sizeof(allowed), &allowed);
    for (u = 0; u < CPU_SETSIZE; u++)
        if (CPU_ISSET(u, &allowed))
            allowed_cpus[ncpus++] = u;
    for (u = 0; u < NUNITS; u++) {
        slots[u] = aligned_alloc(MATRIX_STRIDE, (size_t)nslots * MATRIX_STRIDE);
        if (slots[u] == NULL)
            abort();
        memset(slots[u], 0, (size_t)nslots * MATRIX_STRIDE);
    }
    pthread_barrier_init(&touched, NULL, (unsigned)nthreads);
    for (i = 0; i < nthreads; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    sched_setaffinity(0, sizeof(allowed), &allowed);

    /* Owners are read at the end, as the prediction reads them. */
    report_thread(&reports[0]);
    coexist_emit("{\"event\": \"process\", \"glibc_registered\": %s, \"peer_first\": %s}",
                 &__rseq_size != NULL && __rseq_size != 0 ? "true" : "false", peer_first ? "true" : "false");
    print_report("main", &reports[0]);
    for (i = 0; i < nthreads; i++) {
        char name[32];
        snprintf(name, sizeof(name), "worker%ld", i);
        print_report(name, &reports[i + 1]);
    }
    for (u = 0; u < NUNITS; u++)
        if (units[u].present && units[u].count != NULL)
            coexist_emit("{\"event\": \"count\", \"unit\": \"%s\", \"expected\": %ld, \"got\": %ld}",
                         units[u].name, (long)nthreads * adds, sum(slots[u]));
    coexist_emit("{\"event\": \"done\"}");
    return 0;
}
