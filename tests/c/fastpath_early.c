/* The fast paths before and after the module knows its area.
 *
 * A constructor of priority 101 runs before the generated module's own
 * constructor (default priority) when both are in the executable: it calls
 * current_cpu_raw, the counter add, current_cpu (plain and _at), area and
 * the mm_cid paths (index, counter, an operation) first. Then THREADS
 * threads add EVENTS each (plain and _at forms, and on the mm_cid slots), and
 * main checks both totals exactly and the areas the fast paths read. Prints
 * one key=value line; exit 0 when every check holds.
 *
 *   fastpath_early THREADS EVENTS */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_rseq.h"

#define STRIDE 64
#define MAX_CPUS 1024

static intptr_t slots[MAX_CPUS * STRIDE / sizeof(intptr_t)];
static intptr_t mm_slots[MAX_CPUS * STRIDE / sizeof(intptr_t)];
static long ncpu, events;
static int early_raw = -100, early_counter = -100, early_cpu = -100, early_area_ok = -1, early_mmcid = -100;
static unsigned long early_registrations;
#ifdef FP__MMCID_THREAD_WORD
static ptrdiff_t early_thread_word;  /* executable code: the thread's mm_cid word, early */
#endif
static int bad_cpu;

static int cpu_ok(int cpu)
{
    return cpu >= 0 && cpu < ncpu;
}

/* One P_mmcid_add on the slot of the thread's index, retried until done:
 * the index the P_mmcid_* forms use must be one the operation accepts. */
static int mmcid_add_one(void)
{
    for (;;) {
        int cid = fp_mmcid_index();
        if (!cpu_ok(cid))
            return -1;
        if (fp_mmcid_add(&mm_slots[cid * (STRIDE / sizeof(intptr_t))], 1, cid) == 0)
            return cid;
    }
}

__attribute__((constructor(101))) static void early(void)
{
#ifdef FP__MMCID_THREAD_WORD
    early_thread_word = fp__exe_mmcid_thread_offset;  /* its initial value: the null area */
#endif
    ncpu = sysconf(_SC_NPROCESSORS_CONF);
    early_registrations = fp_registration_count();
    early_raw = fp_current_cpu_raw();
    early_counter = fp_percpu_counter_add(slots, STRIDE, 1);
    early_cpu = fp_current_cpu();
    if (!cpu_ok(fp_current_cpu_at(fp_area_offset())))
        early_cpu = -3;
    struct fp_rseq_area *area = fp_area();
    early_area_ok = area == NULL || __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED) >= 0;
    early_mmcid = cpu_ok(fp_mmcid_counter_add(mm_slots, STRIDE, 1)) ? mmcid_add_one() : -2;
}

