/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint: a UNIX socket speaking JSON lines, through which
 * `cpr-exec` asks a running program for its status, its state, a
 * pre-flight check, or an upgrade. Protocol: docs/operations.md.
 *
 * The listening socket is a preserved fd, so the socket path stays valid
 * across updates. The connection of the client that asked for an upgrade
 * is preserved too: the new binary (or, after a rollback, the old one)
 * reclaims it in cprkit_control_listen() and answers it once it serves.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "sd-notify.h"
#include "state-json.h"

/* At most this many connections at once; more are answered "busy". */
#define CONTROL_MAX_CLIENTS 32
/* A client gets this long to take a reply off the socket. */
#define CONTROL_WRITE_TIMEOUT_MS 1000

struct control_client {
    int fd;
    GString *buf; /* bytes of an incomplete request line */
    uid_t uid;
    pid_t pid;
};

struct cprkit_control {
    cprkit_ctx *ctx;
    char *path;
    int listen_fd;
    int epoll_fd;
    GPtrArray *clients; /* struct control_client * */

    cprkit_upgrade_fn upgrade_fn;
    void *upgrade_userdata;

    /* Started by an update that is not finished yet (not answered). */
    bool update_pending;
    /* The preserved connection of the client that asked for it, or -1. */
    int pending_fd;

    /* The last update this process knows about, for "status". */
    char *last_result; /* committed | rolled-back | failed */
    char *last_phase;
    char *last_error;
    uint64_t last_blackout_ns;
    uint64_t last_generation;
};

static void client_free(struct control_client *cl)
{
    if (!cl)
        return;
    closep(&cl->fd);
    g_string_free(cl->buf, true);
    g_free(cl);
}

/* ---- writing replies ----------------------------------------------------- */

/* Writes one line; a client that does not read for a second is given up.
 * MSG_NOSIGNAL: a client that went away must not kill the server. */
