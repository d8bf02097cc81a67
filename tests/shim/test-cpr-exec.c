/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr-exec, every verb and every exit code, against cprtest-app (which
 * links libcprkit.so and preserves a memfd and an eventfd): usage errors,
 * run, status, upgrade → committed / failed / rolled back / timeout,
 * inspect (process, dumped blob, file), check, an unreachable socket, the
 * systemd notifications, the example upgrade script and unit.
 */
#include "shim-test-util.h"

#include <sys/stat.h>

static struct app app;

static JsonObject *status_of(struct app *a, JsonParser **p)
{
    struct cmd_result r = CPR_EXEC("status", "--json", "--socket", a->socket);
    JsonObject *o;

    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, p);
    cmd_result_clear(&r);
    g_assert_true(json_object_get_boolean_member(o, "ok"));
    return o;
}

static gint64 generation_of(struct app *a)
{
    g_autoptr(JsonParser) p = NULL;

    return json_object_get_int_member(status_of(a, &p), "generation");
}

/* o's "error" is {"class": error_class, "desc": ...}; returns desc. */
static const char *error_of(JsonObject *o, const char *error_class)
{
    JsonObject *e = json_object_get_object_member(o, "error");

    g_assert_nonnull(e);
    g_assert_cmpstr(json_object_get_string_member(e, "class"), ==, error_class);
    return json_object_get_string_member(e, "desc");
}

/* Whether the "phases" a has one named s, with its timestamps. */
static bool array_has_phase(JsonArray *a, const char *s)
{
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *p = json_array_get_object_element(a, i);

        if (g_strcmp0(json_object_get_string_member(p, "phase"), s) == 0) {
            g_assert_cmpint(json_object_get_int_member(p, "monotonic_ns"), >,
                            0);
            g_assert_cmpint(json_object_get_int_member(p, "realtime_ns"), >, 0);
            return true;
        }
    }
    return false;
}

static void test_usage(void)
{
    static const char *const verbs[] = {"run", "upgrade", "status", "inspect",
                                        "check"};
    struct cmd_result r;

    r = cpr_exec_v((const char *const[]){NULL});
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    r = CPR_EXEC("frobnicate");
    g_assert_cmpint(r.code, ==, 2);
    g_assert_nonnull(strstr(r.err, "unknown verb"));
    cmd_result_clear(&r);
    r = CPR_EXEC("--help");
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.out, "upgrade"));
    cmd_result_clear(&r);
    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++) {
        r = CPR_EXEC(verbs[i], "--help");
        g_assert_cmpint(r.code, ==, 0);
        g_assert_nonnull(strstr(r.out, "Usage:"));
        g_assert_nonnull(strstr(r.out, "Exit status"));
        cmd_result_clear(&r);
        r = CPR_EXEC(verbs[i], "--no-such-option");
        g_assert_cmpint(r.code, ==, 2);
        cmd_result_clear(&r);
    }
    g_unsetenv("CPRKIT_CONTROL_SOCKET");
    r = CPR_EXEC("upgrade", "--socket", "/tmp/x.sock");
    g_assert_cmpint(r.code, ==, 2);
    g_assert_nonnull(strstr(r.err, "--to"));
    cmd_result_clear(&r);
    r = CPR_EXEC("upgrade", "--to", "/bin/true");
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    r = CPR_EXEC("status");
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    r = CPR_EXEC("inspect");
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    r = CPR_EXEC("inspect", "file", "--socket", "/tmp/x.sock");
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    r = CPR_EXEC("run");
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
}

/* A program that does not link libcprkit is refused, clearly. */
static void test_run_refuses(void)
{
    struct cmd_result r = CPR_EXEC("run", "--socket", "/tmp/never.sock", "--",
                                   "/bin/true");

    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.err, "does not link libcprkit"));
    g_assert_nonnull(strstr(r.err, "LD_PRELOAD shim"));
    g_assert_cmpstr(r.out, ==, "");
    cmd_result_clear(&r);
    r = CPR_EXEC("run", "--", "/nonexistent/prog");
    g_assert_cmpint(r.code, ==, 1);
    cmd_result_clear(&r);

    /* No directory for the default socket: refused, no path printed that
     * would never exist, the program not started. */
    {
        g_autofree char *saved = g_strdup(g_getenv("CPRKIT_CONTROL_SOCKET"));

        g_unsetenv("CPRKIT_CONTROL_SOCKET");
        g_setenv("RUNTIME_DIRECTORY", "/proc/cprkit-nope/run", true);
        r = CPR_EXEC("run", "--", g_getenv("CPRTEST_APP"));
        g_unsetenv("RUNTIME_DIRECTORY");
        if (saved)
            g_setenv("CPRKIT_CONTROL_SOCKET", saved, true);
        g_assert_cmpint(r.code, ==, 1);
        g_assert_nonnull(strstr(r.err, "cannot create /proc/cprkit-nope/run"));
        g_assert_nonnull(strstr(r.err, "--socket"));
        g_assert_cmpstr(r.out, ==, "");
        cmd_result_clear(&r);
    }
}

/* CPRKIT_LOG reaches cpr-exec too: debug turns on its debug lines (the
 * replies it reads, "<- {...}") as --verbose does; without it, none. */
static void test_log_env(void)
{
    struct cmd_result r;

    g_setenv("CPRKIT_LOG", "debug", true);
    r = CPR_EXEC("status", "--socket", app.socket);
    g_unsetenv("CPRKIT_LOG");
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.err, "<- {"));
    cmd_result_clear(&r);
    r = CPR_EXEC("status", "--socket", app.socket);
    g_assert_cmpint(r.code, ==, 0);
    g_assert_null(strstr(r.err, "<- {"));
    cmd_result_clear(&r);
}