static void *worker(void *arg)
{
    (void)arg;
    ptrdiff_t off = fp_area_offset();  /* valid in this thread: the _at forms */
    for (long i = 0; i < events; i++) {
        int cpu = i & 1 ? fp_percpu_counter_add(slots, STRIDE, 1)
                        : fp_percpu_counter_add_at(off, slots, STRIDE, 1);
        int cid = i & 1 ? fp_mmcid_counter_add(mm_slots, STRIDE, 1) : mmcid_add_one();
        if (!cpu_ok(cpu) || !cpu_ok(fp_current_cpu()) || !cpu_ok(fp_current_cpu_at(off)) || !cpu_ok(cid))
            __atomic_store_n(&bad_cpu, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int threads = atoi(argv[1]);
    events = atol(argv[2]);
    if (threads < 1 || threads > 64 || ncpu < 1 || ncpu > MAX_CPUS)
        return 2;
    pthread_t tid[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, worker, NULL) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);

    long total = 0, mm_total = 0;
    for (long c = 0; c < ncpu; c++) {
        total += slots[c * (STRIDE / sizeof(intptr_t))];
        mm_total += mm_slots[c * (STRIDE / sizeof(intptr_t))];
    }
    long expected = 1 + (long)threads * events;
    long mm_expected = 2 + (long)threads * events;

    /* After the constructor: a registered area is what P_area returns, and
     * the raw read agrees with it. */
    struct fp_rseq_area *area = fp_area();
    int raw = fp_current_cpu_raw();
    int area_ok = strcmp(fp_owner(), "none") == 0
                      ? area == NULL
                      : area != NULL && raw >= 0 && raw == area->cpu_id;
    /* Executable code reads the word the header defines; the module must have
     * moved it to the area it found (or left it on the null area: none). */
    int word_ok = 1;
#ifdef FP__AREA_OFFSET_AT_LOAD
    if (area != NULL && fp_rseq_area_offset != 0)  /* 0: found per thread (dynamic TLS) */
        word_ok = (char *)area - (char *)fp__arch_thread_pointer() == fp__exe_area_offset
                  && fp__exe_area_offset == fp_rseq_area_offset
                  /* the mm_cid word: the same area when the kernel maintains mm_cid */
                  && (fp_mm_cid_available() ? fp__exe_mmcid_area_offset == fp__exe_area_offset
                                             && fp_rseq_mmcid_area_offset == fp_rseq_area_offset
                                            : fp_rseq_mmcid_area_offset == 0);
#endif
    /* The kernel's mm_cid is the index the P_mmcid_* forms use, when it is maintained. */
    int mm_ok = fp_mm_cid_available() ? fp_kernel_mm_cid() == fp_mmcid_index() : fp_kernel_mm_cid() == -1;
    /* Executable code's P_mmcid_* operations read a word per thread: once
     * the thread read its index, the mm_cid area while the thread is
     * registered there, else the null area (whose mm_cid no index equals).
     * Unregistering (a no-op where glibc owns the area) sends it back to the
     * null area at the next index read; operations then take the fallback
     * and still count exactly. */
    const char *owner = fp_owner();  /* before the unregistration below */
    int thread_word_ok = 1;
#ifdef FP__MMCID_THREAD_WORD
#define FP_THREAD_WORD_EXPECTED()                                                              \
    (fp_mm_cid_available() && fp_current_cpu_raw() >= 0 && fp_rseq_mmcid_area_offset != 0     \
         ? fp__exe_mmcid_area_offset : fp__exe_null_area_offset_direct)
    thread_word_ok = early_thread_word == fp__exe_null_area_offset_direct
                     && fp__exe_mmcid_thread_offset == FP_THREAD_WORD_EXPECTED();
    fp_unregister_current_thread();
    int after_unregister = mmcid_add_one();
    mm_expected++;
    thread_word_ok = thread_word_ok && cpu_ok(after_unregister)
                     && (fp_current_cpu_raw() >= 0 || fp__exe_mmcid_thread_offset == fp__exe_null_area_offset_direct);
    (void)fp_mmcid_index();  /* the module may have registered the thread again */
    thread_word_ok = thread_word_ok && fp__exe_mmcid_thread_offset == FP_THREAD_WORD_EXPECTED();
    mm_total = 0;
    for (long c = 0; c < ncpu; c++)
        mm_total += mm_slots[c * (STRIDE / sizeof(intptr_t))];
#endif
    int ok = total == expected && !bad_cpu && (early_raw == -1 || cpu_ok(early_raw))
             && cpu_ok(early_counter) && cpu_ok(early_cpu) && early_area_ok == 1 && area_ok
             && word_ok && mm_total == mm_expected && cpu_ok(early_mmcid) && mm_ok && thread_word_ok;
    printf("owner=%s total=%ld expected=%ld mm_total=%ld mm_expected=%ld early_raw=%d early_counter=%d "
           "early_cpu=%d early_mmcid=%d early_registrations=%lu early_area_ok=%d area_ok=%d word_ok=%d "
           "mm_ok=%d thread_word_ok=%d bad_cpu=%d ok=%d\n",
           owner, total, expected, mm_total, mm_expected, early_raw, early_counter, early_cpu,
           early_mmcid, early_registrations, early_area_ok, area_ok, word_ok, mm_ok, thread_word_ok, bad_cpu, ok);
    return ok ? 0 : 1;
}