static int write_line(int fd, const char *line)
{
    g_autofree char *data = g_strconcat(line, "\n", NULL);
    size_t len = strlen(data), off = 0;

    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int r = poll(&p, 1, CONTROL_WRITE_TIMEOUT_MS);

            if (r == 0)
                return -ETIMEDOUT;
            if (r < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    return 0;
}

/* One reply: compact JSON on one line, members in the order they were
 * set (what json-glib wrote before, byte for byte). */
static int write_json(int fd, const json_t *reply)
{
    _cleanup_free_ char *line = json_dumps(reply, JSON_COMPACT);

    if (!line)
        return -ENOMEM;
    return write_line(fd, line);
}

/* NULL is written as null. */
static void set_str(json_t *o, const char *member, const char *value)
{
    json_object_set_new(o, member, json_utf8_string(value));
}

static void set_int(json_t *o, const char *member, json_int_t value)
{
    json_object_set_new(o, member, json_integer(value));
}

static void set_bool(json_t *o, const char *member, bool value)
{
    json_object_set_new(o, member, json_boolean(value));
}

/* {"ok":false,"result":"error","error":"..."} for requests that could not
 * be understood or are not allowed. */
static int reply_error(int fd, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_error(int fd, const char *result, const char *fmt, ...)
{
    json_auto_t *o = json_object();
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    set_bool(o, "ok", false);
    set_str(o, "result", result);
    set_str(o, "error", msg);
    return write_json(fd, o);
}

static int send_phase(int fd, const char *phase, const char *binary)
{
    json_auto_t *o = json_object();

    set_str(o, "event", "phase");
    set_str(o, "phase", phase);
    set_int(o, "pid", getpid());
    if (binary)
        set_str(o, "binary", binary);
    return write_json(fd, o);
}

/* ---- what the process is -------------------------------------------------- */

static char *self_exe(void)
{
    char *exe = g_file_read_link("/proc/self/exe", NULL);

    return exe ? exe : g_strdup("");
}

static void add_last_update(cprkit_control *c, json_t *o)
{
    json_t *u;

    if (!c->last_result) {
        json_object_set_new(o, "last_update", json_null());
        return;
    }
    u = json_object();
    set_str(u, "result", c->last_result);
    set_str(u, "phase", c->last_phase);
    set_str(u, "error", c->last_error);
    set_int(u, "generation", (json_int_t)c->last_generation);
    set_int(u, "blackout_us", (json_int_t)(c->last_blackout_ns / 1000));
    json_object_set_new(o, "last_update", u);
}

static void add_fd(void *userdata, const char *name, int id, int fd,
                   enum cprkit_fd_type type)
{
    json_t *f = json_object();

    set_str(f, "name", name);
    set_int(f, "id", id);
    set_int(f, "fd", fd);
    set_str(f, "type", cprkit_fd_type_name(type));
    json_array_append_new(userdata, f);
}

/* Every participant's figures as an object under its name ("vfio"): a
 * figure with names (the devices' addresses) as the list of them, others
 * as numbers. */
static void add_participant_stat(void *userdata, const char *participant,
                                 const char *key, uint64_t value,
                                 const char *const *names)
{
    json_t *o = userdata;
    json_t *p = json_object_get(o, participant);

    if (!p) {
        p = json_object();
        json_object_set_new(o, participant, p);
    }
    if (names) {
        json_t *a = json_array();

        for (const char *const *n = names; *n; n++)
            json_array_append_new(a, json_utf8_string(*n));
        json_object_set_new(p, key, a);
    } else {
        set_int(p, key, (json_int_t)value);
    }
}

static void handle_status(cprkit_control *c, struct control_client *cl)
{
    cprkit_ctx *ctx = c->ctx;
    json_auto_t *o = json_object();
    g_autofree char *exe = self_exe();
    json_t *fds;

    set_bool(o, "ok", true);
    set_str(o, "result", "status");
    set_int(o, "pid", getpid());
    set_str(o, "version", PROJECT_VERSION);
    set_int(o, "format_major", CPRKIT_FORMAT_MAJOR);
    set_int(o, "generation", (json_int_t)cprkit_generation(ctx));
    set_str(o, "binary", exe);
    set_bool(o, "incoming", cprkit_is_incoming(ctx));
    set_bool(o, "upgrade_enabled", c->upgrade_fn != NULL);
    set_str(o, "socket", c->path);

    fds = json_array();
    cprkit_fd_foreach(ctx, add_fd, fds);
    json_object_set_new(o, "fds", fds);
    cprkit_participant_stats(ctx, add_participant_stat, o);

    add_last_update(c, o);
    write_json(cl->fd, o);
}

/* {"cmd":"inspect"}: the state an update would write now, as JSON;
 * with "blob":true also the encoded blob (base64) for `inspect FILE`. */
static void handle_inspect(cprkit_control *c, struct control_client *cl,
                           const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    json_auto_t *o = NULL;
    json_auto_t *decoded = NULL;
    _cleanup_free_ uint8_t *blob = NULL;
    size_t size;
    int r;

    /* The state as libcprkit encodes it, read back through its decoder:
     * the control library never sees the library's structures. */
    r = cprkit_state_encode(ctx, &blob, &size);
    if (r >= 0)
        r = blob_to_json_tree(ctx, blob, size, &decoded);
    if (r < 0) {
        reply_error(cl->fd, "error", "cannot build the state: %s",
                    cprkit_last_error(ctx));
        return;
    }
    o = json_object();
    set_bool(o, "ok", true);
    set_str(o, "result", "inspect");
    json_object_set(o, "state", json_object_get(decoded, "state"));
    if (json_is_true(json_object_get(req, "blob"))) {
        g_autofree char *b64 = g_base64_encode(blob, size);

        set_str(o, "blob_base64", b64);
    }
    write_json(cl->fd, o);
}

/* A string member, or NULL if absent; *ret_bad when present but not a
 * string. */
static const char *get_string_member(const json_t *obj, const char *name,
                                     bool *ret_bad)
{
    const json_t *n = json_object_get(obj, name);

    if (!n || json_is_null(n))
        return NULL;
    if (!json_is_string(n)) {
        *ret_bad = true;
        return NULL;
    }
    return json_string_value(n);
}

/* Memory pinned for DMA: every participant's "mapped_bytes". */
static void add_mapped_bytes(void *userdata, const char *participant,
                             const char *key, uint64_t value,
                             const char *const *names)
{
    if (strcmp(key, "mapped_bytes") == 0)
        *(uint64_t *)userdata += value;
}

static void handle_check(cprkit_control *c, struct control_client *cl,
                         const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    json_auto_t *o = json_object();
    json_t *memlock;
    g_autofree char *exe = self_exe();
    bool bad = false;
    const char *binary = get_string_member(req, "binary", &bad);
    struct rlimit rl = {0};
    uint64_t pinned = 0;
    int r;

    if (bad) {
        reply_error(cl->fd, "error", "\"binary\" must be a string");
        return;
    }
    if (!binary)
        binary = exe;
    r = cprkit_check_update(ctx, binary);
    getrlimit(RLIMIT_MEMLOCK, &rl);

    set_bool(o, "ok", r >= 0);
    set_str(o, "result", r >= 0 ? "ok" : "blocked");
    set_str(o, "binary", binary);
    set_str(o, "error", r >= 0 ? NULL : cprkit_last_error(ctx));
    set_int(o, "format_major", CPRKIT_FORMAT_MAJOR);
    set_int(o, "pid", getpid());
    cprkit_participant_stats(ctx, add_mapped_bytes, &pinned);
    set_int(o, "pinned_bytes", (json_int_t)pinned);
    memlock = json_object();
    set_int(memlock, "soft",
            rl.rlim_cur == RLIM_INFINITY ? -1 : (json_int_t)rl.rlim_cur);
    set_int(memlock, "hard",
            rl.rlim_max == RLIM_INFINITY ? -1 : (json_int_t)rl.rlim_max);
    json_object_set_new(o, "memlock", memlock);
    write_json(cl->fd, o);
}

/* ---- upgrade -------------------------------------------------------------- */

static void record_result(cprkit_control *c, const char *result,
                          const char *phase, const char *error,
                          uint64_t blackout_ns)
{
    g_free(c->last_result);
    g_free(c->last_phase);
    g_free(c->last_error);
    c->last_result = g_strdup(result);
    c->last_phase = g_strdup(phase);
    c->last_error = g_strdup(error);
    c->last_blackout_ns = blackout_ns;
    c->last_generation = cprkit_generation(c->ctx);
}

/* This process's own argv, or NULL when it cannot be read or its binary
 * is gone from disk (then it could not be a rollback target either). */
static char **self_argv(void)
{
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *cmdline = NULL;
    GPtrArray *argv;
    gsize size;

    if (!exe || g_str_has_suffix(exe, " (deleted)") ||
        !g_file_get_contents("/proc/self/cmdline", &cmdline, &size, NULL))
        return NULL;
    argv = g_ptr_array_new();
    for (gsize off = 0; off < size;) {
        const char *arg = cmdline + off;

        g_ptr_array_add(argv, g_strdup(arg));
        off += strlen(arg) + 1;
    }
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(argv, false);
}

/* The argv for the new binary: binary, then "args" if the request has
 * them, else this process's own arguments. */
static char **upgrade_argv(const char *binary,
                           const json_t *args, const char **ret_error)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup(binary));
    if (args && !json_is_null(args)) {
        if (!json_is_array(args)) {
            *ret_error = "\"args\" must be an array of strings";
            g_ptr_array_unref(argv);
            return NULL;
        }
        for (size_t i = 0; i < json_array_size(args); i++) {
            const json_t *n = json_array_get(args, i);

            if (!json_is_string(n)) {
                *ret_error = "\"args\" must be an array of strings";
                g_ptr_array_unref(argv);
                return NULL;
            }
            g_ptr_array_add(argv, g_strdup(json_string_value(n)));
        }
    } else {
        g_auto(GStrv) self = self_argv();

        for (char **a = self && self[0] ? self + 1 : NULL; a && *a; a++)
            g_ptr_array_add(argv, g_strdup(*a));
    }
    g_ptr_array_add(argv, NULL);
    g_ptr_array_set_free_func(argv, NULL);
    return (char **)g_ptr_array_free(argv, false);
}