static void test_status(void)
{
    g_autoptr(JsonParser) p = NULL;
    JsonObject *o = status_of(&app, &p);
    JsonArray *fds = json_object_get_array_member(o, "fds");
    struct cmd_result r;
    bool memfd = false, eventfd = false, sock = false;

    /* `cpr-exec run` is the keeper, the program its child. */
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    g_assert_cmpint(app.prog_pid, !=, app.pid);
    g_assert_cmpint(json_object_get_int_member(
                        json_object_get_object_member(o, "keeper"), "pid"),
                    ==, app.pid);
    g_assert_cmpint(json_object_get_int_member(
                        json_object_get_object_member(o, "keeper"), "restarts"),
                    ==, 0);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, 0);
    g_assert_cmpint(json_object_get_int_member(o, "format_major"), ==, 1);
    g_assert_cmpstr(json_object_get_string_member(o, "binary"), ==,
                    g_getenv("CPRTEST_APP"));
    g_assert_true(json_object_get_boolean_member(o, "upgrade_enabled"));
    g_assert_true(json_object_get_null_member(o, "last_update"));
    for (guint i = 0; i < json_array_get_length(fds); i++) {
        JsonObject *f = json_array_get_object_element(fds, i);
        const char *name = json_object_get_string_member(f, "name");
        const char *type = json_object_get_string_member(f, "type");

        memfd |= !strcmp(name, "data") && !strcmp(type, "memfd");
        eventfd |= !strcmp(name, "events") && !strcmp(type, "eventfd");
        sock |= !strcmp(name, "cprkit-control") && !strcmp(type, "socket");
    }
    g_assert_true(memfd && eventfd && sock);

    r = CPR_EXEC("status", "--socket", app.socket);
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.out, "generation 0"));
    g_assert_nonnull(strstr(r.out, "last update: none"));
    cmd_result_clear(&r);
}

static JsonObject *upgrade(struct app *a, int expect_code, JsonParser **p,
                           const char *const *extra)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    struct cmd_result r;
    JsonObject *o;

    g_ptr_array_add(args, "upgrade");
    g_ptr_array_add(args, "--json");
    g_ptr_array_add(args, "--socket");
    g_ptr_array_add(args, a->socket);
    for (const char *const *e = extra; *e; e++)
        g_ptr_array_add(args, (char *)*e);
    g_ptr_array_add(args, NULL);
    r = cpr_exec_v((const char *const *)args->pdata);
    g_assert_cmpint(r.code, ==, expect_code);
    o = parse_object(r.out, p);
    g_assert_cmpint(json_object_get_int_member(o, "exit_code"), ==,
                    expect_code);
    cmd_result_clear(&r);
    return o;
}

static void test_upgrade_committed(void)
{
    const char *bin = g_getenv("CPRTEST_APP");
    gint64 gen = generation_of(&app);
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    JsonObject *o, *last;
    JsonArray *phases;

    o = upgrade(&app, 0, &p, (const char *const[]){"--to", bin, NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    g_assert_true(json_object_get_boolean_member(o, "ok"));
    /* An update execs in place: the program keeps its pid. */
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen + 1);
    g_assert_cmpint(json_object_get_int_member(o, "blackout_us"), >, 0);
    g_assert_cmpint(json_object_get_int_member(o, "blackout_us"), <,
                    10 * 1000 * 1000);
    g_assert_cmpstr(json_object_get_string_member(o, "phase"), ==,
                    "restoring");
    phases = json_object_get_array_member(o, "phases");
    g_assert_true(array_has_phase(phases, "blockers"));
    g_assert_true(array_has_phase(phases, "exec"));
    g_assert_true(array_has_phase(phases, "restoring"));

    o = status_of(&app, &p2);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen + 1);
    last = json_object_get_object_member(o, "last_update");
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "committed");
    /* The phase it ended in, named as the events name it (status said
     * "commit"). */
    g_assert_cmpstr(json_object_get_string_member(last, "phase"), ==,
                    "restoring");
    /* inspect -S shows the timestamps of the update that just happened
     * (it showed "timestamps": {}). */
    {
        g_autoptr(JsonParser) pi = NULL;
        struct cmd_result r = CPR_EXEC("inspect", "--json", "--socket",
                                       app.socket);
        JsonObject *ts;

        g_assert_cmpint(r.code, ==, 0);
        ts = json_object_get_object_member(
            json_object_get_object_member(parse_object(r.out, &pi), "state"),
            "timestamps");
        cmd_result_clear(&r);
        g_assert_cmpint(json_object_get_size(ts), >, 0);
        g_assert_cmpint(json_object_get_int_member_with_default(ts, "suspend",
                                                                0),
                        >, 0);
        g_assert_cmpint(json_object_get_int_member_with_default(ts, "loaded",
                                                                0),
                        >, json_object_get_int_member(ts, "suspend"));
    }
    /* The client connection is not preserved any more. */
    {
        JsonArray *fds = json_object_get_array_member(o, "fds");

        for (guint i = 0; i < json_array_get_length(fds); i++)
            g_assert_cmpstr(json_object_get_string_member(
                                json_array_get_object_element(fds, i), "name"),
                            !=, "cprkit-control-client");
    }

    /* With arguments; "slow" marks serving 300 ms after commit, and the
     * blackout includes that. */
    o = upgrade(&app, 0, &p3,
                (const char *const[]){"--to", bin, "--", "--mode", "slow",
                                      NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen + 2);
    g_assert_cmpint(json_object_get_int_member(o, "blackout_us"), >=, 300000);
    g_assert_true(app_alive(&app));
}

/* Every reply and event echoes the request's "id", whatever JSON value it
 * is (QMP's convention), an error too and the new binary's answer after
 * the exec; the events carry both clocks, in order. */
