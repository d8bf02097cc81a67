/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The update as the control endpoint sees it. Old side: "upgrade" checks
 * the blockers, preserves the client's connection and calls the
 * application's upgrade function, which execs; if it returns, the update
 * failed and the client is told so. New side (or the old binary again,
 * after a rollback): the preserved client is answered once the program
 * serves (control_finish_update()). Every step is also reported to the
 * service manager (sd-notify.c) and kept for "status".
 */
#include <string.h>

#include "control-endpoint.h"
#include "sd-notify.h"

/* The record's layout; a reader ignores what it does not know. */
#define CONTROL_RECORD_VERSION 1
/* No record read is larger (16 entries are a few KiB, the request id at
 * most a request), and no string in an entry is longer. */
#define CONTROL_RECORD_MAX (1u << 20)
#define CONTROL_ENTRY_STRING_MAX 4096
/* Phases of one update: a handful are sent; more are not kept. */
#define CONTROL_PHASES_MAX 16

/* Writes the record into the state: the next exec (or the keeper) hands
 * it over. A failure is logged, not fatal: the update goes on without it. */
static void record_save(cprkit_control *c)
{
    json_auto_t *o = json_object();
    _cleanup_free_ char *text = NULL;

    control_set_int(o, "version", CONTROL_RECORD_VERSION);
    json_object_set(o, "history", c->history);
    if (c->current)
        json_object_set(o, "current", c->current);
    if (c->pending_id)
        json_object_set(o, "pending_id", c->pending_id);
    text = json_dumps(o, JSON_COMPACT);
    if (!text ||
        cprkit_section_put(c->ctx, CONTROL_SECTION, text, strlen(text)) < 0) {
        cprkit_log(c->ctx, LOG_WARNING,
                   "control: cannot record the update for the next binary: "
                   "%s",
                   text ? cprkit_last_error(c->ctx) : "out of memory");
        cprkit_clear_error(c->ctx);
    }
}

/* At most max elements of a, the last ones, that are objects. */
static json_t *last_objects(const json_t *a, size_t max)
{
    json_t *kept = json_array();
    size_t n = json_array_size(a);

    for (size_t i = n > max ? n - max : 0; i < n; i++)
        if (json_is_object(json_array_get(a, i)))
            json_array_append(kept, json_array_get(a, i));
    return kept;
}

void control_record_load(cprkit_control *c)
{
    json_auto_t *o = NULL;
    const json_t *current;
    const void *data;
    size_t size;

    if (cprkit_section_get(c->ctx, CONTROL_SECTION, &data, &size) < 0) {
        cprkit_clear_error(c->ctx); /* none: a first start, or an old one */
        return;
    }
    if (size <= CONTROL_RECORD_MAX)
        o = json_loadb(data, size, 0, NULL);
    if (!json_is_object(o)) {
        cprkit_log(c->ctx, LOG_DEBUG,
                   "control: ignoring an unreadable %s section",
                   CONTROL_SECTION);
        return;
    }
    /* Written by this code or a newer one: take what has the expected
     * shape, within the bounds, and ignore the rest. */
    json_decref(c->history);
    c->history =
        last_objects(json_object_get(o, "history"), CONTROL_HISTORY_MAX);
    current = json_object_get(o, "current");
    json_decref(c->current);
    c->current = NULL;
    if (json_is_object(current)) {
        c->current = json_object();
        json_object_set(c->current, "binary",
                        json_object_get(current, "binary"));
        json_object_set_new(c->current, "phases",
                            last_objects(json_object_get(current, "phases"),
                                         CONTROL_PHASES_MAX));
    }
    json_decref(c->pending_id);
    c->pending_id = json_incref(json_object_get(o, "pending_id"));
}

/* A string for an entry: at most CONTROL_ENTRY_STRING_MAX bytes, so that
 * the record stays bounded whatever an error message or path holds. */
static json_t *entry_string(const char *s)
{
    g_autofree char *cut = NULL;

    if (s && strlen(s) > CONTROL_ENTRY_STRING_MAX)
        s = cut = g_strndup(s, CONTROL_ENTRY_STRING_MAX);
    return json_utf8_string(s); /* a cut character becomes U+FFFD */
}

/* The record of an update to binary, before its first phase. */
static json_t *update_new(const char *binary)
{
    json_t *update = json_object();

    json_object_set_new(update, "binary", entry_string(binary));
    json_object_set_new(update, "phases", json_array());
    return update;
}