static void upgrade_failed(cprkit_control *c, struct control_client *cl,
                           const char *phase, const char *binary,
                           const char *error)
{
    json_auto_t *o = json_object();

    record_result(c, "failed", phase, error, 0);
    set_bool(o, "ok", false);
    set_str(o, "result", "failed");
    set_str(o, "phase", phase);
    set_str(o, "binary", binary);
    set_str(o, "error", error);
    set_int(o, "pid", getpid());
    set_int(o, "generation", (json_int_t)cprkit_generation(c->ctx));
    write_json(cl->fd, o);
    /* Still the old version, serving. */
    sdnotify_sendf("READY=1\nSTATUS=cprkit: update to %s failed (%s): %s",
                   binary, phase, error);
}

static void handle_upgrade(cprkit_control *c, struct control_client *cl,
                           const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    bool bad = false;
    const char *binary = get_string_member(req, "binary", &bad);
    const char *argv_error = NULL;
    g_auto(GStrv) argv = NULL;
    int r;

    if (bad || !binary || binary[0] != '/') {
        reply_error(cl->fd, "error",
                    "\"upgrade\" needs \"binary\": an absolute path");
        return;
    }
    argv = upgrade_argv(binary, json_object_get(req, "args"), &argv_error);
    if (!argv) {
        reply_error(cl->fd, "error", "%s", argv_error);
        return;
    }
    if (!c->upgrade_fn) {
        upgrade_failed(c, cl, "request", binary,
                       "this program does not accept upgrades (no upgrade "
                       "function set with cprkit_control_set_upgrade_fn)");
        return;
    }

    sdnotify_sendf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64
                   "\nSTATUS=cprkit: update to %s: checking blockers",
                   control_now_ns() / 1000, binary);
    send_phase(cl->fd, "blockers", binary);
    r = cprkit_check_update(ctx, binary);
    if (r < 0) {
        upgrade_failed(c, cl, "blockers", binary, cprkit_last_error(ctx));
        return;
    }
    /* The connection crosses exec: the new binary answers it. */
    r = cprkit_fd_save(ctx, CONTROL_CLIENT_FD_NAME, 0, cl->fd);
    if (r < 0) {
        upgrade_failed(c, cl, "preserve", binary, cprkit_last_error(ctx));
        return;
    }
    send_phase(cl->fd, "exec", binary);
    sdnotify_sendf("STATUS=cprkit: exec %s", binary);
    cprkit_log(ctx, LOG_INFO, "control: upgrade to %s requested by pid %d",
            binary, (int)cl->pid);

    /* Whatever failed before this request must not be reported as the
     * reason this one failed. */
    cprkit_clear_error(ctx);
    r = c->upgrade_fn(c->upgrade_userdata, ctx, binary, argv);

    /* Still here: the update did not happen. */
    {
        g_autofree char *why = g_strdup(
            r < 0 ? cprkit_last_error(ctx) : "the application's upgrade "
                                              "function returned without "
                                              "exec'ing");

        if (r < 0 && !*why) {
            g_free(why);
            why = g_strdup(strerror(-r));
        }
        cprkit_fd_remove(ctx, CONTROL_CLIENT_FD_NAME, 0);
        upgrade_failed(c, cl, "exec", binary, why);
    }
}

