#ifndef MATRIX_MODULE_H
#define MATRIX_MODULE_H

#include <stdint.h>

#define MATRIX_STRIDE 64 /* one cache line per CPU slot */

struct mod_info {
    const char *owner;
    int err;
    int cpu;
    int raw;
    unsigned long registrations;
    int has_area;
};

#define MATRIX_DECLARE(p)                                                  \
    void p##_mod_info(struct mod_info *out);                               \
    int p##_mod_cpu(void);                                                 \
    int p##_mod_raw_cpu(void);                                             \
    int p##_mod_count(intptr_t *slots, int nslots, long n);                \
    void p##_mod_add(intptr_t *slots);

#endif
