/* Coexistence test driver. Runs the scenarios of the protocol matrix in one
 * process and prints one JSON object per line; the pytest side checks them
 * against the protocol table and the strace log.
 *
 *   matrix [--seccomp enosys|eperm] [--plugin PATH] [--threads N] [--adds N]
 *          [--dlopen-iterations N]
 *
 * --seccomp installs a filter that denies rseq, then re-executes itself, so
 * the libc sees the denial from its very first registration. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#include "m_rseq.h"
#include "matrix_module.h"

MATRIX_DECLARE(m)
#ifdef WITH_LIBS
MATRIX_DECLARE(a)
MATRIX_DECLARE(b)
#endif

struct module {
    const char *name;
    void (*info)(struct mod_info *);
    int (*cpu)(void);
    int (*raw)(void);
    int (*count)(intptr_t *, int, long);
    void (*add)(intptr_t *);
};

#define MODULE(p) { #p, p##_mod_info, p##_mod_cpu, p##_mod_raw_cpu, p##_mod_count, p##_mod_add }
static const struct module modules[] = {
#ifdef WITH_LIBS
    MODULE(a),
    MODULE(b),
#endif
    MODULE(m),
};
#define NMODULES ((int)(sizeof(modules) / sizeof(modules[0])))
#define MAX_THREADS 64

static int nslots;
static cpu_set_t allowed;
static int ncpus_allowed;
static int allowed_cpus[CPU_SETSIZE];
static int all_ok = 1;

static void check(int ok, const char *what)
{
    if (!ok) {
        all_ok = 0;
        printf("{\"event\": \"failure\", \"what\": \"%s\"}\n", what);
    }
}

/* ---- seccomp: deny rseq with a given errno, no libseccomp -------------- */

struct bpf_insn { unsigned short code; unsigned char jt, jf; unsigned int k; };
struct bpf_prog { unsigned short len; struct bpf_insn *filter; };
#define BPF_LD_W_ABS 0x20
#define BPF_JEQ_K 0x15
#define BPF_RET_K 0x06
#define SECCOMP_RET_ALLOW_ 0x7fff0000u
#define SECCOMP_RET_ERRNO_ 0x00050000u
#if defined(__x86_64__)
#define AUDIT_ARCH_ 0xc000003eu
#elif defined(__i386__)
#define AUDIT_ARCH_ 0x40000003u
#elif defined(__aarch64__)
#define AUDIT_ARCH_ 0xc00000b7u
#endif

