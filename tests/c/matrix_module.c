/* One "module" of the coexistence test: compiled once per prefix, into the
 * executable (prefix m), into shared libraries (a, b) or into a dlopen'd
 * plugin (c). MOD is the prefix, MOD_HEADER its generated header. */
#include MOD_HEADER

#include <stdint.h>
#include <stdlib.h>

#include "matrix_module.h"

#define CAT_(x, y) x##y
#define CAT(x, y) CAT_(x, y)
#define API(name) CAT(MOD, CAT(_, name))
#define SELF(name) CAT(MOD, CAT(_mod_, name))

void SELF(info)(struct mod_info *out)
{
    API(register_current_thread)();
    out->owner = API(owner)();
    out->err = API(registration_errno)();
    out->cpu = API(current_cpu)();
    out->raw = API(current_cpu_raw)();
    out->registrations = API(registration_count)();
    out->has_area = API(area)() != NULL;
}

int SELF(cpu)(void)
{
    return API(current_cpu)();
}

int SELF(raw_cpu)(void)
{
    return API(current_cpu_raw)();
}

/* Add 1 `n` times to per-CPU slots, half through the counter helper and half
 * through cmpxchg loops; 0 when the slots add up exactly. */
int SELF(count)(intptr_t *slots, int nslots, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        if (i & 1) {
            API(percpu_counter_add)(slots, MATRIX_STRIDE, 1);
        } else {
            for (;;) {
                int cpu = API(current_cpu)();
                intptr_t *slot = (intptr_t *)((char *)slots + (size_t)cpu * MATRIX_STRIDE);
                intptr_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
                if (cpu >= nslots)
                    abort();
                if (API(percpu_cmpxchg)(slot, old, old + 1, cpu) == 0)
                    break;
            }
        }
    }
    return 0;
}

void SELF(add)(intptr_t *slots)
{
    API(percpu_counter_add)(slots, MATRIX_STRIDE, 1);
}
