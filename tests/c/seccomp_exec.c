/* seccomp_exec ERRNO PROGRAM [ARGS...]: install a seccomp filter that makes
 * rseq(2) fail with ERRNO (ENOSYS or EPERM, by name or number) and exec
 * PROGRAM, so its libc meets the filter at startup: what an old container
 * profile or a sandbox does. Other system calls and other ABIs pass. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__i386__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_I386
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp_exec: add this architecture's AUDIT_ARCH"
#endif

int main(int argc, char **argv)
{
    int err;
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENOSYS|EPERM|<errno> PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "ENOSYS") == 0)
        err = ENOSYS;
    else if (strcmp(argv[1], "EPERM") == 0)
        err = EPERM;
    else
        err = atoi(argv[1]);
    if (err <= 0 || err > 4095) {
        fprintf(stderr, "%s: bad errno %s\n", argv[0], argv[1]);
        return 2;
    }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rseq, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        perror("prctl(PR_SET_NO_NEW_PRIVS)");
        return 2;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("prctl(PR_SET_SECCOMP)");
        return 2;
    }
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
