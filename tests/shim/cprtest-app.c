/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small program that live-updates with cprkit and takes its orders from
 * the control endpoint, as an application would (public API only). It
 * preserves a memfd holding a counter and an eventfd, and serves until
 * SIGTERM.
 *
 *   cprtest-app [--socket PATH] [--mode MODE] [--lockdown] [--seed-events N]
 *
 * MODE, acted on when the process was started by an update (not by the
 * keeper's rollback to it):
 *   normal   reclaim, commit, mark serving (default)
 *   veto     reclaim, then roll back: "health check failed (veto mode)"
 *   hang     reclaim and never commit (the client times out)
 *   slow     reclaim, commit, sleep 300 ms, then mark serving
 *   listen-after-commit  reclaim, commit before opening the control
 *            endpoint (its preserved sockets are claimed after the
 *            commit; docs/api.md)
 *   crash             SIGSEGV right after cprkit_load_incoming()
 *   abort-after-claim claim half the fds (the memfd), then abort()
 *   exit1-early       exit(1) before cprkit_load_incoming()
 *   exit0-early       exit(0) before it: the wrong program, which reads
 *                     the format (/bin/true is refused before the exec)
 * The last four are for the keeper (tests/shim/test-keeper.c).
 *
 * --seed-events N: a fresh start (not an update, not a restart) writes N
 * into the new eventfd, and the eventfd is never read: a test sees in
 * /proc/PID/fdinfo that a later process has the same object (a new one
 * would hold 0).
 */
#include <errno.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cprkit/cprkit-control.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    stop = 1;
}

static void log_stderr(void *userdata, int priority, const char *msg)
{
    fprintf(stderr, "cprtest-app[%d] <%d> %s\n", (int)getpid(), priority, msg);
}

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "cprtest-app[%d] FATAL: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Dies by sig without a core dump, so that the keeper's cause is the
 * plain "killed by SIGx" whatever the system's core settings. */
static void die_by(int sig)
{
    struct rlimit none = {0, 0};

    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0);
    /* Not a sanitizer's handler: it would report and exit(1). */
    signal(sig, SIG_DFL);
    if (sig == SIGABRT)
        abort();
    raise(sig);
    _exit(99); /* not reached */
}

static int upgrade(void *userdata, cprkit_ctx *ctx, const char *binary,
                   char *const argv[])
{
    /* A real program would stop taking work here. */
    return cprkit_exec(ctx, binary, argv, NULL);
}

static int find_or_create(cprkit_ctx *ctx, const char *name,
                          enum cprkit_fd_type type)
{
    int fd = cprkit_fd_find(ctx, name, 0, type);

    if (fd >= 0)
        return fd;
    if (fd != -ENOENT)
        cprkit_rollback(ctx, cprkit_last_error(ctx)), die("%s", cprkit_last_error(ctx));
    if (type == CPRKIT_FD_MEMFD) {
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, 4096) < 0)
            die("memfd: %m");
    } else {
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            die("eventfd: %m");
    }
    if (cprkit_fd_save(ctx, name, 0, fd) < 0)
        die("%s", cprkit_last_error(ctx));
    return fd;
}

