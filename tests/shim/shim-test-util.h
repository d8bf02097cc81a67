/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for the tests of the control endpoint and cpr-exec: start
 * cprtest-app under `cpr-exec run`, run cpr-exec verbs, talk JSON. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct app {
    GPid pid;      /* `cpr-exec run`: the keeper (or, --no-keeper, the program) */
    GPid prog_pid; /* the program, as `run --json` printed it */
    char *socket;
    char *dir;
};

/* The process groups of the `cpr-exec run`s started (the keeper and every
 * program it starts share one). PR_SET_PDEATHSIG reaches only the keeper:
 * when a test dies on an assertion, the program would live on as an
 * orphan holding the test's stdout, and meson would wait for it until the
 * timeout. A handler for the fatal signals kills the groups first. */
static pid_t app_groups[32];

static inline void app_groups_kill(int sig)
{
    for (size_t i = 0; i < G_N_ELEMENTS(app_groups); i++)
        if (app_groups[i] > 0)
            kill(-app_groups[i], SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Registers (add) or forgets the group led by pid. */
static inline void app_group_track(pid_t pid, bool add)
{
    static bool installed;

    if (!installed) {
        /* SIGTRAP: G_DEBUG=fatal-warnings turns a Json-CRITICAL into
         * one. */
        static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGTERM, SIGINT,
                                   SIGTRAP};

        for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++)
            signal(sigs[i], app_groups_kill);
        installed = true;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(app_groups); i++) {
        if (add && app_groups[i] == 0) {
            app_groups[i] = pid;
            return;
        }
        if (!add && app_groups[i] == pid) {
            app_groups[i] = 0;
            return;
        }
    }
    g_assert_false(add); /* more apps than slots */
}

static inline const char *env_or_fail(const char *name)
{
    const char *v = g_getenv(name);

    g_assert_nonnull(v);
    return v;
}

static inline int try_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

/* The keeper dies with the test, even when an assertion aborts it; it
 * leads a process group its programs inherit (app_groups). */
static inline void die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
}

/* Starts `cpr-exec run --json --socket DIR/ctl.sock RUN_OPTS... --
 * cprtest-app EXTRA...`, checks the socket it prints and takes the
 * program's pid from it, waits until the socket accepts. err_fd: if not
 * NULL, a pipe from the stderr of the keeper and its programs. */
static inline void app_start_err(struct app *a, const char *const *run_opts,
                                 const char *const *extra, int *err_fd)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) p = json_parser_new();
    char line[4096] = "";
    JsonObject *o;
    FILE *out;
    int out_fd;

    a->dir = g_dir_make_tmp("cprkit-shim-XXXXXX", &error);
    g_assert_no_error(error);
    a->socket = g_build_filename(a->dir, "ctl.sock", NULL);
    g_ptr_array_add(argv, (char *)env_or_fail("CPR_EXEC"));
    g_ptr_array_add(argv, "run");
    g_ptr_array_add(argv, "--json");
    g_ptr_array_add(argv, "--socket");
    g_ptr_array_add(argv, a->socket);
    for (const char *const *e = run_opts; e && *e; e++)
        g_ptr_array_add(argv, (char *)*e);
    g_ptr_array_add(argv, "--");
    g_ptr_array_add(argv, (char *)env_or_fail("CPRTEST_APP"));
    for (const char *const *e = extra; e && *e; e++)
        g_ptr_array_add(argv, (char *)*e);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_async_with_pipes(
        NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent,
        NULL, &a->pid, NULL, &out_fd, err_fd, &error));
    g_assert_no_error(error);
    /* Also here: the child may not have run setpgid yet. */
    setpgid(a->pid, a->pid);
    app_group_track(a->pid, true);
    out = fdopen(out_fd, "r");
    g_assert_nonnull(out);
    g_assert_nonnull(fgets(line, sizeof(line), out));
    fclose(out);
    g_assert_true(json_parser_load_from_data(p, line, -1, &error));
    g_assert_no_error(error);
    o = json_node_get_object(json_parser_get_root(p));
    g_assert_cmpstr(json_object_get_string_member(o, "socket"), ==, a->socket);
    a->prog_pid = (GPid)json_object_get_int_member(o, "pid");
    g_assert_cmpint(a->prog_pid, >, 0);

    for (int i = 0; i < 1000; i++) {
        int fd = try_connect(a->socket);

        if (fd >= 0) {
            close(fd);
            return;
        }
        g_usleep(10000);
    }
    g_error("control socket %s never accepted", a->socket);
}

