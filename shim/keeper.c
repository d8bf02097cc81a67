/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keeper (docs/keeper.md): `cpr-exec run` forks the program and stays
 * as its parent. The library in the program hands it, over a socketpair
 * (cpr/keeper-proto.h), dups of every preserved fd with the state blob
 * that names them. Holding them, the keeper keeps what the kernel keeps
 * for an open fd alive while the program is dead: the VFIO container
 * (mappings, pins, IOMMU entries), the device (never reset: its last fd
 * does not close), the interrupt eventfds, the memory memfds.
 *
 * When the program dies the keeper starts a binary with them:
 *   - during an update (an "exec" arrived, no commit since): the previous
 *     binary, with the update's blob, as a rollback — the new binary
 *     crashed, exited, was no cprkit program, or missed its deadline;
 *   - a committed program that crashed: the same binary with the last
 *     committed state, with a back-off and a burst limit like systemd's;
 *   - exit status 0 outside an update is a clean stop: the keeper exits.
 * It never reads the state: it places each fd at the number the state
 * records and execs; the library does the rest (cprkit_is_restart()).
 *
 * Single-threaded, one poll loop: a signalfd (SIGCHLD and the stop
 * signals, which it forwards), the program's socket, one timerfd (the
 * commit deadline or the restart back-off).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cprkit/cprkit.h>

#include "cpr-exec.h"
#include "keeper-proto.h"
#include "keeper.h"
#include "macros.h"

extern char **environ;

enum phase {
    PHASE_SERVING,   /* committed, or a fresh start */
    PHASE_UPDATE,    /* an update's exec happened, no commit yet */
    PHASE_RESTARTED, /* we started it; no commit yet */
};

struct keeper {
    const struct keeper_options *o;
    char **base_env;
    sigset_t child_mask;

    pid_t child;
    int sock; /* our end of the current child's socketpair */
    int sigfd;
    int timerfd;

    struct kept pending;   /* fds of a state still arriving */
    struct kept committed; /* the last committed state */
    struct kept update;    /* the running update's exec */
    struct kept update_prev;
    bool have_committed;
    enum phase phase;
    enum phase phase_before_update;
    bool hello;  /* the running binary started cprkit since exec/start */
    bool loaded; /* ... and loaded a state */

    uint64_t deadline_ns; /* CLOCK_MONOTONIC, 0: none */
    uint32_t deadline_ms;
    char *deadline_cause; /* set when we killed it for the deadline */

    /* A restart waiting for its back-off. */
    bool restart_pending;
    uint64_t restart_at_ns;
    struct kept *restart_from;
    bool restart_rollback;
    char *restart_cause;
    uint64_t died_ns;

    struct fdstore store; /* with --fd-store */

    unsigned restarts;
    GArray *restart_times; /* uint64_t ns, within the interval */
    char *last_cause;
    uint64_t last_at_us;

    bool stopping;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void kept_init(struct kept *k)
{
    k->fds = g_array_new(false, false, sizeof(int));
    k->targets = g_array_new(false, false, sizeof(int));
    k->blob_fd = -1;
    k->path = NULL;
    k->argv = NULL;
    k->generation = 0;
}

void kept_clear(struct kept *k)
{
    for (guint i = 0; i < k->fds->len; i++)
        close(g_array_index(k->fds, int, i));
    g_array_set_size(k->fds, 0);
    g_array_set_size(k->targets, 0);
    if (k->blob_fd >= 0)
        close(k->blob_fd);
    k->blob_fd = -1;
    g_free(k->path);
    k->path = NULL;
    g_strfreev(k->argv);
    k->argv = NULL;
    k->generation = 0;
}

static void kept_free(struct kept *k)
{
    kept_clear(k);
    g_array_unref(k->fds);
    g_array_unref(k->targets);
}

/* dst takes src's contents; src is left empty. */
static void kept_move(struct kept *dst, struct kept *src)
{
    kept_clear(dst);
    g_array_append_vals(dst->fds, src->fds->data, src->fds->len);
    g_array_append_vals(dst->targets, src->targets->data, src->targets->len);
    dst->blob_fd = src->blob_fd;
    dst->path = src->path;
    dst->argv = src->argv;
    dst->generation = src->generation;
    g_array_set_size(src->fds, 0);
    g_array_set_size(src->targets, 0);
    src->blob_fd = -1;
    src->path = NULL;
    src->argv = NULL;
}

bool kept_valid(const struct kept *k)
{
    return k->blob_fd >= 0 && k->path && k->argv && k->argv[0];
}

static char *describe_status(int status)
{
    if (WIFEXITED(status))
        return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return g_strdup_printf("killed by SIG%s%s",
                               sigabbrev_np(WTERMSIG(status))
                                   ? sigabbrev_np(WTERMSIG(status))
                                   : "?",
                               WCOREDUMP(status) ? " (core dumped)" : "");
    return g_strdup_printf("ended with status 0x%x", status);
}

/* The keeper's exit status for a child's wait status. */
static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_FAILED;
}

