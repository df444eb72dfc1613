/* What `rseq-gen probe` gathers, gathered in C, for a process that cannot
 * run Python: tests/test_probe.py builds this for aarch64 (static glibc),
 * runs it under qemu-user and feeds the printed record to
 * rseq_gen.probe.detect_emulator() and decide(); tests/test_kernel7.py runs
 * it in the Linux 7.x guest. tests/test_probe.py also checks, on the host,
 * that it finds what rseq_gen.probe.gather() finds. Output: "key=value"
 * lines, then the raw texts between "--- name" markers. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <gnu/libc-version.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

#if defined(__x86_64__) || defined(__i386__)
#define SELFVIEW_RSEQ_SIG 0x53053053u
#elif defined(__aarch64__) && !defined(__AARCH64EB__)
#define SELFVIEW_RSEQ_SIG 0xd428bc00u
#else
#error "add this architecture's RSEQ_SIG"
#endif

static unsigned long max_ul(unsigned long a, unsigned long b)
{
    return a > b ? a : b;
}

/* rseq_gen.probe.live_registration_len over registration_candidates(). */
static long registration_len(void *area, unsigned long feature, unsigned long align, unsigned int size)
{
    unsigned long lens[8], ext = max_ul(feature, 32), al = max_ul(align, 32), tmp;
    int n = 0, i, j;
    lens[n++] = 32;
    lens[n++] = max_ul(size, 32);
    lens[n++] = (ext + al - 1) / al * al;
    lens[n++] = 64;
    lens[n++] = 128;
    lens[n++] = 256;
    if (feature > 32)
        lens[n++] = feature;
    for (i = 0; i < n; i++)  /* sorted, as the Python side tries them */
        for (j = i + 1; j < n; j++)
            if (lens[j] < lens[i]) {
                tmp = lens[i];
                lens[i] = lens[j];
                lens[j] = tmp;
            }
    for (i = 0; i < n; i++) {
        if (i > 0 && lens[i] == lens[i - 1])
            continue;
        if (syscall(SYS_rseq, area, lens[i], 0, SELFVIEW_RSEQ_SIG) == 0) {
            syscall(SYS_rseq, area, lens[i], 1, SELFVIEW_RSEQ_SIG);
            return -1;
        }
        if (errno == EBUSY)
            return (long)lens[i];
    }
    return 0;
}

static void dump(const char *name, const char *path)
{
    char buf[4096];
    size_t n;
    FILE *f = fopen(path, "r");
    printf("--- %s\n", name);
    if (f == NULL)
        return;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
}

int main(void)
{
    struct utsname u;
    long r;
    const int32_t *area;
    uname(&u);
    errno = 0;
    r = syscall(SYS_rseq, NULL, 0, 0, 0);
    printf("machine=%s\n", u.machine);
    printf("kernel_release=%s\n", u.release);
    printf("rseq_errno=%d\n", r == 0 ? 0 : errno);
    printf("at_rseq_feature_size=%lu\n", getauxval(27));
    printf("at_rseq_align=%lu\n", getauxval(28));
    printf("at_secure=%lu\n", getauxval(AT_SECURE));
    printf("libc_version=%s\n", gnu_get_libc_version());
    printf("rseq_size=%u\n", __rseq_size);
    printf("rseq_offset=%ld\n", (long)__rseq_offset);
    area = (const int32_t *)((char *)__builtin_thread_pointer() + __rseq_offset);
    printf("area_cpu_id_start=%d\n", (int)area[0]);
    printf("area_cpu_id=%d\n", (int)area[1]);
    printf("sched_getcpu=%d\n", sched_getcpu());
    if (__rseq_size != 0 && area[1] >= 0) {
        printf("area_flags=%u\n", (unsigned int)area[4]);
        printf("registration_len=%ld\n", registration_len((void *)area, getauxval(27), getauxval(28),
                                                           __rseq_size));
    }
    errno = 0;
    r = prctl(79 /* PR_RSEQ_SLICE_EXTENSION */, 1 /* GET */, 0, 0, 0);
    if (r >= 0)
        printf("slice_prctl=%ld\n", r);
    else
        printf("slice_errno=%d\n", errno);
    fflush(stdout);
    dump("cpuinfo", "/proc/cpuinfo");
    dump("maps", "/proc/self/maps");
    dump("thread-self-maps", "/proc/thread-self/maps");
    dump("status", "/proc/self/status");
    return 0;
}