static inline void app_start_with(struct app *a, const char *const *run_opts,
                                  const char *const *extra)
{
    app_start_err(a, run_opts, extra, NULL);
}

static inline void app_start(struct app *a, const char *const *extra)
{
    app_start_with(a, NULL, extra);
}

/* `cpr-exec run` and the program it started both live. */
static inline bool app_alive(struct app *a)
{
    return waitpid(a->pid, NULL, WNOHANG) == 0 && kill(a->prog_pid, 0) == 0;
}

/* SIGTERM to `cpr-exec run` (the keeper passes it on), and it must exit 0
 * after the program did (which removes its socket); or SIGKILL to the
 * whole group, programs included. */
static inline void app_stop(struct app *a, bool expect_clean_exit)
{
    int status;

    if (expect_clean_exit)
        kill(a->pid, SIGTERM);
    else
        kill(-a->pid, SIGKILL);
    g_assert_cmpint(waitpid(a->pid, &status, 0), ==, a->pid);
    /* Reaped: its pid, and so the group's number, may be reused. */
    app_group_track(a->pid, false);
    if (expect_clean_exit) {
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        g_assert_false(g_file_test(a->socket, G_FILE_TEST_EXISTS));
        /* The keeper reaped it before it exited. */
        g_assert_cmpint(kill(a->prog_pid, 0), ==, -1);
    }
    g_unlink(a->socket);
    g_rmdir(a->dir);
    g_free(a->socket);
    g_free(a->dir);
}

struct cmd_result {
    int code;
    char *out;
    char *err;
};

static inline void cmd_result_clear(struct cmd_result *r)
{
    g_free(r->out);
    g_free(r->err);
}

/* Runs cpr-exec with a NULL-terminated list of arguments. */
static inline struct cmd_result cpr_exec_v(const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    struct cmd_result r = {0};
    int status;

    g_ptr_array_add(argv, (char *)env_or_fail("CPR_EXEC"));
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                               G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err,
                               &status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(status));
    r.code = WEXITSTATUS(status);
    g_test_message("cpr-exec %s -> %d\nstdout: %s\nstderr: %s", args[0],
                   r.code, r.out, r.err);
    return r;
}
#define CPR_EXEC(...) cpr_exec_v((const char *const[]){__VA_ARGS__, NULL})

/* Parses stdout as one JSON object; the caller unrefs the parser. */
static inline JsonObject *parse_object(const char *text, JsonParser **ret)
{
    JsonParser *p = json_parser_new();
    g_autoptr(GError) error = NULL;
    JsonNode *root;

    g_assert_true(json_parser_load_from_data(p, text, -1, &error));
    g_assert_no_error(error);
    root = json_parser_get_root(p);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(root));
    *ret = p;
    return json_node_get_object(root);
}

/* Sends raw bytes on a new connection, reads replies until EOF or the
 * first complete line (within 5 s); returns the first line (or ""). */
static inline char *raw_exchange(const char *path, const void *data,
                                 size_t len, bool shutdown_write)
{
    GString *in = g_string_new(NULL);
    int fd = try_connect(path);
    size_t off = 0;

    g_assert_cmpint(fd, >=, 0);
    while (off < len) {
        ssize_t n = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; /* the server may close on an oversized request */
        off += (size_t)n;
    }
    if (shutdown_write)
        shutdown(fd, SHUT_WR);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        if (n <= 0)
            break;
        g_string_append_len(in, buf, n);
        if (memchr(in->str, '\n', in->len))
            break;
    }
    close(fd);
    {
        char *nl = strchr(in->str, '\n');
        if (nl)
            *nl = '\0';
    }
    return g_string_free(in, false);
}