static void arm_timer(struct keeper *k)
{
    uint64_t at = 0;
    struct itimerspec its = {0};

    if (k->restart_pending)
        at = k->restart_at_ns;
    else if (k->deadline_ns)
        at = k->deadline_ns;
    if (at) {
        /* 0 would disarm: an expired time fires at once. */
        its.it_value.tv_sec = (time_t)(at / 1000000000u);
        its.it_value.tv_nsec = (long)(at % 1000000000u);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(k->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void set_deadline(struct keeper *k, uint32_t ms)
{
    k->deadline_ms = ms;
    k->deadline_ns = ms ? mono_ns() + (uint64_t)ms * 1000000u : 0;
    arm_timer(k);
}

/* ---- messages from the program ------------------------------------------ */

/* "key=value" in the header, or NULL. */
static const char *header_get(char **words, const char *key)
{
    size_t n = strlen(key);

    for (char **w = words; *w; w++)
        if (!strncmp(*w, key, n) && (*w)[n] == '=')
            return *w + n + 1;
    return NULL;
}

/* The tail's NUL-terminated strings. */
static char **tail_strings(const char *tail, size_t len)
{
    GPtrArray *a = g_ptr_array_new();

    for (size_t off = 0; off < len;) {
        const char *s = tail + off;
        size_t l = strnlen(s, len - off);

        if (off + l == len) /* not terminated: ignore the rest */
            break;
        g_ptr_array_add(a, g_strdup(s));
        off += l + 1;
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, false);
}

/* tail: the path to exec, then argv. */
static void take_state(struct keeper *k, struct kept *dst, int blob_fd,
                       char **tail, uint64_t generation)
{
    kept_move(dst, &k->pending);
    dst->blob_fd = blob_fd;
    dst->path = g_strdup(tail[0]);
    dst->argv = g_strdupv(tail + 1);
    dst->generation = generation;
}

static void handle_message(struct keeper *k, char *buf, size_t len, int *fds,
                           unsigned n_fds)
{
    char *nl = memchr(buf, '\n', len);
    g_auto(GStrv) words = NULL;
    g_auto(GStrv) tail = NULL;
    const char *kind, *v;
    unsigned used = 0;

    if (!nl) {
        log_msg(LOG_WARNING, "keeper: malformed message from pid %d",
                (int)k->child);
        goto out;
    }
    *nl = '\0';
    words = g_strsplit(buf, " ", -1);
    tail = tail_strings(nl + 1, len - (size_t)(nl + 1 - buf));
    kind = words[0] ? words[0] : "";

    if (!strcmp(kind, "fds")) {
        if (g_strv_length(tail) != n_fds) {
            log_msg(LOG_WARNING, "keeper: %u fds with %u numbers: ignored",
                    n_fds, g_strv_length(tail));
            goto out;
        }
        for (unsigned i = 0; i < n_fds; i++) {
            int target = atoi(tail[i]);

            g_array_append_val(k->pending.fds, fds[i]);
            g_array_append_val(k->pending.targets, target);
        }
        used = n_fds;
    } else if (!strcmp(kind, "state") || !strcmp(kind, "exec")) {
        bool is_exec = kind[0] == 'e';
        uint64_t gen = (v = header_get(words, "generation"))
                           ? g_ascii_strtoull(v, NULL, 10)
                           : 0;

        if (n_fds != 1 || !tail[0] || !tail[1]) {
            log_msg(LOG_WARNING, "keeper: '%s' without blob or command line",
                    kind);
            kept_clear(&k->pending);
            goto out;
        }
        used = 1;
        if (!is_exec) {
            take_state(k, &k->committed, fds[0], tail, gen);
            k->have_committed = true;
            if (k->phase != PHASE_SERVING)
                log_msg(LOG_INFO, "keeper: %s committed, generation %" PRIu64,
                        k->phase == PHASE_UPDATE ? "update" : "restart", gen);
            k->phase = PHASE_SERVING;
            kept_clear(&k->update);
            kept_clear(&k->update_prev);
            set_deadline(k, 0);
            if (k->o->fd_store) {
                int r = fdstore_push(&k->store, &k->committed, (int)k->child);

                if (r < 0)
                    log_msg(LOG_WARNING,
                            "keeper: cannot put the state in the fd store "
                            "(%s): a restart of the keeper will not keep the "
                            "device (FileDescriptorStoreMax= too low?)",
                            strerror(-r));
            }
            log_msg(LOG_DEBUG, "keeper: keeping %u fds, generation %" PRIu64,
                    k->committed.fds->len, gen);
        } else {
            uint32_t ms = (v = header_get(words, "deadline_ms"))
                              ? (uint32_t)g_ascii_strtoull(v, NULL, 10)
                              : k->o->commit_timeout_ms;

            /* A rollback's exec inside an update: if it fails, the
             * update's state is still the one to restart with. */
            if (k->phase == PHASE_UPDATE) {
                kept_move(&k->update_prev, &k->update);
            } else {
                k->phase_before_update = k->phase;
                kept_clear(&k->update_prev);
            }
            take_state(k, &k->update, fds[0], tail, gen);
            k->phase = PHASE_UPDATE;
            k->hello = k->loaded = false;
            set_deadline(k, ms ? ms : k->o->commit_timeout_ms);
            log_msg(LOG_INFO, "keeper: update to generation %" PRIu64
                    " started; the new binary has %u ms to commit",
                    gen, k->deadline_ms);
        }
    } else if (!strcmp(kind, "exec-failed")) {
        if (kept_valid(&k->update_prev)) {
            kept_move(&k->update, &k->update_prev);
        } else {
            kept_clear(&k->update);
            k->phase = k->phase_before_update;
            if (k->phase == PHASE_SERVING)
                set_deadline(k, 0);
        }
        k->hello = k->loaded = true; /* the same binary goes on */
    } else if (!strcmp(kind, "hello")) {
        k->hello = true;
        k->loaded = (v = header_get(words, "loaded")) && !strcmp(v, "1");
    } else if (!strcmp(kind, "unkept")) {
        log_msg(LOG_WARNING,
                "keeper: the program's state cannot be kept (%s): it will "
                "not be restarted if it dies",
                tail[0] ? tail[0] : "no reason given");
        kept_clear(&k->committed);
        kept_clear(&k->pending);
        k->have_committed = false;
        if (k->o->fd_store)
            fdstore_drop(&k->store);
    } else {
        log_msg(LOG_WARNING, "keeper: unknown message '%s' ignored", kind);
    }
out:
    for (unsigned i = used; i < n_fds; i++)
        close(fds[i]);
}

/* Reads every queued message. */
static void drain_socket(struct keeper *k)
{
    static char buf[KEEPER_MSG_MAX + 1];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 253)];
    } control;

    while (k->sock >= 0) {
        struct iovec iov = {.iov_base = buf, .iov_len = KEEPER_MSG_MAX};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof(control.buf)};
        int fds[253];
        unsigned n_fds = 0;
        ssize_t n = recvmsg(k->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
             cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            for (size_t i = 0;
                 i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && n_fds < 253;
                 i++)
                memcpy(&fds[n_fds++], CMSG_DATA(cm) + i * sizeof(int),
                       sizeof(int));
        }
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            log_msg(LOG_WARNING, "keeper: truncated message dropped");
            for (unsigned i = 0; i < n_fds; i++)
                close(fds[i]);
            continue;
        }
        buf[n] = '\0';
        handle_message(k, buf, (size_t)n, fds, n_fds);
    }
}

