/*
 * Test-only: every way of starting a program or a process, tried once each,
 * for `nfkit __confinement-test spawn`. nfkit itself holds no such code: a
 * test loads this library into nfkit with LD_PRELOAD, and the hidden entry
 * finds `nfkit_spawn_probe` with dlsym and calls it after the seccomp filter
 * is in force (a preloaded library's constructors would run before it).
 *
 *   cc -shared -fPIC -O2 -o spawn-probe.so tests/support/spawn-probe.c
 *
 * Each attempt's result: 0 = it started (a child only calls _exit), else the
 * errno the kernel answered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435 /* the same number on every architecture */
#endif

struct nfkit_attempt {
    const char *call;
    int err;
};

static int forked(long r)
{
    int status;

    if (r == 0)
        _exit(0); /* the child of a start the filter failed to refuse */
    if (r < 0)
        return errno;
    waitpid((pid_t)r, &status, 0);
    return 0;
}

static int ran(long r)
{
    return r < 0 ? errno : 0;
}

int nfkit_spawn_probe(struct nfkit_attempt *out, int max)
{
    static char *const argv[] = { "/bin/true", NULL };
    static char *const envp[] = { NULL };
    uint64_t clone_args[8] = { 0 };
    pid_t pid;
    int n = 0, e;

#define TRIED(name, result)                                                  \
    do {                                                                     \
        int r_ = (result);                                                   \
        if (n < max) {                                                       \
            out[n].call = (name);                                            \
            out[n].err = r_;                                                 \
            n++;                                                             \
        }                                                                    \
    } while (0)

    TRIED("execve", ran(execve("/bin/true", argv, envp)));
    TRIED("execveat", ran(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, envp, 0)));
    TRIED("fork (glibc: clone)", forked(fork()));
#ifdef __x86_64__
    TRIED("fork", forked(syscall(SYS_fork)));
    /* A vfork child shares this memory; it only calls _exit. */
    TRIED("vfork", forked(syscall(SYS_vfork)));
    /* The x32 ABI's execve (520 | 0x40000000): a kernel without x32 and
     * without the filter answers ENOSYS; the filter answers EPERM. */
    TRIED("x32 execve", forked(syscall(0x40000000 | 520, "/bin/true", argv, envp)));
#endif
    TRIED("clone without CLONE_THREAD", forked(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0)));
    clone_args[4] = SIGCHLD; /* struct clone_args v0: exit_signal */
    TRIED("clone3", forked(syscall(SYS_clone3, clone_args, sizeof clone_args)));
    e = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, envp);
    TRIED("posix_spawn", e ? e : forked(pid));
    return n;
}
