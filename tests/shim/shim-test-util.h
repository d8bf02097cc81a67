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
    GPid pid;
    char *socket;
    char *dir;
};

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

/* The app dies with the test, even when an assertion aborts it. */
static inline void die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Starts `cpr-exec run --socket DIR/ctl.sock -- cprtest-app EXTRA...`,
 * checks the path it prints, waits until the socket accepts. */
static inline void app_start(struct app *a, const char *const *extra)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    char line[4096] = "";
    FILE *out;
    int out_fd;

    a->dir = g_dir_make_tmp("cprkit-shim-XXXXXX", &error);
    g_assert_no_error(error);
    a->socket = g_build_filename(a->dir, "ctl.sock", NULL);
    g_ptr_array_add(argv, (char *)env_or_fail("CPR_EXEC"));
    g_ptr_array_add(argv, "run");
    g_ptr_array_add(argv, "--socket");
    g_ptr_array_add(argv, a->socket);
    g_ptr_array_add(argv, "--");
    g_ptr_array_add(argv, (char *)env_or_fail("CPRTEST_APP"));
    for (const char *const *e = extra; e && *e; e++)
        g_ptr_array_add(argv, (char *)*e);
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_async_with_pipes(
        NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent,
        NULL, &a->pid, NULL, &out_fd, NULL, &error));
    g_assert_no_error(error);
    out = fdopen(out_fd, "r");
    g_assert_nonnull(out);
    g_assert_nonnull(fgets(line, sizeof(line), out));
    fclose(out);
    g_strchomp(line);
    g_assert_cmpstr(line, ==, a->socket);

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

static inline bool app_alive(struct app *a)
{
    return waitpid(a->pid, NULL, WNOHANG) == 0;
}

/* SIGTERM, and the app must exit 0 (it removes its socket). */
static inline void app_stop(struct app *a, bool expect_clean_exit)
{
    int status;

    kill(a->pid, expect_clean_exit ? SIGTERM : SIGKILL);
    g_assert_cmpint(waitpid(a->pid, &status, 0), ==, a->pid);
    if (expect_clean_exit) {
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        g_assert_false(g_file_test(a->socket, G_FILE_TEST_EXISTS));
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