/* ---- starting the program ------------------------------------------------ */

static void env_add(GPtrArray *env, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_add(GPtrArray *env, const char *name, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *v = NULL;

    va_start(ap, fmt);
    v = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(env, g_strdup_printf("%s=%s", name, v));
}

/* In the child, between fork and exec (the keeper is single-threaded, so
 * the allocations of the caller are done; only syscalls here): every kept
 * fd at its recorded number without FD_CLOEXEC, the blob and the socket
 * above them; everything else of the keeper's is FD_CLOEXEC and goes. */
static void place_fds_and_exec(const struct kept *from, int sock,
                               const char *path, char **argv, char **envp,
                               const sigset_t *mask,
                               const char *env_fmt_blob,
                               const char *env_fmt_sock)
{
    int top = 2, blob = -1, s;
    unsigned n = from ? from->fds->len : 0;
    int *high = alloca(sizeof(int) * (n + 1));

    for (unsigned i = 0; i < n; i++)
        top = MAX(top, g_array_index(from->targets, int, i));
    for (unsigned i = 0; i < n; i++) {
        high[i] = fcntl(g_array_index(from->fds, int, i), F_DUPFD_CLOEXEC,
                        top + 1);
        if (high[i] < 0)
            _exit(127);
    }
    if (from) {
        blob = fcntl(from->blob_fd, F_DUPFD, top + 1);
        if (blob < 0)
            _exit(127);
    }
    s = fcntl(sock, F_DUPFD, top + 1);
    if (s < 0)
        _exit(127);
    for (unsigned i = 0; i < n; i++)
        if (dup2(high[i], g_array_index(from->targets, int, i)) < 0)
            _exit(127);
    /* The numbers are known only now: fill them in. */
    for (char **e = envp; *e; e++) {
        if (env_fmt_blob && !strcmp(*e, env_fmt_blob))
            snprintf(*e, strlen(*e) + 1, CPRKIT_STATE_FD_ENV "=%d", blob);
        else if (!strcmp(*e, env_fmt_sock))
            snprintf(*e, strlen(*e) + 1, CPRKIT_KEEPER_FD_ENV "=%d", s);
    }
    sigprocmask(SIG_SETMASK, mask, NULL);
    execve(path, argv, envp);
    _exit(127);
}

/* Placeholders for fd numbers known only in the child, long enough for
 * the final text. */
#define BLOB_PLACEHOLDER CPRKIT_STATE_FD_ENV "=@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@"
#define SOCK_PLACEHOLDER CPRKIT_KEEPER_FD_ENV "=@@@@@@@@@@@@@@@@@@@@@@@@@@@@@"

/* Starts argv (with from's fds and blob, if any). cause: why (a restart),
 * rollback: from is an update's blob and the previous binary runs again. */
static int spawn(struct keeper *k, const struct kept *from, const char *path,
                 char **argv, const char *cause, bool rollback, int go_pipe)
{
    GPtrArray *env = g_ptr_array_new_with_free_func(g_free);
    int sv[2];
    pid_t pid;

    for (char **e = k->base_env; *e; e++)
        if (!g_str_has_prefix(*e, CPRKIT_STATE_FD_ENV "=") &&
            !g_str_has_prefix(*e, "CPRKIT_ROLLBACK_REASON=") &&
            !g_str_has_prefix(*e, "CPRKIT_KEEPER_") &&
            !g_str_has_prefix(*e, "CPRKIT_RESTART_REASON="))
            g_ptr_array_add(env, g_strdup(*e));
    g_ptr_array_add(env, g_strdup(SOCK_PLACEHOLDER));
    env_add(env, CPRKIT_KEEPER_PID_ENV, "%d", (int)getpid());
    env_add(env, CPRKIT_KEEPER_RESTARTS_ENV, "%u", k->restarts);
    if (k->last_cause) {
        env_add(env, CPRKIT_KEEPER_LAST_CAUSE_ENV, "%s", k->last_cause);
        env_add(env, CPRKIT_KEEPER_LAST_AT_ENV, "%" PRIu64, k->last_at_us);
    }
    if (from) {
        g_ptr_array_add(env, g_strdup(BLOB_PLACEHOLDER));
        env_add(env, CPRKIT_RESTART_REASON_ENV, "%s", cause);
        env_add(env, CPRKIT_KEEPER_DIED_NS_ENV, "%" PRIu64, k->died_ns);
        if (rollback)
            env_add(env, "CPRKIT_ROLLBACK_REASON", "%s", cause);
    }
    g_ptr_array_add(env, NULL);

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;

        g_ptr_array_unref(env);
        log_msg(LOG_ERR, "keeper: socketpair: %s", strerror(e));
        return -e;
    }
    pid = fork();
    if (pid < 0) {
        int e = errno;

        close(sv[0]);
        close(sv[1]);
        g_ptr_array_unref(env);
        log_msg(LOG_ERR, "keeper: fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        char c;

        /* The parent prints our pid first (cpr-exec run --json). */
        if (go_pipe >= 0)
            while (read(go_pipe, &c, 1) < 0 && errno == EINTR)
                ;
        place_fds_and_exec(from, sv[1], path, argv, (char **)env->pdata,
                           &k->child_mask, from ? BLOB_PLACEHOLDER : NULL,
                           SOCK_PLACEHOLDER);
    }
    close(sv[1]);
    g_ptr_array_unref(env);
    if (k->sock >= 0)
        close(k->sock);
    k->sock = sv[0];
    k->child = pid;
    k->hello = k->loaded = false;
    return 0;
}

/* ---- the program died ----------------------------------------------------- */

static bool policy_allows(struct keeper *k, uint64_t now, uint64_t *ret_delay)
{
    uint64_t window = (uint64_t)k->o->interval_ms * 1000000u;
    uint64_t delay = (uint64_t)k->o->delay_ms * 1000000u;
    guint i = 0;

    while (i < k->restart_times->len &&
           g_array_index(k->restart_times, uint64_t, i) + window < now)
        i++;
    g_array_remove_range(k->restart_times, 0, i);
    if (k->restart_times->len >= k->o->burst)
        return false;
    for (guint j = 0; j < k->restart_times->len; j++)
        delay = MIN(delay * 2, (uint64_t)k->o->max_delay_ms * 1000000u);
    *ret_delay = delay;
    return true;
}

static void give_up(struct keeper *k, const char *why)
{
    log_msg(LOG_ERR, "keeper: giving up: %s; closing the kept fds (the device "
            "is released and will be reset)", why);
    kept_clear(&k->committed);
    kept_clear(&k->update);
    kept_clear(&k->update_prev);
    kept_clear(&k->pending);
    if (k->o->fd_store)
        fdstore_drop(&k->store);
}

/* Returns -1 to go on, or the keeper's exit status. */
static int child_died(struct keeper *k, int status)
{
    g_autofree char *how = describe_status(status);
    g_autofree char *cause = NULL;
    struct kept *from = NULL;
    bool rollback = false;
    uint64_t delay = 0;

    drain_socket(k);
    closep(&k->sock);
    k->sock = -1;
    /* fds of a state whose closing message never came. */
    kept_clear(&k->pending);
    k->child = 0;
    k->died_ns = mono_ns();
    set_deadline(k, 0);

    if (k->stopping) {
        log_msg(LOG_INFO, "keeper: program %s after the stop request", how);
        if (k->o->fd_store)
            fdstore_drop(&k->store);
        return exit_code_of(status);
    }
    switch (k->phase) {
    case PHASE_UPDATE:
        /* Without a hello the exec may not even have happened (the old
         * binary killed inside execve): say so rather than blame. */
        cause = k->deadline_cause ? g_strdup(k->deadline_cause)
                : k->loaded
                    ? g_strdup_printf("new binary %s before commit", how)
                : WIFSIGNALED(status) && !k->hello
                    ? g_strdup_printf("update's process %s before the new "
                                      "binary loaded the state (in execve or "
                                      "first thing in the new binary)",
                                      how)
                    : g_strdup_printf("new binary %s without loading the "
                                      "state",
                                      how);
        from = &k->update;
        rollback = true;
        break;
    case PHASE_RESTARTED:
        cause = k->deadline_cause
                    ? g_strdup(k->deadline_cause)
                    : g_strdup_printf("restarted program %s before commit",
                                      how);
        from = k->restart_from;
        rollback = k->restart_rollback;
        break;
    case PHASE_SERVING:
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            log_msg(LOG_INFO, "keeper: program exited with status 0");
            /* A stop, not a crash: the next start is a fresh one. */
            if (k->o->fd_store)
                fdstore_drop(&k->store);
            return 0;
        }
        cause = g_strdup_printf("program %s", how);
        if (!k->o->restart) {
            log_msg(LOG_ERR, "keeper: %s; not restarting (--restart=no)",
                    cause);
            return exit_code_of(status);
        }
        if (!k->have_committed) {
            log_msg(LOG_ERR,
                    "keeper: %s before it handed over any state: nothing to "
                    "restart it with",
                    cause);
            return exit_code_of(status);
        }
        from = &k->committed;
        break;
    }
    g_clear_pointer(&k->deadline_cause, g_free);
    if (!from || !kept_valid(from)) {
        log_msg(LOG_ERR, "keeper: %s, and no state is kept to restart with",
                cause);
        return exit_code_of(status);
    }
    if (!policy_allows(k, k->died_ns, &delay)) {
        g_autofree char *why = g_strdup_printf(
            "%s; %u restarts within %u ms already", cause, k->o->burst,
            k->o->interval_ms);

        give_up(k, why);
        return exit_code_of(status) ? exit_code_of(status) : EXIT_FAILED;
    }
    /* A failed update's previous binary starts at once: it is the one
     * that was serving. */
    if (rollback)
        delay = 0;
    log_msg(LOG_WARNING, "keeper: %s; starting %s%s in %" PRIu64 " ms", cause,
            from->path, rollback ? " again (rollback)" : "",
            delay / 1000000u);
    g_free(k->restart_cause);
    k->restart_cause = g_steal_pointer(&cause);
    k->restart_from = from;
    k->restart_rollback = rollback;
    k->restart_pending = true;
    k->restart_at_ns = k->died_ns + delay;
    arm_timer(k);
    return -1;
}

