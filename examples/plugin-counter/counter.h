/* Interface between plugin-counter and its plugin. */
#ifndef PLUGIN_COUNTER_H
#define PLUGIN_COUNTER_H

#include <stdint.h>

/* The plugin adds `n` events from the calling thread to its per-CPU counter
 * and returns the CPU it last counted on. */
typedef int (*plugin_count_fn)(long n);
/* Copies the plugin's per-CPU totals into out[0..max) and returns the number
 * of CPUs it counts for. */
typedef int (*plugin_totals_fn)(intptr_t *out, int max);

#define PLUGIN_COUNT_SYMBOL "plugin_count"
#define PLUGIN_TOTALS_SYMBOL "plugin_totals"

#endif
