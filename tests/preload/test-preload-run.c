/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shim end to end on the host, without VFIO: `cpr-exec run` preloads
 * libcprkit-preload.so into plain-app (which does not link libcprkit), the
 * shim serves the control socket, and `cpr-exec upgrade` replaces the
 * program in place (the program keeps its pid, a child of the keeper that
 * `cpr-exec run` stays; generation 1, committed). A failing update
 * leaves the old binary serving; the program exec'ing itself is an update;
 * a missing shim is refused by `run`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "../shim/shim-test-util.h"

static const char *cpr_exec, *shim, *app;

static char *sock_path(void)
{
    return g_strdup_printf("%s/preload-%d.sock", g_get_tmp_dir(), (int)getpid());
}

/* `cpr-exec run --json` with its stdout in out; returns its pid (the
 * keeper's), *ret_prog the program's, from the JSON it printed first. */
static int spawn_run(const char *sock, const char *arg, const char *out,
                     pid_t *ret_prog)
{
    const char *argv[] = {cpr_exec, "run", "--json", "--preload", shim,
                          "--socket", sock, "--", app, arg, NULL};
    g_autoptr(JsonParser) p = json_parser_new();
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        FILE *f = freopen(out, "w", stdout);

        if (!f)
            _exit(127);
        /* The keeper dies with the test; its group, programs included, is
         * killed when an assertion fails (app_groups). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0);
        /* An fd the program is started with (as a service manager passes
         * its sockets): it must cross every update. */
        dup2(open("/dev/null", O_RDONLY), 9);
        execv(cpr_exec, (char **)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    app_group_track(pid, true);
    for (int i = 0; i < 500; i++) {
        g_autofree char *text = NULL;
        char *nl;

        if (g_file_get_contents(out, &text, NULL, NULL) &&
            (nl = strchr(text, '\n'))) {
            *nl = '\0';
            g_assert_true(json_parser_load_from_data(p, text, -1, NULL));
            *ret_prog = (pid_t)json_object_get_int_member(
                json_node_get_object(json_parser_get_root(p)), "pid");
            g_assert_cmpint(*ret_prog, >, 0);
            g_assert_cmpint(*ret_prog, !=, pid);
            return pid;
        }
        g_usleep(20000);
    }
    g_error("cpr-exec run printed nothing in 10 s");
}

static JsonObject *cmd_json(JsonParser *p, const char *const *argv, int *ret_code)
{
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;
    int status;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, &out,
                               NULL, &status, &err));
    *ret_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (!out || !*out || !json_parser_load_from_data(p, out, -1, NULL) ||
        !json_parser_get_root(p) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
        return NULL;
    return json_node_get_object(json_parser_get_root(p));
}

/* A member of status, or of its "keeper" object with "keeper.NAME". */
static gint64 status_member(const char *sock, const char *member)
{
    const char *argv[] = {cpr_exec, "status", "--json", "--socket", sock, NULL};
    g_autoptr(JsonParser) p = json_parser_new();
    int code;
    JsonObject *o;

    for (int i = 0; i < 200; i++) {
        o = cmd_json(p, argv, &code);
        if (o && code == 0 && g_str_has_prefix(member, "keeper.")) {
            JsonNode *k = json_object_get_member(o, "keeper");

            if (!k || !JSON_NODE_HOLDS_OBJECT(k))
                return -1;
            return json_object_get_int_member_with_default(
                json_node_get_object(k), member + strlen("keeper."), -1);
        }
        if (o && code == 0)
            return json_object_get_int_member_with_default(o, member, -1);
        g_usleep(20000);
    }
    return -1;
}