static int do_restart(struct keeper *k)
{
    uint64_t now = mono_ns();
    int r;

    k->restart_pending = false;
    g_array_append_val(k->restart_times, now);
    k->restarts++;
    g_free(k->last_cause);
    k->last_cause = g_strdup(k->restart_cause);
    k->last_at_us = realtime_us();
    r = spawn(k, k->restart_from, k->restart_from->path,
              k->restart_from->argv, k->restart_cause, k->restart_rollback, -1);
    if (r < 0) {
        give_up(k, "cannot start the program again");
        return EXIT_FAILED;
    }
    k->phase = PHASE_RESTARTED;
    set_deadline(k, k->o->commit_timeout_ms);
    log_msg(LOG_INFO, "keeper: restart %u: pid %d (%s)", k->restarts,
            (int)k->child, k->restart_cause);
    return -1;
}

static void deadline_passed(struct keeper *k)
{
    if (!k->child)
        return;
    g_free(k->deadline_cause);
    k->deadline_cause = g_strdup_printf(
        "%sno commit within %u s", k->phase == PHASE_UPDATE ? "" : "restarted "
                                   "program: ",
        (k->deadline_ms + 999) / 1000);
    log_msg(LOG_WARNING, "keeper: %s: killing pid %d", k->deadline_cause,
            (int)k->child);
    kill(k->child, SIGKILL);
}