void control_update_phase(json_t *update, int fd, const json_t *id,
                          const char *phase, const char *binary)
{
    uint64_t monotonic_ns = control_now_ns();
    uint64_t realtime_ns = control_realtime_ns();
    json_t *phases = json_object_get(update, "phases");

    control_send_phase(fd, id, phase, binary, monotonic_ns, realtime_ns);
    if (json_is_array(phases) && json_array_size(phases) < CONTROL_PHASES_MAX) {
        json_t *p = json_object();

        control_set_str(p, "phase", phase);
        control_set_int(p, "pid", getpid());
        control_set_int(p, "monotonic_ns", (json_int_t)monotonic_ns);
        control_set_int(p, "realtime_ns", (json_int_t)realtime_ns);
        json_array_append_new(phases, p);
    }
}

/* The core's timestamps of the update that started this binary (names of
 * cprkit_timestamp()), as inspect shows them. */
static json_t *update_timestamps(cprkit_control *c)
{
    static const char *const names[] = {"update-start", "suspend", "suspended",
                                        "exec",         "execve",  "loaded",
                                        "died"};
    json_t *ts = json_object();

    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        uint64_t ns = cprkit_timestamp(c->ctx, names[i]);

        if (ns)
            control_set_int(ts, names[i], (json_int_t)ns);
    }
    return ts;
}

/* Ends update (its binary and phases; NULL: none recorded) as an entry of
 * the history, the oldest dropped beyond CONTROL_HISTORY_MAX, and hands
 * the record on. The update under way (c->current) ends with it if it is
 * that one. failed: whether there is a cause (error_class, error); a
 * committed update has none. binary: what the update was to, when no
 * request said (a keeper restart). incoming: this binary was started by
 * it, so the core has its timestamps (the binary that took the request
 * cannot read its own through the API: the entry of an update that failed
 * there has none). */
static void record_result(cprkit_control *c, json_t *update, const char *result,
                          const char *phase, const char *binary, bool failed,
                          enum control_error_class error_class,
                          const char *error, uint64_t blackout_ns,
                          bool incoming)
{
    json_t *e = json_object();
    json_t *phases = json_object_get(update, "phases");

    control_set_str(e, "result", result);
    control_set_str(e, "phase", phase);
    if (failed) {
        g_autofree char *cut =
            g_strndup(error ? error : "", CONTROL_ENTRY_STRING_MAX);

        json_object_set_new(e, "error", control_error_new(error_class, cut));
    } else {
        json_object_set_new(e, "error", json_null());
    }
    if (json_is_string(json_object_get(update, "binary")))
        json_object_set(e, "binary", json_object_get(update, "binary"));
    else
        json_object_set_new(e, "binary", entry_string(binary));
    control_set_int(e, "generation", (json_int_t)cprkit_generation(c->ctx));
    control_set_int(e, "blackout_us", (json_int_t)(blackout_ns / 1000));
    control_set_int(e, "blackout_ns", (json_int_t)blackout_ns);
    json_object_set_new(e, "phases",
                        json_is_array(phases) ? json_incref(phases)
                                              : json_array());
    json_object_set_new(e, "timestamps",
                        incoming ? update_timestamps(c) : json_object());

    json_array_append_new(c->history, e);
    while (json_array_size(c->history) > CONTROL_HISTORY_MAX)
        json_array_remove(c->history, 0);
    if (update && update == c->current) {
        json_decref(c->current);
        c->current = NULL;
    }
    c->last_blackout_ns = blackout_ns;
    record_save(c);
}

/* This process's own argv, or NULL when it cannot be read. (Whether its
 * binary is still on disk for a rollback is a blocker of its own.) */
static char **self_argv(void)
{
    g_autofree char *cmdline = NULL;
    GPtrArray *argv;
    gsize size;

    if (!g_file_get_contents("/proc/self/cmdline", &cmdline, &size, NULL))
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
static char **upgrade_argv(const char *binary, const json_t *args,
                           const char **ret_error)
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
                           json_t *update, const char *phase,
                           enum control_error_class error_class,
                           const char *binary, const char *error_arg)
{
    /* Callers pass cprkit_last_error(), which the keeper sync below may
     * replace: work on a copy. */
    g_autofree char *error = g_strdup(error_arg);
    json_auto_t *o = json_object();

    /* Answered here: nothing crosses an exec any more. */
    json_decref(c->pending_id);
    c->pending_id = NULL;
    record_result(c, update, "failed", phase, binary, true, error_class, error,
                  0, false);
    /* The keeper has what this process now is (the history, a rollback
     * binary the request named) before the client hears the result: a
     * crash right after it restarts from that. */
    control_keeper_sync(c);
    control_set_bool(o, "ok", false);
    control_set_str(o, "result", "failed");
    control_set_str(o, "phase", phase);
    control_set_str(o, "binary", binary);
    json_object_set_new(o, "error", control_error_new(error_class, error));
    control_set_int(o, "pid", getpid());
    control_set_int(o, "generation", (json_int_t)cprkit_generation(c->ctx));
    control_write_reply(cl->fd, cl->req_id, o);
    /* Still the old version, serving. */
    sdnotify_sendf("READY=1\nSTATUS=cprkit: update to %s failed (%s): %s",
                   binary, phase, error);
}