static void test_request_id(void)
{
    g_autofree char *req = g_strdup_printf(
        "{\"cmd\":\"upgrade\",\"binary\":\"%s\",\"id\":{\"n\":42}}\n",
        g_getenv("CPRTEST_APP"));
    g_autoptr(GString) in = g_string_new(NULL);
    g_auto(GStrv) lines = NULL;
    struct timeval tv = {.tv_sec = 30};
    gint64 last_ns = 0;
    guint events = 0;
    int fd = try_connect(app.socket);
    char buf[4096];
    ssize_t n;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                    ==, 0);
    g_assert_cmpint(send(fd, req, strlen(req), 0), ==, (ssize_t)strlen(req));
    while (!strstr(in->str, "\"ok\":") &&
           (n = recv(fd, buf, sizeof(buf), 0)) > 0)
        g_string_append_len(in, buf, n);
    while (in->len && in->str[in->len - 1] != '\n' &&
           (n = recv(fd, buf, sizeof(buf), 0)) > 0)
        g_string_append_len(in, buf, n);
    close(fd);
    g_test_message("%s", in->str);
    lines = g_strsplit(g_strchomp(in->str), "\n", -1);
    for (char **l = lines; *l; l++) {
        g_autoptr(JsonParser) p = NULL;
        JsonObject *o = parse_object(*l, &p);

        g_assert_true(g_str_has_suffix(*l, ",\"id\":{\"n\":42}}"));
        if (json_object_has_member(o, "event")) {
            gint64 ns = json_object_get_int_member(o, "monotonic_ns");

            g_assert_cmpint(ns, >=, last_ns);
            g_assert_cmpint(json_object_get_int_member(o, "realtime_ns"), >, 0);
            last_ns = ns;
            events++;
        } else {
            g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                            "committed");
        }
    }
    /* blockers, exec (old binary), restoring (new binary) */
    g_assert_cmpuint(events, ==, 3);

    /* Errors echo it too; a request without one gets none. */
    {
        static const char bad[] = "{\"cmd\":\"nope\",\"id\":7}\n";
        static const char none[] = "{\"cmd\":\"status\"}\n";
        g_autofree char *r1 = raw_exchange(app.socket, bad, strlen(bad), false);
        g_autofree char *r2 =
            raw_exchange(app.socket, none, strlen(none), false);
        g_autoptr(JsonParser) p2 = NULL;

        g_assert_true(g_str_has_suffix(r1, "},\"id\":7}"));
        g_assert_false(json_object_has_member(parse_object(r2, &p2), "id"));
    }
}

/* A connection the old binary had accepted does not cross the exec: it is
 * told the process is busy with an update and closed, instead of being
 * dropped without a word (a concurrent `upgrade` then exited 5 with no
 * phases; now it is refused: 1). */
static void test_concurrent_client(void)
{
    const char *bin = g_getenv("CPRTEST_APP");
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(GString) in = g_string_new(NULL);
    int other = try_connect(app.socket);
    struct timeval tv = {.tv_sec = 30};
    char buf[4096];
    ssize_t n;

    g_assert_cmpint(other, >=, 0);
    /* accepted and served by the old binary */
    g_assert_cmpint(send(other, "{\"cmd\":\"status\"}\n", 17, 0), ==, 17);
    g_assert_cmpint(setsockopt(other, SOL_SOCKET, SO_RCVTIMEO, &tv,
                               sizeof(tv)), ==, 0);
    while (!strchr(in->str, '\n') && (n = recv(other, buf, sizeof(buf), 0)) > 0)
        g_string_append_len(in, buf, n);
    g_assert_nonnull(strstr(in->str, "\"result\":\"status\""));
    g_string_truncate(in, 0);

    upgrade(&app, 0, &p, (const char *const[]){"--to", bin, NULL});
    while ((n = recv(other, buf, sizeof(buf), 0)) > 0)
        g_string_append_len(in, buf, n);
    g_assert_nonnull(strstr(in->str, "busy: an update to"));
    g_assert_nonnull(strstr(in->str, "\"error\":{\"class\":\"Busy\","));
    close(other);
}

static void test_upgrade_missing(void)
{
    gint64 gen = generation_of(&app);
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    JsonObject *o, *last;
    struct cmd_result r;

    o = upgrade(&app, 1, &p,
                (const char *const[]){"--to", "/nonexistent/app-v9", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "failed");
    g_assert_cmpstr(json_object_get_string_member(o, "phase"), ==, "blockers");
    g_assert_nonnull(strstr(error_of(o, "Blocked"), "/nonexistent"));
    o = status_of(&app, &p2);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    last = json_object_get_object_member(o, "last_update");
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "failed");
    g_assert_nonnull(strstr(error_of(last, "Blocked"), "/nonexistent"));

    /* Executable but not a program, a script, a program without cprkit:
     * refused by the blockers before anything is suspended (they used to
     * pass them, and the exec or the new binary failed). Human output
     * names the phase; the old binary goes on. */
    {
        g_autofree char *junk = g_build_filename(app.dir, "junk-bin", NULL);
        g_autofree char *script = g_build_filename(app.dir, "wrapper", NULL);
        static const struct {
            const char *content; /* NULL: /bin/true itself */
            const char *error;
        } cases[] = {
            {"garbage\n", "is not an ELF executable"},
            {"#!/bin/sh\nexec true\n", "is a script"},
            {NULL, "does not use libcprkit"},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
            const char *to = cases[i].content ? (i ? script : junk)
                                              : "/bin/true";

            if (cases[i].content) {
                g_assert_true(
                    g_file_set_contents(to, cases[i].content, -1, NULL));
                g_assert_cmpint(chmod(to, 0755), ==, 0);
            }
            r = CPR_EXEC("upgrade", "--socket", app.socket, "--to", to);
            g_test_message("%s: %s", to, r.out);
            g_assert_cmpint(r.code, ==, 1);
            g_assert_nonnull(
                strstr(r.out, "failed in phase blockers, nothing changed"));
            g_assert_nonnull(strstr(r.out, cases[i].error));
            cmd_result_clear(&r);
            g_assert_cmpint(generation_of(&app), ==, gen);
        }
        g_unlink(junk);
        g_unlink(script);
    }
    g_assert_cmpint(generation_of(&app), ==, gen);
    g_assert_true(app_alive(&app));
}

/* The control endpoint opened after cprkit_commit() in the new binary:
 * the commit does not wait for cprkit's own preserved sockets (it used to
 * refuse them as unclaimed, roll back, fail the same way in the old
 * binary and leave a process that could neither commit nor roll back);
 * the endpoint claims them when it is opened and answers the client. */