/* ---- serving requests ----------------------------------------------------- */

static void handle_request(cprkit_control *c, struct control_client *cl,
                           const char *line, size_t len)
{
    json_auto_t *req = NULL;
    json_error_t error;
    bool bad = false;
    const char *cmd;

    if (memchr(line, '\0', len)) {
        reply_error(cl->fd, "error", "request contains a NUL byte");
        return;
    }
    if (!g_utf8_validate(line, (gssize)len, NULL)) {
        reply_error(cl->fd, "error", "request is not valid UTF-8");
        return;
    }
    /* JSON_DECODE_ANY: a scalar or an array is JSON, just not a request. */
    req = json_loadb(line, len, JSON_DECODE_ANY, &error);
    if (!req) {
        reply_error(cl->fd, "error", "request is not JSON: %d:%d: %s",
                    error.line, error.column, error.text);
        return;
    }
    if (!json_is_object(req)) {
        reply_error(cl->fd, "error", "request must be a JSON object");
        return;
    }
    cmd = get_string_member(req, "cmd", &bad);
    if (!cmd) {
        reply_error(cl->fd, "error", "request has no \"cmd\" string");
        return;
    }
    if (strcmp(cmd, "status") == 0)
        handle_status(c, cl);
    else if (strcmp(cmd, "inspect") == 0)
        handle_inspect(c, cl, req);
    else if (strcmp(cmd, "check") == 0)
        handle_check(c, cl, req);
    else if (strcmp(cmd, "upgrade") == 0)
        handle_upgrade(c, cl, req);
    else
        reply_error(cl->fd, "error",
                    "unknown command \"%.64s\" (status, inspect, check, "
                    "upgrade)",
                    cmd);
}

static void client_drop(cprkit_control *c, struct control_client *cl)
{
    epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, cl->fd, NULL);
    g_ptr_array_remove(c->clients, cl); /* frees and closes */
}

/* Reads what is there; serves every complete line. Returns false when the
 * client is done (EOF, error, oversized request) and was dropped. */
