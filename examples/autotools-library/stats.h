/* libstats: event counters kept per CPU, so threads on different CPUs never
 * share a cache line. The library is built with hidden visibility: the four
 * functions below are its whole ABI (STATS_API), and the rseq-gen code it
 * carries (prefix "st") stays inside it. */
#ifndef STATS_H
#define STATS_H

#define STATS_API __attribute__((visibility("default")))

/* Counts n events from the calling thread; returns the CPU of the last one. */
STATS_API int stats_count(long n);
/* All events counted so far, over every CPU. */
STATS_API long long stats_total(void);
/* Number of per-CPU slots (possible CPUs). */
STATS_API int stats_cpus(void);
/* Who registered the calling thread's rseq area: "glibc", "self", "shared"
 * or "none" (then the counter runs on its fallback). */
STATS_API const char *stats_rseq_owner(void);

#endif