static void test_upgrade_listen_after_commit(void)
{
    const char *bin = g_getenv("CPRTEST_APP");
    gint64 gen = generation_of(&app);
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    JsonObject *o;

    o = upgrade(&app, 0, &p,
                (const char *const[]){"--to", bin, "--arg", "--mode", "--arg",
                                      "listen-after-commit", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    g_assert_cmpint(generation_of(&app), ==, gen + 1);

    /* A rollback to a binary that also listens after its commit: it
     * answers too. */
    o = upgrade(&app, 3, &p2,
                (const char *const[]){"--to", bin, "--arg", "--mode", "--arg",
                                      "veto", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "rolled-back");
    g_assert_cmpint(generation_of(&app), ==, gen + 1);

    /* Back to the default mode for the tests that follow. */
    o = upgrade(&app, 0, &p3, (const char *const[]){"--to", bin, NULL});
    g_assert_cmpint(generation_of(&app), ==, gen + 2);
    g_assert_true(app_alive(&app));
}

static void test_upgrade_veto(void)
{
    const char *bin = g_getenv("CPRTEST_APP");
    gint64 gen = generation_of(&app);
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    JsonObject *o, *last;

    o = upgrade(&app, 3, &p,
                (const char *const[]){"--to", bin, "--arg", "--mode", "--arg",
                                      "veto", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "rolled-back");
    g_assert_false(json_object_get_boolean_member(o, "ok"));
    g_assert_nonnull(
        strstr(error_of(o, "RolledBack"), "health check failed (veto mode)"));
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    g_assert_true(array_has_phase(json_object_get_array_member(o, "phases"),
                                  "rolling-back"));

    /* One vocabulary: the reply, the events and status name the phase
     * and the cause alike (status said "restore" and the reply "reason"). */
    g_assert_cmpstr(json_object_get_string_member(o, "phase"), ==,
                    "rolling-back");
    g_assert_false(json_object_has_member(o, "reason"));

    o = status_of(&app, &p2);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    last = json_object_get_object_member(o, "last_update");
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "rolled-back");
    g_assert_cmpstr(json_object_get_string_member(last, "phase"), ==,
                    "rolling-back");
    g_assert_nonnull(strstr(error_of(last, "RolledBack"),
                            "health check failed (veto mode)"));
    g_assert_true(app_alive(&app));

    /* A binary that cannot read the state format is refused by the
     * blockers, before anything is suspended (it used to be exec'd and
     * to hand everything back). */
    {
        g_autoptr(JsonParser) p4 = NULL;

        o = upgrade(&app, 1, &p4,
                    (const char *const[]){"--to", g_getenv("CPRTEST_APP_V2"),
                                          NULL});
        g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                        "failed");
        g_assert_cmpstr(json_object_get_string_member(o, "phase"), ==,
                        "blockers");
        g_assert_nonnull(strstr(error_of(o, "Blocked"),
                                "reads state format 2, not 1"));
        g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    }

    /* And it still updates afterwards. */
    {
        g_autoptr(JsonParser) p3 = NULL;

        o = upgrade(&app, 0, &p3, (const char *const[]){"--to", bin, NULL});
        g_assert_cmpint(json_object_get_int_member(o, "generation"), ==,
                        gen + 1);
    }
}

/* The member names of o, comma-separated, in order. */
static char *members_of(JsonObject *o)
{
    g_autoptr(GList) names = json_object_get_members(o);
    GString *s = g_string_new(NULL);

    for (GList *n = names; n; n = n->next)
        g_string_append_printf(s, "%s%s", s->len ? "," : "",
                               (const char *)n->data);
    return g_string_free(s, false);
}

/* status keeps the last updates (a refused attempt overwrote a rollback):
 * each with its result, phase, cause, phases with timestamps and the
 * core's timestamps, carried across every exec, at most 16. */
static void test_history(void)
{
    const char *bin = g_getenv("CPRTEST_APP");
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    g_autoptr(JsonParser) p4 = NULL;
    JsonObject *o, *last, *ts;
    JsonArray *h;
    guint n, rolled_back = 0;
    struct cmd_result r;

    /* After /cpr-exec/upgrade-veto: a rollback, then a commit, each
     * recorded by a binary that exec'd since. */
    o = status_of(&app, &p);
    h = json_object_get_array_member(o, "history");
    n = json_array_get_length(h);
    g_assert_cmpuint(n, >=, 3);
    last = json_array_get_object_element(h, n - 1);
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "committed");
    g_assert_true(json_object_get_null_member(last, "error"));
    g_assert_cmpstr(json_object_get_string_member(last, "binary"), ==, bin);
    g_assert_true(array_has_phase(json_object_get_array_member(last, "phases"),
                                  "blockers"));
    g_assert_true(array_has_phase(json_object_get_array_member(last, "phases"),
                                  "restoring"));
    ts = json_object_get_object_member(last, "timestamps");
    g_assert_cmpint(json_object_get_int_member(ts, "loaded"), >,
                    json_object_get_int_member(ts, "suspend"));
    g_assert_cmpint(json_object_get_int_member(last, "blackout_ns"), >, 0);
    for (guint i = 0; i < n; i++) {
        JsonObject *e = json_array_get_object_element(h, i);

        if (!g_strcmp0(json_object_get_string_member(e, "result"),
                       "rolled-back")) {
            error_of(e, "RolledBack");
            rolled_back++;
        }
    }
    g_assert_cmpuint(rolled_back, >=, 1);

    /* A refused attempt is added; the rollback stays. */
    upgrade(&app, 1, &p2,
            (const char *const[]){"--to", "/nonexistent/x", NULL});
    o = status_of(&app, &p3);
    h = json_object_get_array_member(o, "history");
    g_assert_cmpuint(json_array_get_length(h), ==, MIN(n + 1, 16));
    last = json_array_get_object_element(h, json_array_get_length(h) - 1);
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "failed");
    g_assert_cmpstr(json_object_get_string_member(last, "phase"), ==,
                    "blockers");
    error_of(last, "Blocked");
    g_assert_cmpstr(
        json_object_get_string_member(
            json_object_get_object_member(o, "last_update"), "result"),
        ==, "failed");

    /* Bounded: 16 however many. */
    for (int i = 0; i < 17; i++) {
        g_autoptr(JsonParser) pi = NULL;

        upgrade(&app, 1, &pi,
                (const char *const[]){"--to", "/nonexistent/y", NULL});
    }
    g_clear_object(&p3);
    o = status_of(&app, &p3);
    g_assert_cmpuint(
        json_array_get_length(json_object_get_array_member(o, "history")), ==,
        16);

    /* Across an exec: the new binary reports what the old one knew. */
    upgrade(&app, 0, &p4, (const char *const[]){"--to", bin, NULL});
    g_clear_object(&p3);
    o = status_of(&app, &p3);
    h = json_object_get_array_member(o, "history");
    g_assert_cmpuint(json_array_get_length(h), ==, 16);
    g_assert_cmpstr(json_object_get_string_member(
                        json_array_get_object_element(h, 15), "result"),
                    ==, "committed");
    g_assert_cmpstr(json_object_get_string_member(
                        json_array_get_object_element(h, 14), "result"),
                    ==, "failed");

    r = CPR_EXEC("status", "--history", "--socket", app.socket);
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.out, "history (oldest first):\n"));
    g_assert_nonnull(strstr(r.out, "\n  16. "));
    g_assert_nonnull(strstr(r.out, "failed (phase blockers)"));
    cmd_result_clear(&r);
    r = CPR_EXEC("status", "--socket", app.socket);
    g_assert_nonnull(strstr(r.out, "  phases: blockers +0.000 ms, exec +"));
    g_assert_nonnull(strstr(r.out, "earlier updates: 15"));
    cmd_result_clear(&r);
}

