/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A program that knows nothing about cprkit (no libcprkit, no VFIO): it
 * opens /dev/null without O_CLOEXEC (as many programs do), prints
 * "plain-app started pid=P arg=A fd=N" and sleeps until SIGTERM. Under
 * `cpr-exec run` it runs with the LD_PRELOAD shim, which serves its control
 * socket: the host tests upgrade it with nothing to preserve but the
 * socket. With "selfexec" as the last argument it execs itself once with
 * "selfexec-done" (the shim turns that into an update). With "child-env"
 * a forked child execs `env`, whose output shows what a child inherits.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    stop = 1;
}

int main(int argc, char **argv)
{
    const char *arg = argc > 1 ? argv[argc - 1] : "";

    signal(SIGTERM, on_term);
    printf("plain-app started pid=%d arg=%s fd=%d\n", (int)getpid(), arg,
           open("/dev/null", O_RDONLY));
    fflush(stdout);
    if (strcmp(arg, "selfexec") == 0) {
        char *const args[] = {argv[0], "selfexec-done", NULL};

        execv("/proc/self/exe", args);
        printf("plain-app execv failed\n");
        fflush(stdout);
    }
    if (strcmp(arg, "child-env") == 0) {
        pid_t child = fork();

        if (child == 0) {
            char *const args[] = {"env", NULL};

            execvp("env", args);
            _exit(127);
        }
        waitpid(child, NULL, 0);
        printf("plain-app child done\n");
        fflush(stdout);
    }
    while (!stop)
        pause();
    return 0;
}
