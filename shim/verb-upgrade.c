/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cpr-exec upgrade and cpr-exec status. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "cpr-exec.h"

/* The result of an upgrade as the exit code. */
static int exit_code_of(const char *result)
{
    if (!result)
        return EXIT_COMM;
    if (strcmp(result, "committed") == 0)
        return EXIT_OK;
    if (strcmp(result, "rolled-back") == 0)
        return EXIT_ROLLED_BACK;
    if (strcmp(result, "timeout") == 0)
        return EXIT_TIMEOUT;
    if (strcmp(result, "connection-lost") == 0)
        return EXIT_COMM;
    return EXIT_FAILED; /* failed, error */
}

/* {"phase","pid","monotonic_ns","realtime_ns"} of a phase event, the
 * members checked (-1 when absent or not a number). */
static JsonObject *phase_of_event(JsonObject *event)
{
    JsonObject *p = json_object_new();

    json_object_set_string_member(p, "phase", json_get_string(event, "phase"));
    json_object_set_int_member(p, "pid", json_get_int(event, "pid", -1));
    json_object_set_int_member(p, "monotonic_ns",
                               json_get_int(event, "monotonic_ns", -1));
    json_object_set_int_member(p, "realtime_ns",
                               json_get_int(event, "realtime_ns", -1));
    return p;
}

static void print_human(JsonObject *o)
{
    const char *result = json_get_string(o, "result");
    const char *error = reply_error_desc(o);

    if (g_strcmp0(result, "committed") == 0)
        printf("committed: %s (pid %" G_GINT64_FORMAT ", generation %"
               G_GINT64_FORMAT "), blackout %" G_GINT64_FORMAT " us\n",
               json_get_string(o, "binary"), json_get_int(o, "pid", -1),
               json_get_int(o, "generation", -1),
               json_get_int(o, "blackout_us", -1));
    else if (g_strcmp0(result, "rolled-back") == 0)
        printf("rolled back: the old version serves again (generation %"
               G_GINT64_FORMAT ", blackout %" G_GINT64_FORMAT " us): %s\n",
               json_get_int(o, "generation", -1),
               json_get_int(o, "blackout_us", -1),
               error ? error : "?");
    else if (g_strcmp0(result, "failed") == 0)
        printf("failed in phase %s, nothing changed: %s\n",
               json_get_string(o, "phase") ? json_get_string(o, "phase") : "?",
               error ? error : "?");
    else
        printf("%s: %s\n", result ? result : "error", error ? error : "?");
}