static void test_inspect(void)
{
    g_autofree char *blob = g_build_filename(app.dir, "state.blob", NULL);
    g_autofree char *junk = g_build_filename(app.dir, "junk", NULL);
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autofree char *socket_shape = NULL;
    g_autofree char *file_shape = NULL;
    struct cmd_result r;
    JsonObject *o, *frame, *state, *rollback;

    r = CPR_EXEC("inspect", "--json", "--socket", app.socket);
    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, &p);
    state = json_object_get_object_member(o, "state");
    g_assert_cmpuint(
        json_array_get_length(json_object_get_array_member(state, "fds")), ==,
        3);
    g_assert_true(json_object_has_member(state, "vfio"));
    cmd_result_clear(&r);
    socket_shape = members_of(o);

    r = CPR_EXEC("inspect", "--socket", app.socket, "--dump-blob", blob);
    g_assert_cmpint(r.code, ==, 0);
    cmd_result_clear(&r);
    g_assert_true(g_file_test(blob, G_FILE_TEST_IS_REGULAR));

    r = CPR_EXEC("inspect", blob);
    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, &p2);
    frame = json_object_get_object_member(o, "frame");
    g_assert_cmpint(json_object_get_int_member(frame, "format_major"), ==, 1);
    state = json_object_get_object_member(o, "state");
    g_assert_cmpint(json_object_get_int_member(state, "writer_pid"), ==,
                    app.prog_pid);
    g_assert_cmpuint(
        json_array_get_length(json_object_get_array_member(state, "fds")), ==,
        3);
    rollback = json_object_get_object_member(o, "rollback");
    g_assert_cmpstr(json_object_get_string_member(rollback, "path"), ==,
                    g_getenv("CPRTEST_APP"));
    /* One shape: the process's state and the file are the same object
     * (inspect -S printed only "state"). */
    file_shape = members_of(o);
    g_assert_cmpstr(socket_shape, ==, file_shape);
    g_assert_cmpstr(file_shape, ==, "frame,rollback,state,corrupt");
    g_assert_false(
        json_object_get_boolean_member_with_default(o, "corrupt", false));
    cmd_result_clear(&r);

    /* A payload byte flipped: what can be read is printed, marked
     * corrupt, and the verb fails (it exited 0). */
    {
        g_autoptr(JsonParser) pc = NULL;
        g_autofree char *data = NULL;
        gsize size;

        g_assert_true(g_file_get_contents(blob, &data, &size, NULL));
        data[size - 1] ^= 0x5a; /* the payload is last */
        g_assert_true(g_file_set_contents(blob, data, (gssize)size, NULL));
        r = CPR_EXEC("inspect", "--json", blob);
        g_assert_cmpint(r.code, ==, 1);
        o = parse_object(r.out, &pc);
        g_assert_true(json_object_get_boolean_member(o, "corrupt"));
        g_assert_nonnull(strstr(json_object_get_string_member(o,
                                                              "payload_error"),
                                "checksum mismatch"));
        g_assert_cmpint(json_object_get_int_member(
                            json_object_get_object_member(o, "frame"),
                            "format_major"),
                        ==, 1);
        g_assert_false(json_object_has_member(o, "state"));
        g_assert_nonnull(strstr(r.err, "corrupt state blob"));
        cmd_result_clear(&r);
    }

    g_assert_true(g_file_set_contents(junk, "not a blob", -1, NULL));
    r = CPR_EXEC("inspect", junk);
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.err, "not a cprkit state blob"));
    cmd_result_clear(&r);
    r = CPR_EXEC("inspect", "/nonexistent/blob");
    g_assert_cmpint(r.code, ==, 1);
    cmd_result_clear(&r);
    /* An endless file: refused once it is larger than any blob, not read
     * into memory whole. */
    r = CPR_EXEC("inspect", "/dev/zero");
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.err, "larger than any state blob"));
    cmd_result_clear(&r);
    g_unlink(blob);
    g_unlink(junk);
}

static void test_check(void)
{
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    struct cmd_result r;
    JsonObject *o, *target;

    r = CPR_EXEC("check", "--json", "--socket", app.socket, "--to",
                 g_getenv("CPRTEST_APP"));
    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, &p);
    g_assert_true(json_object_get_boolean_member(o, "ok"));
    target = json_object_get_object_member(o, "target");
    g_assert_true(json_object_get_boolean_member(target, "compatible"));
    g_assert_true(json_object_has_member(o, "kernel"));
    g_assert_true(json_object_has_member(o, "seccomp"));
    g_assert_true(json_object_get_boolean_member(
        json_object_get_object_member(o, "process"), "ok"));
    cmd_result_clear(&r);

    /* A binary on the format-2 core cannot read this process's state. */
    r = CPR_EXEC("check", "--json", "--socket", app.socket, "--to",
                 g_getenv("CPRTEST_APP_V2"));
    g_assert_cmpint(r.code, ==, 1);
    o = parse_object(r.out, &p2);
    target = json_object_get_object_member(o, "target");
    g_assert_false(json_object_get_boolean_member(target, "compatible"));
    g_assert_cmpint(json_array_get_int_element(
                        json_object_get_array_member(target, "reads_formats"),
                        0),
                    ==, 2);
    cmd_result_clear(&r);

    r = CPR_EXEC("check", "--socket", app.socket, "--to", "/bin/true");
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.out, "does not use libcprkit"));
    cmd_result_clear(&r);

    /* A missing binary: one blocker (the process's), not two. */
    r = CPR_EXEC("check", "--socket", app.socket, "--to", "/nonexistent/vmm");
    g_test_message("%s", r.out);
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.out, "blocker: new binary '/nonexistent/vmm'"));
    g_assert_null(strstr(strstr(r.out, "/nonexistent/vmm") + 1,
                         "/nonexistent/vmm"));
    cmd_result_clear(&r);

    /* No process: what the kernel and this user's limits say. */
    g_unsetenv("CPRKIT_CONTROL_SOCKET");
    r = CPR_EXEC("check", "--json");
    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, &p3);
    g_assert_true(json_object_has_member(o, "memlock"));
    g_assert_true(json_object_has_member(
        json_object_get_object_member(o, "kernel"), "vfio"));
    cmd_result_clear(&r);

    /* No process, --to: the same probe here, without ldd (nothing run). */
    {
        g_autoptr(JsonParser) p4 = NULL;

        r = CPR_EXEC("check", "--json", "--to", g_getenv("CPRTEST_APP"));
        g_assert_cmpint(r.code, ==, 0);
        o = parse_object(r.out, &p4);
        target = json_object_get_object_member(o, "target");
        g_assert_true(json_object_get_boolean_member(target, "compatible"));
        g_assert_nonnull(strstr(
            json_object_get_string_member(target, "cprkit"), "libcprkit"));
        cmd_result_clear(&r);
    }
    r = CPR_EXEC("check", "--to", "/bin/true");
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.out, "blocker: new binary '/bin/true' does not "
                                   "use libcprkit"));
    cmd_result_clear(&r);
    r = CPR_EXEC("check", "--to", "/nonexistent/vmm");
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.out, "blocker: new binary '/nonexistent/vmm': "
                                   "No such file or directory"));
    cmd_result_clear(&r);
}