static int deny_rseq(int err)
{
    struct bpf_insn insns[] = {
        { BPF_LD_W_ABS, 0, 0, 4 },                              /* arch */
        { BPF_JEQ_K, 0, 3, AUDIT_ARCH_ },
        { BPF_LD_W_ABS, 0, 0, 0 },                              /* nr */
        { BPF_JEQ_K, 0, 1, M__NR_RSEQ },
        { BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO_ | (unsigned int)err },
        { BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW_ },
    };
    struct bpf_prog prog = { sizeof(insns) / sizeof(insns[0]), insns };
    if (prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(22 /* PR_SET_SECCOMP */, 2 /* SECCOMP_MODE_FILTER */, &prog, 0, 0);
}

/* ---- helpers ----------------------------------------------------------- */

/* glibc's rseq ABI (2.35+), as the generated code sees it: weak, NULL where
 * the libc has none. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* Which libc runs the program and what it published about its area. */
static void print_libc(void)
{
#ifdef __GLIBC__
    const char *version = gnu_get_libc_version();
#else
    const char *version = "";
#endif
    int abi = &__rseq_size != NULL && &__rseq_offset != NULL;
    printf("{\"event\": \"libc\", \"glibc\": \"%s\", \"rseq_abi\": %s, \"rseq_size\": %u, "
           "\"rseq_offset\": %td, \"feature_size\": %lu}\n", version, abi ? "true" : "false",
           abi ? __rseq_size : 0u, abi ? __rseq_offset : (ptrdiff_t)0, getauxval(27 /* AT_RSEQ_FEATURE_SIZE */));
}

static void print_info(const char *scope, const struct mod_info *infos, int n, const char **names)
{
    int i;
    printf("{\"event\": \"owners\", \"scope\": \"%s\", \"modules\": {", scope);
    for (i = 0; i < n; i++)
        printf("%s\"%s\": {\"owner\": \"%s\", \"errno\": %d, \"cpu\": %d, \"raw\": %d, "
               "\"registrations\": %lu, \"has_area\": %d}",
               i ? ", " : "", names[i], infos[i].owner, infos[i].err, infos[i].cpu, infos[i].raw,
               infos[i].registrations, infos[i].has_area);
    printf("}}\n");
}

/* Register with every module, then read the owners (a peer may register
 * the thread only when its own code runs). */
static void collect_owners(struct mod_info *out)
{
    int i;
    for (i = 0; i < NMODULES; i++)
        modules[i].info(&out[i]);
    for (i = 0; i < NMODULES; i++)
        modules[i].info(&out[i]);
}

static intptr_t *alloc_slots(void)
{
    intptr_t *slots = aligned_alloc(MATRIX_STRIDE, (size_t)nslots * MATRIX_STRIDE);
    if (!slots)
        abort();
    memset(slots, 0, (size_t)nslots * MATRIX_STRIDE);
    return slots;
}

static long sum_slots(const intptr_t *slots)
{
    long total = 0;
    int i;
    for (i = 0; i < nslots; i++)
        total += *(const intptr_t *)((const char *)slots + (size_t)i * MATRIX_STRIDE);
    return total;
}

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* ---- scenario: current cpu matches sched_getcpu when pinned ------------ */

static void pinned_check(void)
{
    int i, j, ok = 1;
    for (i = 0; i < ncpus_allowed; i++) {
        pin_to(allowed_cpus[i]);
        sched_yield();
        for (j = 0; j < NMODULES; j++) {
            int cpu = modules[j].cpu(), raw = modules[j].raw();
            if (cpu != allowed_cpus[i] || sched_getcpu() != allowed_cpus[i])
                ok = 0;
            if (raw >= 0 && raw != allowed_cpus[i])
                ok = 0;
        }
    }
    sched_setaffinity(0, sizeof(allowed), &allowed);
    printf("{\"event\": \"pinned\", \"cpus\": %d, \"ok\": %s}\n", ncpus_allowed, ok ? "true" : "false");
    check(ok, "pinned");
}

/* ---- scenario: many threads, migrations and signals --------------------- */

static intptr_t *count_slots, *signal_slots;
static long signals_handled;
static long adds_per_thread = 200000;
static int nthreads = 16;
static int stop_signals;
static pthread_t workers[MAX_THREADS];
static struct mod_info worker_owners[MAX_THREADS][8];
static pthread_barrier_t ready, release;
static int workers_done;

static void on_signal(int sig)
{
    (void)sig;
    modules[NMODULES - 1].add(signal_slots);
    __atomic_fetch_add(&signals_handled, 1, __ATOMIC_RELAXED);
}

static void *count_worker(void *arg)
{
    long idx = (long)(intptr_t)arg, done = 0, chunk = 1000;
    int round = 0;
    collect_owners(worker_owners[idx]);
    pthread_barrier_wait(&ready);
    while (done < adds_per_thread) {
        long n = adds_per_thread - done < chunk ? adds_per_thread - done : chunk;
        /* force a migration every chunk, and rotate through the modules */
        pin_to(allowed_cpus[(idx + round) % ncpus_allowed]);
        modules[(idx + round) % NMODULES].count(count_slots, nslots, n);
        done += n;
        round++;
    }
    /* stay alive until the signal sender stopped: it targets this thread */
    __atomic_fetch_add(&workers_done, 1, __ATOMIC_RELEASE);
    pthread_barrier_wait(&release);
    return NULL;
}

/* Rounds of one signal per worker: bounded, because under strace every
 * signal costs two tracer stops and a slow (fallback) run would otherwise
 * feed itself more signals the longer it takes. */
#define MAX_SIGNAL_ROUNDS 1000

static void *signal_sender(void *arg)
{
    struct timespec pause = { 0, 50000 };
    int i, rounds = 0;
    (void)arg;
    while (!__atomic_load_n(&stop_signals, __ATOMIC_ACQUIRE) && rounds++ < MAX_SIGNAL_ROUNDS) {
        for (i = 0; i < nthreads; i++)
            pthread_kill(workers[i], SIGUSR1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void count_scenario(void)
{
    pthread_t sender;
    struct sigaction sa;
    long i, expected, got;
    int j;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    count_slots = alloc_slots();
    signal_slots = alloc_slots();
    pthread_barrier_init(&ready, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&release, NULL, (unsigned)nthreads + 1);
    for (i = 0; i < nthreads; i++)
        pthread_create(&workers[i], NULL, count_worker, (void *)(intptr_t)i);
    pthread_barrier_wait(&ready);
    pthread_create(&sender, NULL, signal_sender, NULL);
    while (__atomic_load_n(&workers_done, __ATOMIC_ACQUIRE) < nthreads)
        usleep(1000);
    __atomic_store_n(&stop_signals, 1, __ATOMIC_RELEASE);
    pthread_join(sender, NULL);
    pthread_barrier_wait(&release);
    for (i = 0; i < nthreads; i++)
        pthread_join(workers[i], NULL);
    sched_setaffinity(0, sizeof(allowed), &allowed);

    printf("{\"event\": \"thread_owners\", \"threads\": [");
    for (i = 0; i < nthreads; i++) {
        printf("%s{", i ? ", " : "");
        for (j = 0; j < NMODULES; j++)
            printf("%s\"%s\": [\"%s\", %d]", j ? ", " : "", modules[j].name,
                   worker_owners[i][j].owner, worker_owners[i][j].err);
        printf("}");
    }
    printf("]}\n");
    expected = (long)nthreads * adds_per_thread;
    got = sum_slots(count_slots);
    printf("{\"event\": \"count\", \"expected\": %ld, \"got\": %ld, \"signals\": %ld, "
           "\"signal_adds\": %ld}\n", expected, got, signals_handled, sum_slots(signal_slots));
    check(got == expected, "count");
    check(sum_slots(signal_slots) == signals_handled, "signal count");
}

/* ---- scenario: after fork the child still counts ------------------------ */

static void *fork_worker(void *arg)
{
    (void)arg;
    modules[NMODULES - 1].count(count_slots, nslots, 20000);
    return NULL;
}

static void fork_scenario(void)
{
    pid_t pid;
    int status = 0;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        struct mod_info info;
        pthread_t t[2];
        int i;
        memset(count_slots, 0, (size_t)nslots * MATRIX_STRIDE);
        modules[NMODULES - 1].info(&info);
        for (i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, fork_worker, NULL);
        fork_worker(NULL);
        for (i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        printf("{\"event\": \"fork_child\", \"owner\": \"%s\", \"expected\": 60000, \"got\": %ld}\n",
               info.owner, sum_slots(count_slots));
        fflush(stdout);
        _exit(sum_slots(count_slots) == 60000 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child");
}

/* ---- scenario: a plugin dlopen'd and dlclose'd while threads run -------- */

static int stop_background;

static void *background_worker(void *arg)
{
    long *done = arg;
    while (!__atomic_load_n(&stop_background, __ATOMIC_ACQUIRE)) {
        modules[NMODULES - 1].count(count_slots, nslots, 100);
        *done += 100;
    }
    return NULL;
}

static void dlopen_scenario(const char *path, int iterations)
{
    pthread_t bg[4];
    long done[4] = { 0, 0, 0, 0 }, expected = 0;
    intptr_t *plugin_slots = alloc_slots();
    char first_owner[16] = "";
    int i, same_owner = 1, exact = 1, first_err = 0;
    memset(count_slots, 0, (size_t)nslots * MATRIX_STRIDE);
    for (i = 0; i < 4; i++)
        pthread_create(&bg[i], NULL, background_worker, &done[i]);
    for (i = 0; i < iterations; i++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        void (*info)(struct mod_info *);
        int (*count)(intptr_t *, int, long);
        struct mod_info mi;
        if (!h) {
            printf("{\"event\": \"failure\", \"what\": \"dlopen\", \"error\": \"%s\"}\n", dlerror());
            all_ok = 0;
            break;
        }
        *(void **)&info = dlsym(h, "c_mod_info");
        *(void **)&count = dlsym(h, "c_mod_count");
        info(&mi);
        if (i == 0) {
            snprintf(first_owner, sizeof(first_owner), "%s", mi.owner);
            first_err = mi.err;
        } else if (strcmp(first_owner, mi.owner) != 0) {
            same_owner = 0;
        }
        memset(plugin_slots, 0, (size_t)nslots * MATRIX_STRIDE);
        count(plugin_slots, nslots, 1000);
        if (sum_slots(plugin_slots) != 1000)
            exact = 0;
        dlclose(h);
    }
    __atomic_store_n(&stop_background, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 4; i++) {
        pthread_join(bg[i], NULL);
        expected += done[i];
    }
    printf("{\"event\": \"dlopen\", \"iterations\": %d, \"owner\": \"%s\", \"errno\": %d, "
           "\"same_owner\": %s, \"plugin_exact\": %s, \"expected\": %ld, \"got\": %ld}\n",
           iterations, first_owner, first_err, same_owner ? "true" : "false",
           exact ? "true" : "false", expected, sum_slots(count_slots));
    check(same_owner && exact, "plugin");
    check(sum_slots(count_slots) == expected, "background count");
}

int main(int argc, char **argv)
{
    const char *plugin = NULL;
    int dlopen_iterations = 200, i;
    struct mod_info main_info[8];
    const char *names[8];

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seccomp") == 0 && i + 1 < argc) {
            int err = strcmp(argv[i + 1], "eperm") == 0 ? EPERM : ENOSYS;
            char **rest = argv + i + 2;
            if (deny_rseq(err) != 0) {
                perror("seccomp");
                return 2;
            }
            /* re-exec without the option: the libc starts under the filter */
            memmove(argv + i, rest, (size_t)(argc - i - 1) * sizeof(char *));
            execv("/proc/self/exe", argv);
            perror("execv");
            return 2;
        } else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) {
            plugin = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            nthreads = atoi(argv[++i]);
            if (nthreads < 1 || nthreads > MAX_THREADS)
                nthreads = 16;
        } else if (strcmp(argv[i], "--adds") == 0 && i + 1 < argc) {
            adds_per_thread = atol(argv[++i]);
        } else if (strcmp(argv[i], "--dlopen-iterations") == 0 && i + 1 < argc) {
            dlopen_iterations = atoi(argv[++i]);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    nslots = (int)sysconf(_SC_NPROCESSORS_CONF);
    if (nslots < 1)
        nslots = 1;
    sched_getaffinity(0, sizeof(allowed), &allowed);
    for (i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &allowed))
            allowed_cpus[ncpus_allowed++] = i;

    for (i = 0; i < NMODULES; i++)
        names[i] = modules[i].name;
    print_libc();
    collect_owners(main_info);
    print_info("main", main_info, NMODULES, names);
    printf("{\"event\": \"features\", \"node_id\": %d, \"mm_cid\": %d, \"node\": %d, \"mm_cid_value\": %d}\n",
           m_node_id_available(), m_mm_cid_available(), m_current_node_id(), m_current_mm_cid());

    pinned_check();
    count_scenario();
    fork_scenario();
    if (plugin)
        dlopen_scenario(plugin, dlopen_iterations);

    for (i = 0; i < NMODULES; i++)
        modules[i].info(&main_info[i]);
    print_info("end", main_info, NMODULES, names);
    printf("{\"event\": \"done\", \"ok\": %s}\n", all_ok ? "true" : "false");
    return all_ok ? 0 : 1;
}
