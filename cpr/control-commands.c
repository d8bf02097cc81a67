/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint's commands: a request line is parsed here and
 * handed to its handler by name (control_commands[]). "upgrade" lives
 * with the update's state machine (control-upgrade.c).
 */
#include <string.h>
#include <sys/resource.h>

#include "control-endpoint.h"

/* "last_update": the latest update, or null; "history": every update
 * remembered, oldest first, the latest included. */
static void add_updates(cprkit_control *c, json_t *o)
{
    size_t n = json_array_size(c->history);

    json_object_set_new(o, "last_update",
                        n ? json_deep_copy(json_array_get(c->history, n - 1))
                          : json_null());
    json_object_set_new(o, "history", json_deep_copy(c->history));
}

static void add_fd(void *userdata, const char *name, int id, int fd,
                   enum cprkit_fd_type type)
{
    json_t *f = json_object();

    control_set_str(f, "name", name);
    control_set_int(f, "id", id);
    control_set_int(f, "fd", fd);
    control_set_str(f, "type", cprkit_fd_type_name(type));
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
        control_set_int(p, key, (json_int_t)value);
    }
}

/* {"owner": ..., "reason": ...}: a registered update blocker. */
static void add_blocker(void *userdata, const char *owner, const char *reason)
{
    json_t *b = json_object();

    control_set_str(b, "owner", owner);
    control_set_str(b, "reason", reason);
    json_array_append_new(userdata, b);
}

/* "keeper": null, or who keeps our fds and how often it restarted us. */
static void add_keeper(cprkit_ctx *ctx, json_t *o)
{
    struct cprkit_keeper_status ks = {.size = sizeof(ks)};
    json_t *k;

    if (cprkit_keeper_status(ctx, &ks) < 0) {
        json_object_set_new(o, "keeper", json_null());
        return;
    }
    k = json_object();
    control_set_int(k, "pid", ks.pid);
    control_set_bool(k, "reachable", ks.reachable);
    control_set_int(k, "restarts", ks.restarts);
    if (ks.last_cause) {
        g_autoptr(GDateTime) at = g_date_time_new_from_unix_utc(
            (gint64)(ks.last_restart_realtime_us / 1000000u));
        g_autofree char *iso = at ? g_date_time_format_iso8601(at) : NULL;

        control_set_str(k, "last_cause", ks.last_cause);
        control_set_str(k, "last_restart", iso);
    } else {
        json_object_set_new(k, "last_cause", json_null());
        json_object_set_new(k, "last_restart", json_null());
    }
    json_object_set_new(o, "keeper", k);
}

static void cmd_status(cprkit_control *c, struct control_client *cl,
                       const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    json_auto_t *o = json_object();
    g_autofree char *exe = control_self_exe();
    json_t *fds, *blockers;

    control_set_bool(o, "ok", true);
    control_set_str(o, "result", "status");
    control_set_int(o, "pid", getpid());
    control_set_str(o, "version", PROJECT_VERSION);
    control_set_int(o, "format_major", CPRKIT_FORMAT_MAJOR);
    control_set_int(o, "generation", (json_int_t)cprkit_generation(ctx));
    control_set_str(o, "binary", exe);
    control_set_bool(o, "incoming", cprkit_is_incoming(ctx));
    control_set_bool(o, "upgrade_enabled", c->upgrade_fn != NULL);
    control_set_str(o, "socket", c->path);

    fds = json_array();
    cprkit_fd_foreach(ctx, add_fd, fds);
    json_object_set_new(o, "fds", fds);
    blockers = json_array();
    cprkit_blocker_foreach(ctx, add_blocker, blockers);
    json_object_set_new(o, "blockers", blockers);
    cprkit_participant_stats(ctx, add_participant_stat, o);

    add_updates(c, o);
    add_keeper(ctx, o);
    control_write_reply(cl->fd, cl->req_id, o);
}

/* {"cmd":"inspect"}: the blob an update would write now, decoded the way
 * `inspect FILE` decodes a file (frame, rollback, state, corrupt: one
 * shape for both); with "blob":true also the encoded blob (base64). */
static void cmd_inspect(cprkit_control *c, struct control_client *cl,
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
        control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_FAILED,
                            "cannot build the state: %s",
                            cprkit_last_error(ctx));
        return;
    }
    o = json_object();
    control_set_bool(o, "ok", true);
    control_set_str(o, "result", "inspect");
    json_object_update(o, decoded);
    if (json_is_true(json_object_get(req, "blob"))) {
        g_autofree char *b64 = g_base64_encode(blob, size);

        control_set_str(o, "blob_base64", b64);
    }
    control_write_reply(cl->fd, cl->req_id, o);
}

/* A string member, or NULL if absent; *ret_bad when present but not a
 * string. */