static int count_lines(const char *file, const char *needle)
{
    g_autofree char *text = NULL;
    int n = 0;

    if (!g_file_get_contents(file, &text, NULL, NULL))
        return -1;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* SIGTERM to target (the keeper passes it on, or the program itself);
 * the program exits 0 and so does the keeper. */
static void stop(pid_t keeper, pid_t target)
{
    int status;

    g_assert_cmpint(kill(target, SIGTERM), ==, 0);
    g_assert_cmpint(waitpid(keeper, &status, 0), ==, keeper);
    app_group_track(keeper, false); /* reaped: its number may be reused */
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

/* The N of "fd=N" in the started line of plain-app whose arg is @arg. */
static int started_fd(const char *file, const char *arg)
{
    g_autofree char *text = NULL;
    g_autofree char *needle = g_strdup_printf("arg=%s fd=", arg);
    const char *p;

    if (!g_file_get_contents(file, &text, NULL, NULL) ||
        !(p = strstr(text, needle)))
        return -1;
    return atoi(p + strlen(needle));
}

static bool has_fd(pid_t pid, int fd)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd/%d", (int)pid, fd);

    return access(path, F_OK) == 0;
}

static void test_upgrade(void)
{
    g_autofree char *sock = sock_path();
    g_autofree char *out = g_strdup_printf("%s.out", sock);
    g_autoptr(JsonParser) p = json_parser_new();
    const char *up[] = {cpr_exec, "upgrade", "--json", "--socket", sock,
                        "--to", app, "--", "two", NULL};
    const char *bad[] = {cpr_exec, "upgrade", "--json", "--socket", sock,
                         "--to", "/nonexistent/app", NULL};
    JsonObject *o;
    pid_t pid, keeper;
    int code;

    keeper = spawn_run(sock, "one", out, &pid);
    g_assert_cmpint(status_member(sock, "pid"), ==, pid);
    g_assert_true(has_fd(pid, 9));
    g_assert_cmpint(status_member(sock, "keeper.pid"), ==, keeper);
    g_assert_cmpint(status_member(sock, "generation"), ==, 0);

    o = cmd_json(p, up, &code);
    g_assert_nonnull(o);
    g_assert_cmpint(code, ==, 0);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "committed");
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, pid);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, 1);
    g_assert_cmpint(status_member(sock, "pid"), ==, pid);
    g_assert_cmpint(status_member(sock, "generation"), ==, 1);
    g_assert_cmpint(count_lines(out, "arg=two"), ==, 1);
    /* The fd the program opened without O_CLOEXEC did not cross the
     * update: the new binary's open got the same number again. The fd it
     * was started with did. */
    g_assert_cmpint(started_fd(out, "one"), >, 2);
    g_assert_cmpint(started_fd(out, "two"), ==, started_fd(out, "one"));
    g_assert_true(has_fd(pid, 9));

    /* a binary that does not exist: refused, the program keeps serving */
    o = cmd_json(p, bad, &code);
    g_assert_nonnull(o);
    g_assert_cmpint(code, !=, 0);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), !=, "committed");
    g_assert_cmpint(status_member(sock, "generation"), ==, 1);
    g_assert_cmpint(status_member(sock, "pid"), ==, pid);

    /* and the signals reach the program after an update from the control
     * thread (its mask is not the program's): sent to the program itself */
    stop(keeper, pid);
    /* a normal exit takes the control socket file with it */
    g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
    unlink(out);
}

static void test_selfexec(void)
{
    g_autofree char *sock = sock_path();
    g_autofree char *out = g_strdup_printf("%s.out", sock);
    pid_t pid;
    pid_t keeper = spawn_run(sock, "selfexec", out, &pid);

    for (int i = 0; i < 200 && count_lines(out, "arg=selfexec-done") < 1; i++)
        g_usleep(20000);
    g_assert_cmpint(count_lines(out, "arg=selfexec-done"), ==, 1);
    g_assert_cmpint(count_lines(out, "execv failed"), ==, 0);
    g_assert_cmpint(status_member(sock, "generation"), ==, 1);
    g_assert_cmpint(status_member(sock, "pid"), ==, pid);
    g_assert_cmpint(status_member(sock, "keeper.pid"), ==, keeper);
    /* through the keeper, which passes SIGTERM on */
    stop(keeper, keeper);
    unlink(out);
}

/* A program that does not link libcprkit, killed with SIGKILL, comes back
 * under the shim from the keeper's fds: a new pid, the same generation,
 * "restarted" with the cause, and its own start-up run again (the shim
 * answers its re-opens with the kept fds). */
/* A child the program forks and execs gets neither the control socket nor
 * the state fd: the shim in it stays passive and can never take the
 * socket over. */
static void test_child_env(void)
{
    g_autofree char *sock = sock_path();
    g_autofree char *out = g_strdup_printf("%s.out", sock);
    pid_t pid;
    pid_t keeper = spawn_run(sock, "child-env", out, &pid);

    for (int i = 0; i < 200 && count_lines(out, "plain-app child done") < 1;
         i++)
        g_usleep(20000);
    g_assert_cmpint(count_lines(out, "plain-app child done"), ==, 1);
    g_assert_cmpint(count_lines(out, "PATH="), >=, 1); /* env ran */
    g_assert_cmpint(count_lines(out, "CPRKIT_CONTROL_SOCKET="), ==, 0);
    g_assert_cmpint(count_lines(out, "CPRKIT_STATE_FD="), ==, 0);
    stop(keeper, keeper);
    unlink(out);
}