static void test_unreachable(void)
{
    g_autoptr(JsonParser) p = NULL;
    struct cmd_result r = CPR_EXEC("status", "--socket", "/nonexistent.sock");
    JsonObject *o;

    g_assert_cmpint(r.code, ==, 5);
    cmd_result_clear(&r);
    r = CPR_EXEC("upgrade", "--json", "--socket", "/nonexistent.sock", "--to",
                 "/bin/true");
    g_assert_cmpint(r.code, ==, 5);
    o = parse_object(r.out, &p);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "connection-lost");
    cmd_result_clear(&r);
    /* With --json every verb says so on stdout too, not only exit 5. */
    for (int i = 0; i < 3; i++) {
        static const char *const verbs[] = {"status", "inspect", "check"};
        g_autoptr(JsonParser) pv = NULL;

        r = CPR_EXEC(verbs[i], "--json", "--socket", "/nonexistent.sock");
        g_assert_cmpint(r.code, ==, 5);
        o = parse_object(r.out, &pv);
        g_assert_false(json_object_get_boolean_member(o, "ok"));
        g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                        "connection-lost");
        error_of(o, "ConnectionLost");
        g_assert_cmpint(json_object_get_int_member(o, "exit_code"), ==, 5);
        cmd_result_clear(&r);
    }
}

/* A fake endpoint that answers every request on its socket with reply
 * (one connection), in a child process. */
static pid_t fake_server(const char *path, const char *reply)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    pid_t pid;

    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    memcpy(sa.sun_path, path, strlen(path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(fd, 4), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int c = accept(fd, NULL, NULL);
        char buf[4096];

        if (c >= 0 && recv(c, buf, sizeof(buf), 0) > 0) {
            if (write(c, reply, strlen(reply)) < 0 || write(c, "\n", 1) < 0)
                _exit(1);
        }
        g_usleep(200 * 1000);
        _exit(0);
    }
    close(fd);
    return pid;
}

/* cpr-exec trusts nothing the socket says: wrong types are no crash (the
 * tests run with G_DEBUG=fatal-warnings: a Json-CRITICAL would abort), an
 * answer that is not a cprkit status or result is an error (exit 5). */