void control_cmd_upgrade(cprkit_control *c, struct control_client *cl,
                         const json_t *req)
{
    cprkit_ctx *ctx = c->ctx;
    bool bad = false;
    const char *binary = control_get_string(req, "binary", &bad);
    const char *rollback = control_get_string(req, "rollback_binary", &bad);
    const char *argv_error = NULL;
    const json_t *commit_timeout;
    g_auto(GStrv) argv = NULL;
    json_auto_t *update = NULL;
    int r;

    if (bad || !binary || binary[0] != '/' ||
        (rollback && rollback[0] != '/')) {
        control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST,
                            "\"upgrade\" needs \"binary\" (and takes "
                            "\"rollback_binary\"): absolute paths");
        return;
    }
    argv = upgrade_argv(binary, json_object_get(req, "args"), &argv_error);
    if (!argv) {
        control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST, "%s",
                            argv_error);
        return;
    }
    commit_timeout = json_object_get(req, "commit_timeout_ms");
    if (commit_timeout) {
        if (!json_is_integer(commit_timeout) ||
            json_integer_value(commit_timeout) < 1 ||
            json_integer_value(commit_timeout) > UINT32_MAX) {
            control_reply_error(cl->fd, cl->req_id, CONTROL_ERROR_BAD_REQUEST,
                                "\"commit_timeout_ms\" must be a positive "
                                "integer");
            return;
        }
        cprkit_set_commit_timeout(
            ctx, (uint32_t)json_integer_value(commit_timeout));
    } else {
        cprkit_set_commit_timeout(ctx, CONTROL_DEFAULT_COMMIT_TIMEOUT_MS);
    }
    /* From here on the attempt is an update: it goes into the history. */
    update = update_new(binary);
    if (!c->upgrade_fn) {
        upgrade_failed(c, cl, update, CONTROL_PHASE_REQUEST,
                       CONTROL_ERROR_NOT_SUPPORTED, binary,
                       "this program does not accept upgrades (no upgrade "
                       "function set with cprkit_control_set_upgrade_fn)");
        return;
    }

    sdnotify_sendf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64
                   "\nSTATUS=cprkit: update to %s: checking blockers",
                   control_now_ns() / 1000, binary);
    control_update_phase(update, cl->fd, cl->req_id, CONTROL_PHASE_BLOCKERS,
                         binary);
    /* A copy of this binary, for a rollback when its file was replaced
     * on disk: checked (same bytes) before the blockers, which need it. */
    r = rollback ? cprkit_set_rollback_binary(ctx, rollback) : 0;
    if (r >= 0)
        r = cprkit_check_update(ctx, binary);
    if (r < 0) {
        upgrade_failed(c, cl, update, CONTROL_PHASE_BLOCKERS,
                       CONTROL_ERROR_BLOCKED, binary, cprkit_last_error(ctx));
        return;
    }
    /* The connection crosses exec: the new binary answers it. The
     * keeper holds it too, so that whoever it starts if this process or
     * the new binary dies answers it. */
    r = cprkit_fd_save(ctx, CONTROL_CLIENT_FD_NAME, 0, cl->fd);
    if (r < 0) {
        upgrade_failed(c, cl, update, CONTROL_PHASE_PRESERVE,
                       CONTROL_ERROR_FAILED, binary, cprkit_last_error(ctx));
        return;
    }
    /* Its id too: whoever answers echoes it. */
    c->pending_id = json_incref((json_t *)cl->req_id);
    record_save(c);
    control_keeper_sync(c);
    control_update_phase(update, cl->fd, cl->req_id, CONTROL_PHASE_EXEC,
                         binary);
    /* What the next binary continues: the history, this update, the id. */
    json_decref(c->current);
    c->current = json_incref(update);
    record_save(c);
    sdnotify_sendf("STATUS=cprkit: exec %s", binary);
    cprkit_log(ctx, LOG_INFO, "control: upgrade to %s requested by pid %d",
               binary, (int)cl->pid);

    /* The other connections do not cross the exec: tell them now. */
    control_refuse_others(c, cl, binary);

    /* Whatever failed before this request must not be reported as the
     * reason this one failed. */
    cprkit_clear_error(ctx);
    r = c->upgrade_fn(c->upgrade_userdata, ctx, binary, argv);

    /* Still here: the update did not happen. */
    {
        g_autofree char *why = g_strdup(r < 0 ? cprkit_last_error(ctx)
                                              : "the application's upgrade "
                                                "function returned without "
                                                "exec'ing");

        if (r < 0 && !*why) {
            g_free(why);
            why = g_strdup(strerror(-r));
        }
        cprkit_fd_remove(ctx, CONTROL_CLIENT_FD_NAME, 0);
        upgrade_failed(c, cl, update, CONTROL_PHASE_EXEC, CONTROL_ERROR_FAILED,
                       binary, why);
    }
}

