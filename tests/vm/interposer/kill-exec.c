/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kill-exec.so: LD_PRELOAD interposer that SIGKILLs the reference workload
 * inside its update window, in execve(): after libcprkit suspended the DMA
 * mappings, wrote the state blob and told the keeper about the exec, before
 * the kernel replaces the image (tests/vm/ops/ops-keeper.c).
 *
 * Armed by a file: $CPRKIT_KILL_EXEC names it; the first execve() of a
 * process called cprkit-workload (argv[0]) that finds it removes it and
 * kills itself. Any other execve (the keeper's own, a second attempt) goes
 * through.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int is_workload(void)
{
    char cmd[4096] = "";
    FILE *f = fopen("/proc/self/cmdline", "re");
    const char *base;

    if (!f)
        return 0;
    if (!fgets(cmd, sizeof(cmd), f))
        cmd[0] = 0;
    fclose(f);
    base = strrchr(cmd, '/');
    base = base ? base + 1 : cmd;
    return strcmp(base, "cprkit-workload") == 0;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    static execve_fn real;
    const char *trigger = getenv("CPRKIT_KILL_EXEC");

    if (trigger && is_workload() && unlink(trigger) == 0)
        raise(SIGKILL);
    if (!real)
        real = (execve_fn)dlsym(RTLD_NEXT, "execve");
    return real(path, argv, envp);
}