static void test_hostile_replies(void)
{
    g_autofree char *sock = g_build_filename(g_get_tmp_dir(), "cprkit-fake.sock",
                                             NULL);
    static const struct {
        const char *verb;
        const char *reply;
        int code;
        const char *err;
    } cases[] = {
        {"status",
         "{\"ok\":true,\"pid\":\"seven\",\"binary\":5,\"fds\":{\"a\":1},"
         "\"blockers\":[1,2],\"vfio\":[],\"keeper\":\"x\",\"last_update\":3}",
         5, "not a cprkit status"},
        {"status",
         "{\"ok\":true,\"pid\":42,\"binary\":\"/x\",\"fds\":[1,\"a\","
         "{\"name\":3}],\"blockers\":[null],\"vfio\":{\"devices\":7},"
         "\"keeper\":{\"reachable\":\"no\"},\"incoming\":\"yes\"}",
         0, NULL},
        {"status", "{\"ok\":\"yes\"}", 1, NULL},
        {"upgrade", "{\"ok\":\"yes\",\"result\":\"committed\"}", 5,
         "malformed reply"},
        {"inspect", "{\"ok\":true,\"state\":7}", 5, "no \"state\" object"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        pid_t server = fake_server(sock, cases[i].reply);
        struct cmd_result r =
            !strcmp(cases[i].verb, "upgrade")
                ? CPR_EXEC("upgrade", "--socket", sock, "--to", "/bin/true")
                : CPR_EXEC(cases[i].verb, "--socket", sock);
        int status;

        g_test_message("%s -> %d: %s", cases[i].verb, r.code, r.err);
        g_assert_cmpint(r.code, ==, cases[i].code);
        if (cases[i].err)
            g_assert_nonnull(strstr(r.err, cases[i].err));
        g_assert_null(strstr(r.err, "CRITICAL"));
        cmd_result_clear(&r);
        g_assert_cmpint(waitpid(server, &status, 0), ==, server);
    }
    unlink(sock);
}

/* The new binary never commits: the client gives up after --timeout. */
static void test_timeout(void)
{
    struct app hung;
    g_autoptr(JsonParser) p = NULL;
    JsonObject *o;

    app_start(&hung, NULL);
    o = upgrade(&hung, 4, &p,
                (const char *const[]){"--timeout", "2", "--to",
                                      g_getenv("CPRTEST_APP"), "--", "--mode",
                                      "hang", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "timeout");
    g_assert_true(app_alive(&hung));
    app_stop(&hung, false);
}

/* NOTIFY_SOCKET: READY=1 at start, RELOADING=1 + MONOTONIC_USEC, STATUS=
 * per phase and READY=1 after the update. */
static void test_sd_notify(void)
{
    g_autofree char *dir = g_dir_make_tmp("cprkit-notify-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "notify", NULL);
    g_autoptr(GString) all = g_string_new(NULL);
    g_autoptr(JsonParser) p = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    struct app a;
    int fd;
    const char *reloading, *ready2;

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memcpy(sa.sun_path, path, strlen(path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    g_setenv("NOTIFY_SOCKET", path, true);
    app_start(&a, NULL);
    g_unsetenv("NOTIFY_SOCKET");
    upgrade(&a, 0, &p,
            (const char *const[]){"--to", g_getenv("CPRTEST_APP"), NULL});
    for (;;) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

        if (n <= 0)
            break;
        buf[n] = '\0';
        g_string_append_printf(all, "%s\n--\n", buf);
    }
    g_test_message("notifications:\n%s", all->str);
    g_assert_true(g_str_has_prefix(all->str, "READY=1\nSTATUS=cprkit: serving"));
    reloading = strstr(all->str, "RELOADING=1\nMONOTONIC_USEC=");
    g_assert_nonnull(reloading);
    g_assert_nonnull(strstr(reloading, "STATUS=cprkit: exec "));
    g_assert_nonnull(strstr(reloading, "STATUS=cprkit: restoring"));
    ready2 = strstr(reloading, "READY=1\nSTATUS=cprkit: update committed, "
                               "generation 1");
    g_assert_nonnull(ready2);
    app_stop(&a, true);
    close(fd);
    g_unlink(path);
    g_rmdir(dir);
}

static struct cmd_result run_script(const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_auto(GStrv) env = g_get_environ();
    g_autoptr(GError) error = NULL;
    struct cmd_result r = {0};
    int status;

    env = g_environ_setenv(env, "CPR_EXEC", g_getenv("CPR_EXEC"), true);
    g_ptr_array_add(argv, "sh");
    g_ptr_array_add(argv, (char *)env_or_fail("CPRKIT_UPGRADE_SCRIPT"));
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, env,
                               G_SPAWN_SEARCH_PATH, NULL, NULL, &r.out, &r.err,
                               &status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(status));
    r.code = WEXITSTATUS(status);
    g_test_message("script -> %d\nstdout: %s\nstderr: %s", r.code, r.out,
                   r.err);
    return r;
}

static void assert_result_file(const char *path, const char *result)
{
    g_autofree char *text = NULL;
    g_autoptr(JsonParser) p = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(json_object_get_string_member(parse_object(text, &p),
                                                  "result"),
                    ==, result);
}

/* shim/examples/cprkit-upgrade, as automation would run it. */
static void test_example_script(void)
{
    g_autofree char *out = g_build_filename(app.dir, "result.json", NULL);
    const char *bin = g_getenv("CPRTEST_APP");
    gint64 gen = generation_of(&app);
    struct cmd_result r;

    r = run_script((const char *const[]){"-s", app.socket, "-o", out, bin,
                                         NULL});
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.err, "committed"));
    assert_result_file(out, "committed");
    cmd_result_clear(&r);
    g_assert_cmpint(generation_of(&app), ==, gen + 1);

    r = run_script((const char *const[]){"-s", app.socket, "-o", out, bin,
                                         "--mode", "veto", NULL});
    g_assert_cmpint(r.code, ==, 3);
    g_assert_nonnull(strstr(r.err, "rolled back"));
    assert_result_file(out, "rolled-back");
    cmd_result_clear(&r);
    g_assert_cmpint(generation_of(&app), ==, gen + 1);

    /* The pre-flight stops an update that cannot work. */
    r = run_script((const char *const[]){"-s", app.socket, "-o", out,
                                         g_getenv("CPRTEST_APP_V2"), NULL});
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.err, "pre-flight failed"));
    cmd_result_clear(&r);

    r = run_script((const char *const[]){NULL});
    g_assert_cmpint(r.code, ==, 2);
    cmd_result_clear(&r);
    g_unlink(out);
    g_assert_true(app_alive(&app));
}

/* shim/examples/cprkit-example.service passes systemd-analyze verify with
 * its programs pointed at the built ones. */
static void test_example_unit(void)
{
    g_autofree char *analyze = g_find_program_in_path("systemd-analyze");
    g_autofree char *text = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *unit = NULL;
    g_autoptr(GString) s = NULL;
    struct cmd_result r = {0};
    int status;

    if (!analyze) {
        g_test_skip("systemd-analyze is not installed");
        return;
    }
    g_assert_true(g_file_get_contents(env_or_fail("CPRKIT_EXAMPLE_UNIT"),
                                      &text, NULL, NULL));
    s = g_string_new(text);
    g_string_replace(s, "/usr/bin/cpr-exec", g_getenv("CPR_EXEC"), 0);
    g_string_replace(s, "/usr/libexec/myapp", g_getenv("CPRTEST_APP"), 0);
    g_assert_nonnull(strstr(s->str, "ExecReload="));
    dir = g_dir_make_tmp("cprkit-unit-XXXXXX", NULL);
    unit = g_build_filename(dir, "cprkit-example.service", NULL);
    g_assert_true(g_file_set_contents(unit, s->str, -1, NULL));
    const char *argv[] = {analyze, "verify", unit, NULL};
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                               NULL, NULL, &r.out, &r.err, &status, NULL));
    g_test_message("systemd-analyze verify: %s %s", r.out, r.err);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_null(strstr(r.err, "Unknown"));
    cmd_result_clear(&r);
    g_unlink(unit);
    g_rmdir(dir);
}

/* --no-keeper, the one end-to-end test of that mode: cpr-exec execs the
 * program in place (the pid `run` had), status shows no keeper, an update
 * commits in place, SIGTERM reaches the program directly. */
static void test_no_keeper(void)
{
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    struct app a;
    JsonObject *o;

    app_start_with(&a, (const char *const[]){"--no-keeper", NULL}, NULL);
    g_assert_cmpint(a.prog_pid, ==, a.pid);
    o = status_of(&a, &p);
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, a.pid);
    g_assert_true(json_object_get_null_member(o, "keeper"));
    o = upgrade(&a, 0, &p2,
                (const char *const[]){"--to", g_getenv("CPRTEST_APP"), NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, a.pid);
    o = status_of(&a, &p3);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, 1);
    g_assert_true(json_object_get_null_member(o, "keeper"));
    app_stop(&a, true);
}

