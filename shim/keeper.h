/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The keeper: `cpr-exec run`'s parent process (keeper.c, docs/keeper.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

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
    /* Also keep the committed state in systemd's fd store (FDSTORE=1), and
     * take it back from there at start (LISTEN_FDS). */
    bool fd_store;
};

/* A state the keeper can start a binary with (keeper.c). */
struct kept {
    GArray *fds;     /* int: our dups */
    GArray *targets; /* int: the number each has in the program */
    int blob_fd;     /* -1 while only fds arrived */
    char *path;      /* what to exec, with argv */
    char **argv;
    uint64_t generation;
};
void kept_init(struct kept *k);
void kept_clear(struct kept *k);
bool kept_valid(const struct kept *k);

/* keeper-fdstore.c: the committed state in systemd's fd store. */
struct fdstore {
    uint64_t seq;     /* of the last push */
    GPtrArray *names; /* FDNAMEs of it, in the store now */
};
void fdstore_init(struct fdstore *st);
void fdstore_free(struct fdstore *st);
/* Replaces what the store holds with k (run by pid). Returns 0 or a
 * negative errno. */
int fdstore_push(struct fdstore *st, const struct kept *k, int pid);
/* Removes what this keeper stored (a clean stop, or giving up). */
void fdstore_drop(struct fdstore *st);
/* Takes the newest complete state from LISTEN_FDS/LISTEN_FDNAMES (when
 * LISTEN_PID is us) into ret and unsets the variables. Returns 1 if one
 * was found, 0 if none, < 0 on error (-EBUSY: the program the previous
 * keeper ran still runs). */
int fdstore_recover(struct fdstore *st, struct kept *ret);

/* Runs prog (argv, the environment as it is now) as a child and keeps it
 * until it exits for good. Returns the exit status for cpr-exec. */
int keeper_run(const char *prog, char **argv, const struct keeper_options *o);