const char *control_get_string(const json_t *obj, const char *name,
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

/* Memory pinned for DMA: every participant's "mapped_bytes" (type1) or
 * "<participant>_mapped_bytes" (iommufd_mapped_bytes). */
static void add_mapped_bytes(void *userdata, const char *participant,
                             const char *key, uint64_t value,
                             const char *const *names)
{
    size_t len = strlen(key);

    if (len >= 12 && strcmp(key + len - 12, "mapped_bytes") == 0)
        *(uint64_t *)userdata += value;
}

static void cmd_check(cprkit_control *c, struct control_client *cl,
                      const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    json_auto_t *o = json_object();
    json_t *memlock;
    g_autofree char *exe = control_self_exe();
    bool bad = false;
    const char *binary = control_get_string(req, "binary", &bad);
    struct rlimit rl = {0};
    uint64_t pinned = 0;
    int r;

    if (bad) {
        control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST,
                            "\"binary\" must be a string");
        return;
    }
    /* By default the binary at this program's path, which is the new
     * version when a package upgrade replaced the file. */
    if (exe && g_str_has_suffix(exe, " (deleted)"))
        exe[strlen(exe) - strlen(" (deleted)")] = '\0';
    if (!binary)
        binary = exe;
    r = cprkit_check_update(ctx, binary);
    getrlimit(RLIMIT_MEMLOCK, &rl);

    control_set_bool(o, "ok", r >= 0);
    control_set_str(o, "result", r >= 0 ? "ok" : "blocked");
    control_set_str(o, "binary", binary);
    if (r >= 0)
        json_object_set_new(o, "error", json_null());
    else
        json_object_set_new(
            o, "error",
            control_error_new(CONTROL_ERROR_BLOCKED, cprkit_last_error(ctx)));
    control_set_int(o, "format_major", CPRKIT_FORMAT_MAJOR);
    control_set_int(o, "pid", getpid());
    cprkit_participant_stats(ctx, add_mapped_bytes, &pinned);
    control_set_int(o, "pinned_bytes", (json_int_t)pinned);
    memlock = json_object();
    control_set_int(memlock, "soft",
                    rl.rlim_cur == RLIM_INFINITY ? -1
                                                 : (json_int_t)rl.rlim_cur);
    control_set_int(memlock, "hard",
                    rl.rlim_max == RLIM_INFINITY ? -1
                                                 : (json_int_t)rl.rlim_max);
    json_object_set_new(o, "memlock", memlock);
    control_write_reply(cl->fd, cl->req_id, o);
}

/* Requests by their "cmd" member. */
static const struct control_command {
    const char *name;
    control_command_fn handle;
} control_commands[] = {
    {"status", cmd_status},
    {"inspect", cmd_inspect},
    {"check", cmd_check},
    {"upgrade", control_cmd_upgrade},
};

/* "status, inspect, check, upgrade": for the unknown-command reply. */
static char *command_names(void)
{
    GString *names = g_string_new(NULL);

    for (size_t i = 0; i < ELEMENTSOF(control_commands); i++)
        g_string_append_printf(names, "%s%s", i ? ", " : "",
                               control_commands[i].name);
    return g_string_free(names, false);
}

/* Hands a request object to the handler its "cmd" names. */
static void dispatch_request(cprkit_control *c, struct control_client *cl,
                             const json_t *req)
{
    g_autofree char *names = NULL;
    bool bad = false;
    const char *cmd = control_get_string(req, "cmd", &bad);

    if (!cmd) {
        control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST,
                            "request has no \"cmd\" string");
        return;
    }
    for (size_t i = 0; i < ELEMENTSOF(control_commands); i++) {
        if (strcmp(cmd, control_commands[i].name) == 0) {
            control_commands[i].handle(c, cl, req);
            return;
        }
    }
    names = command_names();
    control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST,
                        "unknown command \"%.64s\" (%s)", cmd, names);
}

void control_handle_request(cprkit_control *c, struct control_client *cl,
                            const char *line, size_t len)
{
    json_auto_t *req = NULL;
    json_error_t error;

    if (memchr(line, '\0', len)) {
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BAD_REQUEST,
                            "request contains a NUL byte");
        return;
    }
    if (!g_utf8_validate(line, (gssize)len, NULL)) {
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BAD_REQUEST,
                            "request is not valid UTF-8");
        return;
    }
    /* JSON_DECODE_ANY: a scalar or an array is JSON, just not a request. */
    req = json_loadb(line, len, JSON_DECODE_ANY, &error);
    if (!req) {
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BAD_REQUEST,
                            "request is not JSON: %d:%d: %s", error.line,
                            error.column, error.text);
        return;
    }
    if (!json_is_object(req)) {
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BAD_REQUEST,
                            "request must be a JSON object");
        return;
    }
    /* Echoed in every reply and event of this request, an error included
     * (QMP's convention); borrowed from req, so cleared with it. */
    cl->req_id = json_object_get(req, "id");
    dispatch_request(c, cl, req);
    cl->req_id = NULL;
}