const char *control_incoming_phase(const cprkit_control *c)
{
    /* A keeper restart of the program that had taken the request: the
     * update did not happen, the same binary serves again. */
    return cprkit_is_rollback(c->ctx) ||
                   (cprkit_is_restart(c->ctx) && c->pending_fd >= 0)
               ? CONTROL_PHASE_ROLLING_BACK
               : CONTROL_PHASE_RESTORING;
}

void control_finish_update(cprkit_control *c, uint64_t serving_ns)
{
    cprkit_ctx *ctx = c->ctx;
    bool restarted = cprkit_is_restart(ctx);
    /* An update's blackout starts at the suspend; a crash restart's when
     * the keeper saw the program die. */
    uint64_t start = cprkit_timestamp(ctx, "suspend");
    uint64_t died = cprkit_timestamp(ctx, "died");
    bool rolled_back = cprkit_is_rollback(ctx);
    g_autofree char *reason = NULL;
    g_autofree char *exe = control_self_exe();
    const char *phase = control_incoming_phase(c);
    enum control_error_class error_class = CONTROL_ERROR_ROLLED_BACK;
    const char *result;
    uint64_t blackout;

    if (restarted && !rolled_back && died)
        start = died;
    blackout = start && serving_ns > start ? serving_ns - start : 0;
    if (rolled_back) {
        result = "rolled-back";
        reason = g_strdup(cprkit_rollback_reason(ctx));
    } else if (restarted && c->pending_fd >= 0) {
        /* It died after taking the request, before the exec: the update
         * did not happen, the same binary serves again. */
        result = "rolled-back";
        reason = g_strdup_printf("the program died during the update (%s) "
                                 "and was restarted by the keeper",
                                 cprkit_restart_reason(ctx));
    } else if (restarted) {
        result = "restarted";
        error_class = CONTROL_ERROR_RESTARTED;
        reason = g_strdup(cprkit_restart_reason(ctx));
    } else {
        result = "committed";
    }
    rolled_back = strcmp(result, "committed") != 0;

    c->update_pending = false;
    if (c->pending_fd >= 0) {
        json_auto_t *o = json_object();

        control_set_bool(o, "ok", !rolled_back);
        control_set_str(o, "result", result);
        control_set_str(o, "phase", phase);
        control_set_int(o, "pid", getpid());
        control_set_str(o, "binary", exe);
        control_set_str(o, "version", PROJECT_VERSION);
        control_set_int(o, "generation", (json_int_t)cprkit_generation(ctx));
        control_set_int(o, "blackout_us", (json_int_t)(blackout / 1000));
        control_set_int(o, "blackout_ns", (json_int_t)blackout);
        if (rolled_back)
            json_object_set_new(o, "error",
                                control_error_new(error_class, reason));
        control_write_reply(c->pending_fd, c->pending_id, o);
        closep(&c->pending_fd);
        c->pending_fd = -1;
        cprkit_fd_remove(ctx, CONTROL_CLIENT_FD_NAME, 0);
    }
    json_decref(c->pending_id);
    c->pending_id = NULL;
    /* After the answer: the record the keeper and the next binary get
     * has no update under way any more. */
    record_result(c, c->current, result, phase, exe, rolled_back, error_class,
                  reason, blackout, true);
    if (!strcmp(result, "restarted"))
        sdnotify_sendf("READY=1\nSTATUS=cprkit: restarted by the keeper, "
                       "generation %" PRIu64 " serving: %s",
                       cprkit_generation(ctx), reason ? reason : "");
    else if (rolled_back)
        sdnotify_sendf("READY=1\nSTATUS=cprkit: update rolled back, "
                       "generation %" PRIu64 " serving: %s",
                       cprkit_generation(ctx), reason ? reason : "");
    else
        sdnotify_sendf("READY=1\nSTATUS=cprkit: update committed, "
                       "generation %" PRIu64 ", blackout %" PRIu64 " us",
                       cprkit_generation(ctx), blackout / 1000);
    cprkit_log(ctx, LOG_INFO, "control: update %s, blackout %" PRIu64 " us",
               result, blackout / 1000);
}