/* ---- the loop ------------------------------------------------------------ */

static void print_started(const struct keeper *k, const char *prog)
{
    const struct keeper_options *o = k->o;

    if (o->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "socket");
        json_builder_add_string_value(b, o->socket_path);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, k->child);
        json_builder_set_member_name(b, "keeper_pid");
        json_builder_add_int_value(b, getpid());
        json_builder_set_member_name(b, "program");
        json_builder_add_string_value(b, prog);
        json_builder_set_member_name(b, "preload");
        if (o->preload)
            json_builder_add_string_value(b, o->preload);
        else
            json_builder_add_null_value(b);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        print_json(root, false);
    } else {
        printf("%s\n", o->socket_path);
    }
    fflush(stdout);
}

int keeper_run(const char *prog, char **argv, const struct keeper_options *o)
{
    struct keeper k = {.o = o, .sock = -1, .sigfd = -1, .timerfd = -1};
    g_autofree char **child_argv = NULL;
    sigset_t mask;
    int go[2], argc = g_strv_length(argv), ret = -1;

    kept_init(&k.pending);
    kept_init(&k.committed);
    kept_init(&k.update);
    kept_init(&k.update_prev);
    k.restart_times = g_array_new(false, false, sizeof(uint64_t));

    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGQUIT);
    sigprocmask(SIG_BLOCK, &mask, &k.child_mask);
    fdstore_init(&k.store);
    if (o->fd_store) {
        /* Before the environment is copied: LISTEN_* are for us alone. */
        int r = fdstore_recover(&k.store, &k.committed);

        if (r < 0) {
            log_msg(LOG_ERR, "keeper: cannot take the state back from the fd "
                    "store: %s", strerror(-r));
            return EXIT_FAILED;
        }
        k.have_committed = r > 0;
    }
    k.base_env = g_strdupv(environ);
    k.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    k.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (k.sigfd < 0 || k.timerfd < 0 || pipe2(go, O_CLOEXEC) < 0) {
        log_msg(LOG_ERR, "keeper: signalfd/timerfd/pipe: %m");
        return EXIT_FAILED;
    }

    child_argv = g_new0(char *, argc + 1);
    for (int i = 0; i < argc; i++)
        child_argv[i] = argv[i];
    if (k.have_committed) {
        /* A previous keeper died; the program with it. Its state is back
         * from the fd store: start the program from it, as after a crash. */
        k.restart_cause =
            g_strdup("the keeper was restarted (state from the fd store)");
        k.died_ns = mono_ns();
        k.restarts++;
        k.last_cause = g_strdup(k.restart_cause);
        k.last_at_us = realtime_us();
        if (spawn(&k, &k.committed, k.committed.path, k.committed.argv,
                  k.restart_cause, false, go[0]) < 0)
            return EXIT_FAILED;
        k.restart_from = &k.committed;
        k.phase = PHASE_RESTARTED;
        set_deadline(&k, o->commit_timeout_ms);
    } else if (spawn(&k, NULL, prog, child_argv, NULL, false, go[0]) < 0) {
        return EXIT_FAILED;
    }
    close(go[0]);
    print_started(&k, prog);
    log_msg(LOG_INFO, "keeper %d: running %s as pid %d, control socket %s%s%s",
            (int)getpid(), prog, (int)k.child, o->socket_path,
            o->preload ? " under the LD_PRELOAD shim " : "",
            o->preload ? o->preload : "");
    /* A byte, not EOF: the child holds the write end too until it execs. */
    if (write(go[1], "g", 1) != 1)
        log_msg(LOG_WARNING, "keeper: cannot start the program: %m");
    close(go[1]);

    while (ret < 0) {
        struct pollfd p[3] = {
            {.fd = k.sigfd, .events = POLLIN},
            {.fd = k.sock, .events = POLLIN},
            {.fd = k.timerfd, .events = POLLIN},
        };
        struct signalfd_siginfo si;

        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_msg(LOG_ERR, "keeper: poll: %m");
            ret = EXIT_FAILED;
            break;
        }
        if (p[1].revents & POLLIN)
            drain_socket(&k);
        if (p[2].revents & POLLIN) {
            uint64_t ticks;

            if (read(k.timerfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                log_msg(LOG_WARNING, "keeper: timerfd: %m");
            if (k.restart_pending && mono_ns() >= k.restart_at_ns)
                ret = do_restart(&k);
            else if (k.deadline_ns && mono_ns() >= k.deadline_ns) {
                k.deadline_ns = 0;
                deadline_passed(&k);
            }
        }
        while (ret < 0 && read(k.sigfd, &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo != SIGCHLD) {
                k.stopping = true;
                if (k.child) {
                    log_msg(LOG_INFO, "keeper: SIG%s: passing it to pid %d",
                            sigabbrev_np((int)si.ssi_signo), (int)k.child);
                    kill(k.child, (int)si.ssi_signo);
                } else {
                    log_msg(LOG_INFO, "keeper: SIG%s while no program runs: "
                            "stopping", sigabbrev_np((int)si.ssi_signo));
                    ret = 128 + (int)si.ssi_signo;
                }
                continue;
            }
            for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);

                if (pid <= 0)
                    break;
                if (pid == k.child) {
                    ret = child_died(&k, status);
                    if (ret >= 0)
                        break;
                }
            }
        }
    }

    kept_free(&k.pending);
    kept_free(&k.committed);
    kept_free(&k.update);
    kept_free(&k.update_prev);
    g_array_unref(k.restart_times);
    fdstore_free(&k.store);
    g_strfreev(k.base_env);
    g_free(k.restart_cause);
    g_free(k.last_cause);
    g_free(k.deadline_cause);
    closep(&k.sock);
    close(k.sigfd);
    close(k.timerfd);
    return ret;
}