static bool client_serve(cprkit_control *c, struct control_client *cl)
{
    bool eof = false;

    for (;;) {
        char chunk[4096];
        ssize_t n = recv(cl->fd, chunk, sizeof(chunk), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            eof = true;
            break;
        }
        g_string_append_len(cl->buf, chunk, n);
        if (cl->buf->len > CONTROL_MAX_REQUEST + 1)
            break;
    }

    for (;;) {
        char *nl = memchr(cl->buf->str, '\n', cl->buf->len);
        size_t len;

        if (!nl)
            break;
        len = (size_t)(nl - cl->buf->str);
        if (len > CONTROL_MAX_REQUEST)
            break;
        {
            g_autofree char *line = g_strndup(cl->buf->str, len);

            g_string_erase(cl->buf, 0, (gssize)len + 1);
            if (len > 0)
                handle_request(c, cl, line, len);
        }
    }
    if (cl->buf->len > CONTROL_MAX_REQUEST) {
        reply_error(cl->fd, "error", "request longer than %u bytes",
                    CONTROL_MAX_REQUEST);
        client_drop(c, cl);
        return false;
    }
    if (eof) {
        client_drop(c, cl);
        return false;
    }
    return true;
}

static void accept_clients(cprkit_control *c)
{
    for (;;) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct control_client *cl;
        struct epoll_event ev = {.events = EPOLLIN};
        int fd = accept4(c->listen_fd, NULL, NULL,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE: try again at the next dispatch */
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            close(fd);
            continue;
        }
        /* Only the same user or root may drive updates. */
        if (cred.uid != 0 && cred.uid != geteuid()) {
            cprkit_log(c->ctx, LOG_WARNING,
                    "control: refused a client with uid %u (pid %d)",
                    (unsigned)cred.uid, (int)cred.pid);
            reply_error(fd, "error",
                        "permission denied: uid %u may not control this "
                        "process (only uid %u or root)",
                        (unsigned)cred.uid, (unsigned)geteuid());
            close(fd);
            continue;
        }
        if (c->clients->len >= CONTROL_MAX_CLIENTS) {
            reply_error(fd, "error", "busy: too many control connections");
            close(fd);
            continue;
        }
        cl = g_new0(struct control_client, 1);
        cl->fd = fd;
        cl->buf = g_string_new(NULL);
        cl->uid = cred.uid;
        cl->pid = cred.pid;
        ev.data.ptr = cl;
        if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            client_free(cl);
            continue;
        }
        g_ptr_array_add(c->clients, cl);
    }
}

/* ---- the incoming side: answering the client of the update -------------- */

static void finish_update(cprkit_control *c, uint64_t serving_ns)
{
    cprkit_ctx *ctx = c->ctx;
    uint64_t suspend = cprkit_timestamp(ctx, "suspend");
    uint64_t blackout = suspend && serving_ns > suspend ? serving_ns - suspend
                                                        : 0;
    bool rolled_back = cprkit_is_rollback(ctx);
    const char *reason = rolled_back ? cprkit_rollback_reason(ctx) : NULL;
    g_autofree char *exe = self_exe();

    c->update_pending = false;
    record_result(c, rolled_back ? "rolled-back" : "committed",
                  rolled_back ? "restore" : "commit", reason, blackout);
    if (c->pending_fd >= 0) {
        json_auto_t *o = json_object();

        set_bool(o, "ok", !rolled_back);
        set_str(o, "result", c->last_result);
        set_int(o, "pid", getpid());
        set_str(o, "binary", exe);
        set_str(o, "version", PROJECT_VERSION);
        set_int(o, "generation", (json_int_t)cprkit_generation(ctx));
        set_int(o, "blackout_us", (json_int_t)(blackout / 1000));
        set_int(o, "blackout_ns", (json_int_t)blackout);
        if (rolled_back)
            set_str(o, "reason", reason);
        write_json(c->pending_fd, o);
        closep(&c->pending_fd);
        c->pending_fd = -1;
        cprkit_fd_remove(ctx, CONTROL_CLIENT_FD_NAME, 0);
    }
    if (rolled_back)
        sdnotify_sendf("READY=1\nSTATUS=cprkit: update rolled back, "
                       "generation %" PRIu64 " serving: %s",
                       cprkit_generation(ctx), reason ? reason : "");
    else
        sdnotify_sendf("READY=1\nSTATUS=cprkit: update committed, "
                       "generation %" PRIu64 ", blackout %" PRIu64 " us",
                       cprkit_generation(ctx), blackout / 1000);
    cprkit_log(ctx, LOG_INFO, "control: update %s, blackout %" PRIu64 " us",
            c->last_result, blackout / 1000);
}

