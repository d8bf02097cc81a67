/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The keeper: `cpr-exec run`'s parent process (keeper.c, docs/keeper.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct keeper_options {
    /* Restart a committed program that dies (signal, non-zero exit). */
    bool restart;
    /* Delay before a crash restart; doubled for each further restart
     * within interval_ms, up to max_delay_ms. */
    uint32_t delay_ms;
    uint32_t max_delay_ms;
    /* Give up after more than burst restarts within interval_ms. */
    unsigned burst;
    uint32_t interval_ms;
    /* A restarted program must commit within this (an update's deadline
     * comes with the update). */
    uint32_t commit_timeout_ms;
    /* Print {"socket","pid","keeper_pid",...} (json) or the socket path
     * once the program's pid is known. */
    const char *socket_path;
    const char *preload;
    bool json;
};

/* Runs prog (argv, the environment as it is now) as a child and keeps it
 * until it exits for good. Returns the exit status for cpr-exec. */
int keeper_run(const char *prog, char **argv, const struct keeper_options *o);
