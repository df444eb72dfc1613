/* What `rseq-gen probe` gathers, gathered in C, for a process that cannot
 * run Python: tests/test_probe.py builds this for aarch64 (static glibc),
 * runs it under qemu-user and feeds the printed record to
 * rseq_gen.probe.detect_emulator() and decide(). Output: "key=value" lines,
 * then the raw texts between "--- name" markers. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <gnu/libc-version.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

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
    fflush(stdout);
    dump("cpuinfo", "/proc/cpuinfo");
    dump("maps", "/proc/self/maps");
    dump("thread-self-maps", "/proc/thread-self/maps");
    dump("status", "/proc/self/status");
    return 0;
}