/* ---- public API ----------------------------------------------------------- */

struct fd_query {
    const char *name;
    int id;
    bool found;
};

static void match_fd(void *userdata, const char *name, int id, int fd,
                     enum cprkit_fd_type type)
{
    struct fd_query *q = userdata;

    if (id == q->id && strcmp(name, q->name) == 0)
        q->found = true;
}

/* Whether (name, id) is registered, without claiming it. */
static bool control_fd_registered(cprkit_ctx *ctx, const char *name, int id)
{
    struct fd_query q = {name, id, false};

    cprkit_fd_foreach(ctx, match_fd, &q);
    return q.found;
}

int control_fail(cprkit_ctx *ctx, int error, const char *fmt, ...)
{
    _cleanup_free_ char *msg = NULL;
    va_list ap;

    /* vasprintf, not GLib: messages use %m. */
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    cprkit_set_error(ctx, error, "%s", msg ? msg : "");
    if (msg)
        cprkit_log(ctx, LOG_DEBUG, "error: %s", msg);
    return error;
}

uint64_t control_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bind_listen(cprkit_ctx *ctx, const char *path, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -EBADF;

    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return control_fail(ctx, -errno, "control socket: %m");
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        _cleanup_close_ int probe = -EBADF;

        if (errno != EADDRINUSE)
            return control_fail(ctx, -errno, "cannot bind control socket %s: %m",
                            path);
        /* A socket file nobody accepts on is left over from a process
         * that died: replace it. A live one belongs to someone else. */
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return control_fail(ctx, -errno, "control socket: %m");
        if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
            errno != ECONNREFUSED)
            return control_fail(ctx, -EADDRINUSE,
                            "control socket %s is in use by another process",
                            path);
        if (unlink(path) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return control_fail(ctx, -errno, "cannot bind control socket %s: %m",
                            path);
    }
    /* Peer credentials are the real check; the mode keeps others from
     * even connecting. */
    if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        int r = -errno;

        unlink(path);
        return control_fail(ctx, r, "control socket %s: %s", path, strerror(-r));
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static char *socket_path_of(int fd)
{
    struct sockaddr_un sa = {0};
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
        sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path))
        return NULL;
    return g_strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
}

CPRKIT_EXPORT int cprkit_control_listen(cprkit_ctx *ctx,
                                        const char *socket_path,
                                        cprkit_control **ret_control)
{
    const char *path = socket_path ? socket_path
                                   : getenv(CPRKIT_CONTROL_SOCKET_ENV);
    g_autofree char *reclaimed_path = NULL;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    _cleanup_close_ int listen_fd = -EBADF;
    _cleanup_close_ int epoll_fd = -EBADF;
    cprkit_control *c;
    int r;

    if (!ret_control)
        return control_fail(ctx, -EINVAL, "cprkit_control_listen needs ret_control");

    if (control_fd_registered(ctx, CONTROL_LISTEN_FD_NAME, 0)) {
        /* Started by an update: the socket is already listening (clients
         * that connected during the exec wait in its backlog). */
        r = cprkit_fd_find(ctx, CONTROL_LISTEN_FD_NAME, 0, CPRKIT_FD_SOCKET);
        if (r < 0)
            return r;
        listen_fd = r;
        reclaimed_path = socket_path_of(listen_fd);
        if (!reclaimed_path) {
            listen_fd = -EBADF;
            return control_fail(ctx, -ENOTSOCK,
                            "preserved control socket has no path");
        }
        path = reclaimed_path;
    } else {
        if (!path || !*path)
            return control_fail(ctx, -EINVAL,
                            "no control socket path: pass one or set %s",
                            CPRKIT_CONTROL_SOCKET_ENV);
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return control_fail(ctx, -ENAMETOOLONG,
                            "control socket path %s is too long", path);
        r = bind_listen(ctx, path, &listen_fd);
        if (r < 0)
            return r;
        r = cprkit_fd_save(ctx, CONTROL_LISTEN_FD_NAME, 0, listen_fd);
        if (r < 0) {
            unlink(path);
            return r;
        }
    }

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0 ||
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        r = -errno;
        if (!reclaimed_path) {
            cprkit_fd_remove(ctx, CONTROL_LISTEN_FD_NAME, 0);
            unlink(path);
        } else {
            listen_fd = -EBADF; /* stays preserved */
        }
        return control_fail(ctx, r, "control endpoint: epoll: %s", strerror(-r));
    }

    c = g_new0(cprkit_control, 1);
    c->ctx = ctx;
    c->path = g_strdup(path);
    c->listen_fd = TAKE_FD(listen_fd);
    c->epoll_fd = TAKE_FD(epoll_fd);
    c->clients = g_ptr_array_new_with_free_func((GDestroyNotify)client_free);
    c->pending_fd = -1;
    c->update_pending = cprkit_is_incoming(ctx);

    /* The client that asked for this update: claimed now (it must be, or
     * commit fails), kept registered until it is answered so that a
     * rollback hands it back to the previous binary too. */
    if (control_fd_registered(ctx, CONTROL_CLIENT_FD_NAME, 0)) {
        r = cprkit_fd_find(ctx, CONTROL_CLIENT_FD_NAME, 0, CPRKIT_FD_SOCKET);
        if (r >= 0) {
            c->pending_fd = r;
            send_phase(c->pending_fd, cprkit_is_rollback(ctx) ? "rolling-back"
                                                             : "restoring",
                       NULL);
        }
    }
    if (c->update_pending)
        sdnotify_sendf("STATUS=cprkit: %s, generation %" PRIu64,
                       cprkit_is_rollback(ctx) ? "rolling back" : "restoring",
                       cprkit_generation(ctx));
    cprkit_log(ctx, LOG_INFO, "control: %s %s", reclaimed_path ? "reclaimed"
                                                            : "listening on",
            c->path);
    *ret_control = c;
    return 0;
}

