/* CHECK(cond, printf-args): print "FAIL: ..." (with the line) and count the
 * failure; the test programs end with "OK" only when `failures` is 0. */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H
#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                          \
    do {                                          \
        if (!(cond)) {                            \
            printf("FAIL: " __VA_ARGS__);         \
            printf(" [line %d]\n", __LINE__);     \
            fflush(stdout);                       \
            failures++;                           \
        }                                         \
    } while (0)

#endif