int verb_upgrade(int argc, char **argv)
{
    g_autofree char *arg_socket = NULL;
    g_autofree char *arg_to = NULL;
    g_autofree char *arg_rollback_to = NULL;
    g_auto(GStrv) arg_args = NULL;
    gboolean arg_json = false, arg_no_args = false;
    int arg_timeout = 0, arg_commit_timeout = 30;
    GOptionEntry entries[] = {
        {"socket", 'S', 0, G_OPTION_ARG_FILENAME, &arg_socket,
         "Control socket (default: $CPRKIT_CONTROL_SOCKET)", "PATH"},
        {"to", 't', 0, G_OPTION_ARG_FILENAME, &arg_to, "The new binary",
         "BINARY"},
        {"arg", 'a', 0, G_OPTION_ARG_STRING_ARRAY, &arg_args,
         "An argument for the new binary (repeat; also: -- ARGS...). "
         "Without any, the process's current arguments are kept",
         "ARG"},
        {"no-args", 0, 0, G_OPTION_ARG_NONE, &arg_no_args,
         "Start the new binary without arguments", NULL},
        {"rollback-to", 'R', 0, G_OPTION_ARG_FILENAME, &arg_rollback_to,
         "A copy of the running binary for a rollback to run, when its "
         "file was replaced on disk (checked to have the same bytes)",
         "COPY"},
        {"timeout", 'T', 0, G_OPTION_ARG_INT, &arg_timeout,
         "Seconds to wait for the result (default: the commit timeout "
         "plus 30)",
         "SECONDS"},
        {"commit-timeout", 'C', 0, G_OPTION_ARG_INT, &arg_commit_timeout,
         "Seconds the new binary has to commit; past them the keeper of "
         "`cpr-exec run` kills it and the old version serves again "
         "(default 30)",
         "SECONDS"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &arg_json,
         "Print the result as one JSON object", NULL},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &arg_verbose, "Debug output",
         NULL},
        {NULL},
    };
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) req = NULL;
    g_autoptr(JsonNode) final = NULL;
    g_autoptr(JsonArray) phases = json_array_new();
    g_autofree char *binary = NULL;
    struct control_conn conn = {.fd = -1};
    const char *socket;
    int64_t deadline;
    int r, code;

    if (!parse_verb_options("upgrade", "--to BINARY [-- ARGS...]",
                            "Live-updates the program behind the control "
                            "socket to BINARY and waits\nfor the result: "
                            "committed, rolled back, or failed.",
                            entries, &argc, &argv))
        return EXIT_USAGE;
    socket = socket_path_or_env(arg_socket);
    if (arg_timeout == 0 && arg_commit_timeout > 0)
        arg_timeout = arg_commit_timeout + 30;
    if (!socket || !arg_to || arg_timeout <= 0 || arg_commit_timeout <= 0 ||
        arg_commit_timeout > 4000000) {
        log_msg(LOG_ERR, "upgrade: %s (try 'cpr-exec upgrade --help')",
                !socket   ? "no --socket and no $CPRKIT_CONTROL_SOCKET"
                : !arg_to ? "--to BINARY is required"
                : arg_timeout <= 0 ? "--timeout must be positive"
                                   : "--commit-timeout must be 1..4000000 "
                                     "seconds");
        return EXIT_USAGE;
    }
    if (arg_timeout <= arg_commit_timeout)
        log_msg(LOG_WARNING,
                "upgrade: --timeout %d s is not longer than --commit-timeout "
                "%d s: a rollback after the deadline will be reported as a "
                "timeout",
                arg_timeout, arg_commit_timeout);
    if (argc >= 2 && strcmp(argv[1], "--") == 0) {
        argv++;
        argc--;
    }
    /* The server resolves nothing relative to our directory. */
    binary = g_canonicalize_filename(arg_to, NULL);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "cmd");
    json_builder_add_string_value(b, "upgrade");
    json_builder_set_member_name(b, "binary");
    json_builder_add_string_value(b, binary);
    json_builder_set_member_name(b, "commit_timeout_ms");
    json_builder_add_int_value(b, (gint64)arg_commit_timeout * 1000);
    if (arg_rollback_to) {
        g_autofree char *copy = g_canonicalize_filename(arg_rollback_to, NULL);

        json_builder_set_member_name(b, "rollback_binary");
        json_builder_add_string_value(b, copy);
    }
    if (arg_args || argc > 1 || arg_no_args) {
        json_builder_set_member_name(b, "args");
        json_builder_begin_array(b);
        for (char **a = arg_args; a && *a; a++)
            json_builder_add_string_value(b, *a);
        for (int i = 1; i < argc; i++)
            json_builder_add_string_value(b, argv[i]);
        json_builder_end_array(b);
    }
    json_builder_end_object(b);
    req = json_builder_get_root(b);

    deadline = g_get_monotonic_time() + (int64_t)arg_timeout * G_USEC_PER_SEC;
    r = conn_open(socket, &conn);
    if (r < 0) {
        log_msg(LOG_ERR, "upgrade: cannot connect to %s: %s", socket,
                strerror(-r));
        final = local_result("connection-lost", "cannot connect to the "
                                                "control socket");
        goto out;
    }
    log_msg(LOG_INFO, "upgrade to %s via %s", binary, socket);
    r = conn_send(&conn, req);
    while (r >= 0) {
        JsonNode *reply = NULL;
        JsonObject *o;

        r = conn_read(&conn, deadline, &reply);
        if (r < 0)
            break;
        o = json_node_get_object(reply);
        if (json_object_has_member(o, "ok")) {
            final = reply;
            break;
        }
        if (json_get_string(o, "phase")) {
            log_msg(LOG_INFO, "phase %s (pid %" G_GINT64_FORMAT ")",
                    json_get_string(o, "phase"), json_get_int(o, "pid", -1));
            json_array_add_object_element(phases, phase_of_event(o));
        }
        json_node_unref(reply);
    }
    conn_close(&conn);
    if (!final) {
        bool after_exec = json_array_get_length(phases) >= 2;

        if (r == -ETIMEDOUT)
            final = local_result("timeout",
                                 "no result in time: the outcome is unknown "
                                 "(run 'cpr-exec status'); does the new "
                                 "binary call cprkit_control_listen() and "
                                 "commit?");
        else
            final = local_result(
                "connection-lost",
                after_exec ? "the connection was lost after exec: the outcome "
                             "is unknown (run 'cpr-exec status')"
                           : "the connection was lost");
    }

