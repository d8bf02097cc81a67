/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A program that links libcprkit (the core, not the control library) and
 * manages its own state: `cpr-exec run` must not put the LD_PRELOAD shim
 * beside it. Prints "core-app started pid=P" and sleeps until SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cprkit/cprkit.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(void)
{
    cprkit_ctx *ctx = NULL;

    if (cprkit_new(&ctx) < 0)
        return 1;
    signal(SIGTERM, on_term);
    printf("core-app started pid=%d\n", (int)getpid());
    fflush(stdout);
    while (!stop)
        pause();
    cprkit_free(ctx);
    return 0;
}