/* A copy of cprtest-app next to it (its $ORIGIN run path finds the same
 * libcprkit), with extra bytes appended when tail is not NULL. */
static char *copy_app(const char *name, const char *tail)
{
    const char *orig = g_getenv("CPRTEST_APP");
    g_autofree char *dir = g_path_get_dirname(orig);
    g_autofree char *data = NULL;
    char *path = g_strdup_printf("%s/%s-%d", dir, name, (int)getpid());
    GString *content;
    gsize size;

    g_assert_true(g_file_get_contents(orig, &data, &size, NULL));
    content = g_string_new_len(data, (gssize)size);
    if (tail)
        g_string_append(content, tail);
    g_assert_true(g_file_set_contents(path, content->str,
                                      (gssize)content->len, NULL));
    g_string_free(content, true);
    g_assert_cmpint(chmod(path, 0755), ==, 0);
    return path;
}

/* The running binary's file is replaced on disk (renamed over, as a
 * package upgrade does): check reports it, upgrade refuses it until told
 * of a copy of the running version for the rollback (--rollback-to, same
 * bytes only), then a rollback runs the copy. */
static void test_replaced_on_disk(void)
{
    const char *orig = g_getenv("CPRTEST_APP");
    g_autofree char *saved_env = g_strdup(orig);
    g_autofree char *prog = copy_app("replaced-app", NULL);
    g_autofree char *keep = copy_app("replaced-keep", NULL);
    g_autofree char *next = copy_app("replaced-next", "new version");
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    g_autoptr(JsonParser) p4 = NULL;
    g_autoptr(JsonParser) p5 = NULL;
    struct cmd_result r;
    struct app a;
    JsonObject *o;

    g_setenv("CPRTEST_APP", prog, true);
    app_start(&a, NULL);
    g_setenv("CPRTEST_APP", saved_env, true);
    g_assert_cmpint(rename(next, prog), ==, 0);

    r = CPR_EXEC("check", "--socket", a.socket);
    g_test_message("%s", r.out);
    g_assert_cmpint(r.code, ==, 1);
    g_assert_nonnull(strstr(r.out, "was replaced or deleted on disk"));
    g_assert_nonnull(strstr(r.out, "--rollback-to"));
    cmd_result_clear(&r);

    o = upgrade(&a, 1, &p, (const char *const[]){"--to", orig, NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "phase"), ==, "blockers");
    g_assert_nonnull(strstr(error_of(o, "Blocked"),
                            "was replaced or deleted on disk"));
    /* The new file is not the running version. */
    o = upgrade(&a, 1, &p2,
                (const char *const[]){"--to", orig, "--rollback-to", prog,
                                      NULL});
    g_assert_nonnull(strstr(error_of(o, "Blocked"),
                            "is not the running program"));
    /* Named in an update that fails later (/bin/true), the copy stays the
     * rollback binary, and the keeper's restart after a crash runs it. */
    {
        g_autoptr(JsonParser) p6 = NULL;
        g_autoptr(JsonParser) p7 = NULL;
        GPid old = a.prog_pid;

        o = upgrade(&a, 1, &p6,
                    (const char *const[]){"--to", "/bin/true", "--rollback-to",
                                          keep, NULL});
        g_assert_nonnull(strstr(error_of(o, "Blocked"),
                                "does not use libcprkit"));
        g_assert_cmpint(kill(old, SIGKILL), ==, 0);
        for (int i = 0; i < 500; i++) {
            o = status_of(&a, &p7);
            if (json_object_get_int_member(o, "pid") != old)
                break;
            g_clear_object(&p7);
            g_usleep(10000);
        }
        g_assert_cmpint(json_object_get_int_member(o, "pid"), !=, old);
        g_assert_cmpstr(json_object_get_string_member(o, "binary"), ==, keep);
        a.prog_pid = (GPid)json_object_get_int_member(o, "pid");
    }
    /* The copy is: the update runs, its rollback runs the copy. */
    o = upgrade(&a, 3, &p3,
                (const char *const[]){"--to", orig, "--rollback-to", keep,
                                      "--", "--mode", "veto", NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "rolled-back");
    o = status_of(&a, &p4);
    g_assert_cmpstr(json_object_get_string_member(o, "binary"), ==, keep);
    /* Running the copy, nothing blocks an update any more. */
    o = upgrade(&a, 0, &p5, (const char *const[]){"--to", orig, NULL});
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    app_stop(&a, true);
    g_unlink(prog);
    g_unlink(keep);
}

int main(int argc, char **argv)
{
    int r;

    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_func("/cpr-exec/usage", test_usage);
    g_test_add_func("/cpr-exec/run-refuses", test_run_refuses);
    g_test_add_func("/cpr-exec/status", test_status);
    g_test_add_func("/cpr-exec/log-env", test_log_env);
    g_test_add_func("/cpr-exec/upgrade-committed", test_upgrade_committed);
    g_test_add_func("/cpr-exec/request-id", test_request_id);
    g_test_add_func("/cpr-exec/upgrade-missing", test_upgrade_missing);
    g_test_add_func("/cpr-exec/upgrade-veto", test_upgrade_veto);
    g_test_add_func("/cpr-exec/upgrade-listen-after-commit",
                    test_upgrade_listen_after_commit);
    g_test_add_func("/cpr-exec/history", test_history);
    g_test_add_func("/cpr-exec/inspect", test_inspect);
    g_test_add_func("/cpr-exec/check", test_check);
    g_test_add_func("/cpr-exec/unreachable", test_unreachable);
    g_test_add_func("/cpr-exec/hostile-replies", test_hostile_replies);
    g_test_add_func("/cpr-exec/concurrent-client", test_concurrent_client);
    g_test_add_func("/cpr-exec/timeout", test_timeout);
    g_test_add_func("/cpr-exec/no-keeper", test_no_keeper);
    g_test_add_func("/cpr-exec/replaced-on-disk", test_replaced_on_disk);
    g_test_add_func("/cpr-exec/sd-notify", test_sd_notify);
    g_test_add_func("/cpr-exec/example-script", test_example_script);
    g_test_add_func("/cpr-exec/example-unit", test_example_unit);
    app_start(&app, NULL);
    r = g_test_run();
    app_stop(&app, true);
    return r;
}