out:
    {
        JsonObject *o = json_node_get_object(final);

        code = exit_code_of(json_get_string(o, "result"));
        /* Trust a "committed" only with "ok": true beside it. */
        if (code == EXIT_OK && json_get_bool(o, "ok", false) != TRUE) {
            json_object_set_string_member(o, "result", "error");
            set_reply_error(o, "BadReply",
                            "malformed reply: \"committed\" without "
                            "\"ok\": true (is this a cprkit process?)");
            code = EXIT_COMM;
        }
        json_object_set_array_member(o, "phases", json_array_ref(phases));
        json_object_set_int_member(o, "exit_code", code);
        if (arg_json)
            print_json(final, false);
        else
            print_human(o);
        if (code != EXIT_OK)
            log_msg(code == EXIT_ROLLED_BACK ? LOG_WARNING : LOG_ERR,
                    "upgrade %s: %s%s%s", json_get_string(o, "result"),
                    reply_error_class(o) ? reply_error_class(o) : "",
                    reply_error_class(o) ? ": " : "",
                    reply_error_desc(o) ? reply_error_desc(o) : "");
    }
    return code;
}

/* "committed (phase restoring), generation 3, blackout 1490 us: CLASS:
 * DESC", the wall-clock time of its last phase first when known. */
static void print_update(JsonObject *u)
{
    JsonArray *phases = json_get_array(u, "phases");
    guint n = phases ? json_array_get_length(phases) : 0;
    gint64 at =
        n ? json_get_int(json_array_object(phases, n - 1), "realtime_ns", -1)
          : -1;

    if (at > 0) {
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(at / 1000000000);
        g_autofree char *iso = t ? g_date_time_format_iso8601(t) : NULL;

        printf("%s ", iso ? iso : "?");
    }
    printf("%s (phase %s), generation %" G_GINT64_FORMAT
           ", blackout %" G_GINT64_FORMAT " us%s%s%s%s\n",
           json_get_string(u, "result"), json_get_string(u, "phase"),
           json_get_int(u, "generation", -1), json_get_int(u, "blackout_us", 0),
           reply_error_desc(u) ? ": " : "",
           reply_error_class(u) ? reply_error_class(u) : "",
           reply_error_class(u) ? ": " : "",
           reply_error_desc(u) ? reply_error_desc(u) : "");
}

/* "  phases: blockers +0.000 ms, exec +0.209 ms, restoring +2.357 ms":
 * each phase after the first, on CLOCK_MONOTONIC. */
static void print_phases(JsonObject *u)
{
    JsonArray *phases = json_get_array(u, "phases");
    gint64 first = -1;

    if (!phases || !json_array_get_length(phases))
        return;
    printf("  phases:");
    for (guint i = 0; i < json_array_get_length(phases); i++) {
        JsonObject *p = json_array_object(phases, i);
        gint64 ns = json_get_int(p, "monotonic_ns", -1);

        if (first < 0)
            first = ns;
        printf("%s %s +%.3f ms", i ? "," : "", json_get_string(p, "phase"),
               ns >= 0 && first >= 0 ? (double)(ns - first) / 1e6 : 0.0);
    }
    printf("\n");
}

/* "keeper: pid 12, 2 restarts, last 2026-12-03T10:00:00Z: program killed
 * by SIGKILL", or that there is none. */
static void print_keeper(JsonObject *o)
{
    JsonObject *k = json_get_object(o, "keeper");
    gint64 restarts;

    if (!k) {
        printf("keeper: none (a crash of this process loses its devices' "
               "state; run it with `cpr-exec run`)\n");
        return;
    }
    restarts = json_get_int(k, "restarts", 0);
    printf("keeper: pid %" G_GINT64_FORMAT "%s, %" G_GINT64_FORMAT
           " restart%s",
           json_get_int(k, "pid", 0),
           json_get_bool(k, "reachable", true) ? "" : " (unreachable)",
           restarts, restarts == 1 ? "" : "s");
    if (json_get_string(k, "last_cause"))
        printf(", last %s: %s",
               json_get_string(k, "last_restart")
                   ? json_get_string(k, "last_restart")
                   : "?",
               json_get_string(k, "last_cause"));
    printf("\n");
}