static void test_crash_restart(void)
{
    g_autofree char *sock = sock_path();
    g_autofree char *out = g_strdup_printf("%s.out", sock);
    const char *st[] = {cpr_exec, "status", "--json", "--socket", sock, NULL};
    g_autoptr(JsonParser) p = json_parser_new();
    JsonObject *o = NULL, *last = NULL;
    pid_t pid, now = -1;
    pid_t keeper = spawn_run(sock, "one", out, &pid);
    int code;

    g_assert_cmpint(status_member(sock, "pid"), ==, pid);
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    for (int i = 0; i < 500; i++) {
        now = (pid_t)status_member(sock, "pid");
        if (now > 0 && now != pid)
            break;
        g_usleep(20000);
    }
    g_assert_cmpint(now, >, 0);
    g_assert_cmpint(now, !=, pid);
    g_assert_cmpint(status_member(sock, "keeper.pid"), ==, keeper);
    g_assert_cmpint(status_member(sock, "keeper.restarts"), ==, 1);
    g_assert_cmpint(status_member(sock, "generation"), ==, 0);
    o = cmd_json(p, st, &code);
    g_assert_nonnull(o);
    last = json_object_get_object_member(o, "last_update");
    g_assert_nonnull(last);
    g_assert_cmpstr(json_object_get_string_member(last, "result"), ==,
                    "restarted");
    g_assert_cmpstr(json_object_get_string_member(
                        json_object_get_object_member(last, "error"), "class"),
                    ==, "Restarted");
    g_assert_cmpstr(json_object_get_string_member(
                        json_object_get_object_member(last, "error"), "desc"),
                    ==, "program killed by SIGKILL");
    g_assert_cmpint(count_lines(out, "arg=one"), ==, 2);
    stop(keeper, keeper);
    unlink(out);
}

/* A program that links libcprkit (core only) runs without the shim:
 * cpr-exec run says so, and no shim serves a control socket for it. */
static void test_links_libcprkit(void)
{
    g_autofree char *sock = sock_path();
    const char *argv[] = {cpr_exec, "run",  "--json", "--no-keeper",
                          "--preload", shim, "--socket", sock, "--",
                          g_getenv("CORE_APP"), NULL};
    g_autoptr(JsonParser) p = json_parser_new();
    g_autofree char *out = NULL, *err = NULL;
    GPid pid;
    int out_fd, err_fd;
    JsonObject *o;
    char buf[4096];
    ssize_t n;

    unlink(sock); /* an earlier test's (same path) */
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                           NULL, &pid, NULL, &out_fd, &err_fd,
                                           NULL));
    /* Its first line is the JSON of `run`, then the program's line. */
    {
        g_autoptr(GString) text = g_string_new(NULL);

        while (!strstr(text->str, "core-app started") &&
               (n = read(out_fd, buf, sizeof(buf))) > 0)
            g_string_append_len(text, buf, n);
        out = g_strndup(text->str, strcspn(text->str, "\n"));
    }
    g_assert_true(json_parser_load_from_data(p, out, -1, NULL));
    o = json_node_get_object(json_parser_get_root(p));
    g_assert_true(json_object_get_null_member(o, "preload"));
    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
    g_spawn_close_pid(pid);
    n = read(err_fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    g_assert_nonnull(strstr(buf, "links libcprkit but not its control "
                                 "endpoint"));
    g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
    close(out_fd);
    close(err_fd);
}

static void test_missing_shim(void)
{
    const char *argv[] = {cpr_exec, "run", "--preload", "/nonexistent/shim.so",
                          "--", app, NULL};
    g_autofree char *err = NULL;
    int status;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                               &err, &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_nonnull(strstr(err, "does not link libcprkit"));
    g_assert_nonnull(strstr(err, "--preload"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    cpr_exec = g_getenv("CPR_EXEC");
    shim = g_getenv("CPRKIT_PRELOAD_SHIM");
    app = g_getenv("PLAIN_APP");
    if (!cpr_exec || !shim || !app) {
        printf("1..0 # SKIP CPR_EXEC, CPRKIT_PRELOAD_SHIM, PLAIN_APP not set\n");
        return 77;
    }
    g_test_add_func("/preload/run/upgrade", test_upgrade);
    g_test_add_func("/preload/run/selfexec", test_selfexec);
    g_test_add_func("/preload/run/child-env", test_child_env);
    g_test_add_func("/preload/run/crash-restart", test_crash_restart);
    g_test_add_func("/preload/run/missing-shim", test_missing_shim);
    g_test_add_func("/preload/run/links-libcprkit", test_links_libcprkit);
    return g_test_run();
}