CPRKIT_EXPORT int cprkit_control_fd(const cprkit_control *control)
{
    return control->epoll_fd;
}

CPRKIT_EXPORT void cprkit_control_set_upgrade_fn(cprkit_control *control,
                                                 cprkit_upgrade_fn fn,
                                                 void *userdata)
{
    control->upgrade_fn = fn;
    control->upgrade_userdata = userdata;
}

CPRKIT_EXPORT int cprkit_control_mark_serving(cprkit_control *control)
{
    if (cprkit_is_incoming(control->ctx))
        return control_fail(control->ctx, -EBUSY,
                        "the incoming update is not committed yet");
    if (control->update_pending)
        finish_update(control, control_now_ns());
    else
        sdnotify_sendf("READY=1\nSTATUS=cprkit: serving, generation %" PRIu64,
                       cprkit_generation(control->ctx));
    return 0;
}

CPRKIT_EXPORT uint64_t
cprkit_control_last_blackout_ns(const cprkit_control *control)
{
    return control->last_blackout_ns;
}

CPRKIT_EXPORT int cprkit_control_dispatch(cprkit_control *c)
{
    /* Committed without saying so: the reply goes out now. */
    if (c->update_pending && !cprkit_is_incoming(c->ctx))
        finish_update(c, control_now_ns());

    for (int round = 0; round < 8; round++) {
        struct epoll_event events[16];
        int n = epoll_wait(c->epoll_fd, events, ELEMENTSOF(events), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return control_fail(c->ctx, -errno, "control endpoint: epoll: %m");
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            struct control_client *cl = events[i].data.ptr;

            if (!cl) {
                accept_clients(c);
                continue;
            }
            /* A client dropped earlier in this round is gone from the
             * array; its event must not be used. */
            if (!g_ptr_array_find(c->clients, cl, NULL))
                continue;
            client_serve(c, cl);
        }
    }
    return 0;
}

CPRKIT_EXPORT void cprkit_control_free(cprkit_control *c)
{
    if (!c)
        return;
    g_ptr_array_unref(c->clients);
    closep(&c->epoll_fd);
    if (c->pending_fd >= 0) {
        cprkit_fd_remove(c->ctx, CONTROL_CLIENT_FD_NAME, 0);
        close(c->pending_fd);
    }
    cprkit_fd_remove(c->ctx, CONTROL_LISTEN_FD_NAME, 0);
    closep(&c->listen_fd);
    if (c->path)
        unlink(c->path);
    g_free(c->path);
    g_free(c->last_result);
    g_free(c->last_phase);
    g_free(c->last_error);
    g_free(c);
}
