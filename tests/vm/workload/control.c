/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Operator mode (--control): the workload as a service that an operator
 * upgrades with `cpr-exec upgrade` (docs/operations.md, "Walk-through: the
 * reference workload").
 *
 * Start-up (fresh or incoming) is main.c's; then this file opens the
 * control endpoint (socket path from $CPRKIT_CONTROL_SOCKET, which
 * `cpr-exec run` sets), commits an incoming update after the usual checks
 * (update_incoming(): no reset, no corruption, no lost interrupt, fd count,
 * VmLck), tells the endpoint it serves, and serves: a round of DMA and
 * interrupts on every engine, then up to 100 ms waiting for a request,
 * until SIGTERM or SIGINT.
 *
 * An upgrade request is handled by upgrade(): work in flight, sections,
 * cprkit_exec() of the requested binary with the workload's own arguments
 * plus --control. The operator may add --fail-health-check: the new image
 * then reclaims everything, fails its health check and rolls back. Where
 * the binary is linked with tests/vm/interposer/act-wrap.c (the
 * ops-keeper-faults VM test), the operator may instead add one of
 * --fail-crash-after-load, --fail-abort-mid-remap, --fail-hang,
 * --fail-exit-early: the new image dies (or hangs until the keeper's
 * commit deadline) at that point, and the keeper of `cpr-exec run` starts
 * this binary again with the update's state; it then checks like any
 * rollback (no reset, nothing lost) and answers the operator. These go to
 * the new image in $WL_ACT_ENV, not in argv, so the restarted old image
 * (the keeper's environment) never sees them. Arguments the running image
 * already has are accepted and ignored (cpr-exec sends the current ones by
 * default); anything else refuses the update before anything changes.
 *
 * Stopping: SIGTERM or SIGINT (read from a signalfd, so a signal never
 * interrupts a DMA wait) ends the loop after the current round; the
 * workload serves one last round, closes the endpoint (the socket file is
 * removed) and exits 0 if every check of every image passed, else 1.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cprkit/cprkit-control.h>

#include "workload.h"

static bool own_argument(const struct workload *w, const char *arg)
{
    for (int i = 1; i < w->argc; i++)
        if (!strcmp(w->argv[i], arg))
            return true;
    return false;
}

/* The operator's fault arguments. */
static const struct {
    const char *arg;
    enum fault fault;
} fail_args[] = {
    { WL_FAIL_HEALTH_CHECK, FAULT_VETO },
    { WL_FAIL_CRASH_AFTER_LOAD, FAULT_CRASH_AFTER_LOAD },
    { WL_FAIL_ABORT_MID_REMAP, FAULT_ABORT_MID_REMAP },
    { WL_FAIL_HANG, FAULT_HANG },
    { WL_FAIL_EXIT_EARLY, FAULT_EXIT_EARLY },
};

/* WL_ACT_ENV=... for a keeper-side fault: what act-wrap.c does. */
static void act_env(const struct workload *w, enum fault f, char *buf,
                    size_t size)
{
    unsigned maps = 0;

    for (unsigned i = 0; i < w->nengines; i++)
        maps += w->engines[i].nmaps;
    if (f == FAULT_ABORT_MID_REMAP)
        /* Half of them remapped (at least one, one at least left). */
        snprintf(buf, size, WL_ACT_ENV "=%s=%u", fault_name(f),
                 maps / 2 ? maps / 2 : 1);
    else
        snprintf(buf, size, WL_ACT_ENV "=%s", fault_name(f));
}

/* cprkit_upgrade_fn: returns only when the update did not happen. */
static int upgrade(void *userdata, cprkit_ctx *ctx, const char *binary,
                   char *const argv[])
{
    struct cprkit_exec_opts opts = { .size = sizeof(opts) };
    struct workload *w = userdata;
    enum fault acting = FAULT_NONE;
    bool crash = false;
    char **next_argv, **envp;
    static char act[128];
    const char *acting_arg = NULL;
    int n, r;

    for (char *const *a = argv + 1; *a; a++) {
        size_t i;

        for (i = 0; i < sizeof(fail_args) / sizeof(fail_args[0]); i++)
            if (!strcmp(*a, fail_args[i].arg))
                break;
        if (i < sizeof(fail_args) / sizeof(fail_args[0]) &&
            (!acting_arg || !strcmp(acting_arg, *a))) {
            acting = fail_args[i].fault;
            acting_arg = fail_args[i].arg;
            if (fault_is_keeper_side(acting) && !wl_act_hooks)
                return cprkit_set_error(ctx, -EOPNOTSUPP,
                                        "refused: %s needs a build with the "
                                        "act-wrap interposer (the "
                                        "ops-keeper-faults test binary)",
                                        *a);
        } else if (i < sizeof(fail_args) / sizeof(fail_args[0])) {
            return cprkit_set_error(ctx, -EINVAL,
                                    "refused: %s and %s together (one "
                                    "fault at a time)", acting_arg, *a);
        } else if (!strcmp(*a, WL_CRASH_AT_START)) {
            crash = true;
        } else if (!own_argument(w, *a)) {
            note("upgrade to %s refused: unknown argument '%s' (only "
                 WL_FAIL_HEALTH_CHECK " may be added)", binary, *a);
            /* The control endpoint reports this to the operator. */
            return cprkit_set_error(ctx, -EINVAL,
                                    "refused: unknown argument '%s' (only "
                                    WL_FAIL_HEALTH_CHECK " may be added)",
                                    *a);
        }
    }
    note("upgrade to %s%s%s%s%s requested: work in flight, exec", binary,
         acting_arg ? " (" : "", acting_arg ? acting_arg : "",
         acting_arg ? ")" : "", crash ? " (" WL_CRASH_AT_START ")" : "");

    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->start_inflight(w, &w->engines[i]);
    w->st.fd_count = (uint32_t)wl_fd_count(w);
    w->st.vmlck_kb = (uint64_t)wl_pinned_kb(w);
    w->st.exec_started_ns = mono_ns();
    save_sections(w, acting);

    /* Only the veto travels in argv (--fault=veto); the keeper-side
     * faults go in the new image's environment. */
    next_argv = wl_next_argv(w, binary, 0,
                             acting == FAULT_VETO ? acting : FAULT_NONE);
    for (n = 0; next_argv[n]; n++)
        ;
    next_argv[n++] = strdup("--control"); /* room: wl_next_argv allocates 32 */
    if (crash)
        next_argv[n++] = strdup(WL_CRASH_AT_START);
    next_argv[n] = NULL;
    report_export();
    envp = wl_next_envp(NULL);
    if (fault_is_keeper_side(acting)) {
        /* wl_next_envp() leaves room for one more entry. */
        for (n = 0; envp[n]; n++)
            ;
        act_env(w, acting, act, sizeof(act));
        envp[n] = act;
        envp[n + 1] = NULL;
    }
    opts.envp = envp;

    r = cprkit_exec(ctx, binary, next_argv, &opts);

    /* Still here: nothing changed. Service what was put in flight, so the
     * old image keeps serving with nothing lost. */
    unsetenv(WL_TAP_ENV);
    free(envp);
    wl_free_argv(next_argv);
    note("upgrade to %s did not happen (%d): %s; still serving generation "
         "%llu", binary, r, cprkit_last_error(ctx),
         (unsigned long long)cprkit_generation(ctx));
    for (unsigned i = 0; i < w->nengines; i++) {
        struct blackout b = {0};

        w->engines[i].ops->finish_inflight(w, &w->engines[i], &b);
    }
    return r < 0 ? r : -EIO;
}

static void mark_serving(struct workload *w)
{
    int r;

    /* The "workload" section (the run's nonce) goes with the state the
     * keeper gets now: a crash restart reads it from there. */
    r = cprkit_section_put(w->ctx, "workload", &w->st, sizeof(w->st));
    if (r < 0)
        check(false, "section workload: %s", strerror(-r));
    r = cprkit_control_mark_serving(w->control_endpoint);

    check(r == 0, "serving, generation %llu (%d)",
          (unsigned long long)cprkit_generation(w->ctx), r);
    wl_live_record(w);
}

static int stop_signals(void)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void wl_control_run(struct workload *w)
{
    cprkit_control *control;
    struct signalfd_siginfo si;
    uint64_t rounds = 0;
    int sfd, r;

    /* The blocked mask crosses exec: a signal sent during an update waits
     * for the next image's signalfd. */
    sfd = stop_signals();
    if (sfd < 0)
        fatal("signalfd: %s", strerror(-sfd));
    r = cprkit_control_listen(w->ctx, NULL, &control);
    if (!check(r == 0, "control endpoint %s at $" CPRKIT_CONTROL_SOCKET_ENV,
               w->incoming ? "reclaimed" : "listening"))
        fatal("cprkit_control_listen: %s (%s); run me under `cpr-exec run`",
              strerror(-r), cprkit_last_error(w->ctx));
    cprkit_control_set_upgrade_fn(control, upgrade, w);
    w->control_endpoint = control;

    if (w->restart) {
        /* Crash restart: recover every engine from its live state,
         * checks, commit, mark_serving() (status: "restarted"). */
        w->on_serving = mark_serving;
        restart_incoming(w);
    } else if (w->incoming) {
        /* Checks, commits, services the work of the blackout, then
         * mark_serving() (the client gets "committed" or "rolled-back"
         * with the blackout), then fresh work. A vetoing image rolls back
         * in there and does not return. */
        w->on_serving = mark_serving;
        update_incoming(w);
    } else {
        for (unsigned i = 0; i < w->nengines; i++)
            w->engines[i].ops->serve(w, &w->engines[i], w->rounds);
        mark_serving(w);
    }
    note("generation %llu serving %u device(s) with DMA and interrupts, pid "
         "%d, control socket %s%s", (unsigned long long)w->generation,
         w->nengines, (int)getpid(), getenv(CPRKIT_CONTROL_SOCKET_ENV),
         report_failures() ? " (FAILED checks)" : "");

    for (;;) {
        struct pollfd p[2] = {
            { .fd = cprkit_control_fd(control), .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
        };

        for (unsigned i = 0; i < w->nengines; i++)
            w->engines[i].ops->serve(w, &w->engines[i], 1);
        rounds++;
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            fatal("poll: %s", strerror(errno));
        if (p[1].revents & POLLIN &&
            read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            note("signal %u: stopping after %llu service round(s) in "
                 "generation %llu", si.ssi_signo, (unsigned long long)rounds,
                 (unsigned long long)cprkit_generation(w->ctx));
            break;
        }
        if (p[0].revents & POLLIN) {
            r = cprkit_control_dispatch(control);
            if (r < 0)
                check(false, "cprkit_control_dispatch: %s", strerror(-r));
        }
    }

    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->serve(w, &w->engines[i], 1);
    cprkit_control_free(control);
    close(sfd);
    cprkit_free(w->ctx);
    report_finish();
}