int main(int argc, char **argv)
{
    const char *socket = NULL, *mode = "normal", *blocker = NULL;
    bool lockdown = false;
    uint64_t seed_events = 0;
    cprkit_control *control;
    cprkit_ctx *ctx;
    uint64_t *counter;
    int mem, ev, r;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket = argv[++i];
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else if (strcmp(argv[i], "--blocker") == 0 && i + 1 < argc)
            blocker = argv[++i];
        else if (strcmp(argv[i], "--lockdown") == 0)
            lockdown = true;
        else if (strcmp(argv[i], "--seed-events") == 0 && i + 1 < argc)
            seed_events = strtoull(argv[++i], NULL, 10);
        else
            die("unknown argument %s", argv[i]);
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    /* Started by an update or by the keeper: a state is waiting. A
     * rollback runs the previous command line, so its mode is not this. */
    if (strcmp(mode, "exit1-early") == 0 && getenv("CPRKIT_STATE_FD"))
        exit(1);
    if (strcmp(mode, "exit0-early") == 0 && getenv("CPRKIT_STATE_FD"))
        exit(0);
    if (cprkit_new(&ctx) < 0)
        die("cprkit_new");
    cprkit_set_log_fn(ctx, log_stderr, NULL);
    r = cprkit_load_incoming(ctx);
    if (r < 0) {
        cprkit_rollback(ctx, cprkit_last_error(ctx));
        die("load: %s", cprkit_last_error(ctx));
    }
    if (cprkit_is_incoming(ctx) && !cprkit_is_rollback(ctx)) {
        if (strcmp(mode, "crash") == 0)
            die_by(SIGSEGV);
        if (strcmp(mode, "abort-after-claim") == 0) {
            /* The memfd is claimed; the eventfd and the control socket
             * are not. */
            if (cprkit_fd_find(ctx, "data", 0, CPRKIT_FD_MEMFD) < 0)
                die("claim: %s", cprkit_last_error(ctx));
            die_by(SIGABRT);
        }
    }

    if (blocker && cprkit_blocker_add(ctx, "app", blocker) < 0)
        die("blocker: %s", cprkit_last_error(ctx));
    mem = find_or_create(ctx, "data", CPRKIT_FD_MEMFD);
    ev = find_or_create(ctx, "events", CPRKIT_FD_EVENTFD);
    if (seed_events && !cprkit_is_incoming(ctx) &&
        eventfd_write(ev, seed_events) < 0)
        die("eventfd write: %m");
    counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
    if (counter == MAP_FAILED)
        die("mmap: %m");
    /* Also in a binary started by a rollback: it commits first too. */
    if (strcmp(mode, "listen-after-commit") == 0 && cprkit_is_incoming(ctx) &&
        cprkit_commit(ctx) < 0) {
        cprkit_rollback(ctx, cprkit_last_error(ctx));
        die("commit: %s", cprkit_last_error(ctx));
    }
    if (cprkit_control_listen(ctx, socket, &control) < 0)
        die("control: %s", cprkit_last_error(ctx));
    cprkit_control_set_upgrade_fn(control, upgrade, NULL);

    if (cprkit_is_incoming(ctx)) {
        if (strcmp(mode, "veto") == 0 && !cprkit_is_rollback(ctx)) {
            cprkit_rollback(ctx, "health check failed (veto mode)");
            die("rollback: %s", cprkit_last_error(ctx));
        }
        if (strcmp(mode, "hang") == 0)
            for (;;)
                pause();
        if (cprkit_commit(ctx) < 0) {
            cprkit_rollback(ctx, cprkit_last_error(ctx));
            die("commit: %s", cprkit_last_error(ctx));
        }
        if (strcmp(mode, "slow") == 0)
            usleep(300 * 1000);
    }
    if (cprkit_control_mark_serving(control) < 0)
        die("mark serving: %s", cprkit_last_error(ctx));
    if (lockdown &&
        cprkit_lockdown(ctx, CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP,
                        UINT64_C(1) << CAP_IPC_LOCK) < 0)
        die("lockdown: %s", cprkit_last_error(ctx));

    (*counter)++;
    fprintf(stderr, "cprtest-app[%d] serving, generation %llu, started %llu "
                    "times\n",
            (int)getpid(), (unsigned long long)cprkit_generation(ctx),
            (unsigned long long)*counter);
    while (!stop) {
        struct pollfd p[2] = {{.fd = cprkit_control_fd(control), .events = POLLIN},
                              {.fd = ev, .events = POLLIN}};
        uint64_t v;

        if (poll(p, seed_events ? 1 : 2, 500) < 0 && errno != EINTR)
            die("poll: %m");
        if (p[1].revents & POLLIN && read(ev, &v, sizeof(v)) < 0)
            die("eventfd read: %m");
        if (cprkit_control_dispatch(control) < 0)
            die("dispatch: %s", cprkit_last_error(ctx));
    }
    munmap(counter, 4096);
    cprkit_control_free(control);
    close(mem);
    close(ev);
    cprkit_free(ctx);
    return 0;
}