int verb_status(int argc, char **argv)
{
    g_autofree char *arg_socket = NULL;
    gboolean arg_json = false, arg_history = false;
    int arg_timeout = 10;
    GOptionEntry entries[] = {
        {"socket", 'S', 0, G_OPTION_ARG_FILENAME, &arg_socket,
         "Control socket (default: $CPRKIT_CONTROL_SOCKET)", "PATH"},
        {"timeout", 'T', 0, G_OPTION_ARG_INT, &arg_timeout,
         "Seconds to wait (default 10)", "SECONDS"},
        {"history", 'H', 0, G_OPTION_ARG_NONE, &arg_history,
         "List every update the process remembers (the last 16), not only "
         "the last",
         NULL},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &arg_json, "Print JSON", NULL},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &arg_verbose, "Debug output",
         NULL},
        {NULL},
    };
    JsonObject *req = json_object_new();
    g_autoptr(JsonNode) reply = NULL;
    const char *socket, *error = NULL;
    JsonObject *o;
    JsonArray *fds, *blockers, *history;
    JsonObject *last;
    int r;

    if (!parse_verb_options("status", "",
                            "Shows version, generation, preserved fds, VFIO "
                            "summary and the last update.",
                            entries, &argc, &argv)) {
        json_object_unref(req);
        return EXIT_USAGE;
    }
    socket = socket_path_or_env(arg_socket);
    if (!socket || argc > 1 || arg_timeout <= 0) {
        log_msg(LOG_ERR, "status: %s", !socket ? "no --socket and no "
                                                 "$CPRKIT_CONTROL_SOCKET"
                                               : "unexpected arguments");
        json_object_unref(req);
        return EXIT_USAGE;
    }
    json_object_set_string_member(req, "cmd", "status");
    r = conn_call(socket, req, arg_timeout, &reply, &error);
    json_object_unref(req);
    if (r < 0)
        return call_failed(arg_json, "status", socket, r, error);
    o = json_node_get_object(reply);
    if (!json_get_bool(o, "ok", false)) {
        log_msg(LOG_ERR, "status: %s",
                reply_error_desc(o) ? reply_error_desc(o)
                                    : "the process said no");
        if (arg_json)
            print_json(reply, false);
        return EXIT_FAILED;
    }
    /* A status without these is not from a cprkit process we know. */
    if (json_get_int(o, "pid", -1) <= 0 || !json_get_string(o, "binary"))
        return report_failure(arg_json, EXIT_COMM, "error",
                              "status: %s: the reply lacks a pid or binary: "
                              "not a cprkit status",
                              socket);
    if (arg_json) {
        print_json(reply, false);
        return EXIT_OK;
    }
    printf("pid %" G_GINT64_FORMAT ", %s, cprkit %s (state format %"
           G_GINT64_FORMAT "), generation %" G_GINT64_FORMAT "%s\n",
           json_get_int(o, "pid", -1), json_get_string(o, "binary"),
           json_get_string(o, "version"), json_get_int(o, "format_major", -1),
           json_get_int(o, "generation", -1),
           json_get_bool(o, "incoming", false) ? " (update not committed yet)"
                                               : "");
    fds = json_get_array(o, "fds");
    printf("preserved fds: %u\n", fds ? json_array_get_length(fds) : 0);
    for (guint i = 0; fds && i < json_array_get_length(fds); i++) {
        JsonObject *f = json_array_object(fds, i);

        if (!f)
            continue;
        printf("  %-28s/%-3" G_GINT64_FORMAT " fd %-4" G_GINT64_FORMAT " %s\n",
               json_get_string(f, "name"), json_get_int(f, "id", 0),
               json_get_int(f, "fd", -1), json_get_string(f, "type"));
    }
    blockers = json_get_array(o, "blockers");
    for (guint i = 0; blockers && i < json_array_get_length(blockers); i++) {
        JsonObject *b = json_array_object(blockers, i);

        if (!b)
            continue;
        printf("update blocked: %s: %s\n", json_get_string(b, "owner"),
               json_get_string(b, "reason"));
    }
    if (json_get_object(o, "vfio")) {
        JsonObject *v = json_get_object(o, "vfio");

        printf("vfio: %" G_GINT64_FORMAT " containers, %" G_GINT64_FORMAT
               " groups, %u devices, %" G_GINT64_FORMAT " DMA mappings (%"
               G_GINT64_FORMAT " bytes), %" G_GINT64_FORMAT " IRQ indexes\n",
               json_get_int(v, "containers", 0), json_get_int(v, "groups", 0),
               json_get_array(v, "devices")
                   ? json_array_get_length(json_get_array(v, "devices"))
                   : 0,
               json_get_int(v, "dma_mappings", 0),
               json_get_int(v, "mapped_bytes", 0),
               json_get_int(v, "irq_indexes", 0));
    }
    last = json_get_object(o, "last_update");
    history = json_get_array(o, "history");
    if (last) {
        printf("last update: ");
        print_update(last);
        if (json_get_string(last, "binary"))
            printf("  binary: %s\n", json_get_string(last, "binary"));
        print_phases(last);
    } else {
        printf("last update: none\n");
    }
    if (history && arg_history) {
        printf("history (oldest first):\n");
        for (guint i = 0; i < json_array_get_length(history); i++) {
            JsonObject *u = json_array_object(history, i);

            if (!u)
                continue;
            printf("  %u. ", i + 1);
            print_update(u);
        }
    } else if (history && json_array_get_length(history) > 1) {
        printf("earlier updates: %u (cpr-exec status --history)\n",
               json_array_get_length(history) - 1);
    }
    print_keeper(o);
    return EXIT_OK;
}
