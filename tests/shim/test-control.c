/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint's protocol from the outside: malformed, oversized
 * and random requests get an error reply and never take the server down;
 * clients of another uid are refused by SO_PEERCRED; the state blob memfd
 * is sealed and not inherited by a child.
 */
#include "shim-test-util.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include "control-internal.h"
#include "cprkit-internal.h"

static struct app app;

/* An error the QMP way: {"error": {"class": ..., "desc": ...}} (it was a
 * string). */
static void assert_error_reply(const char *reply, const char *error_class,
                               const char *needle)
{
    g_autoptr(JsonParser) p = NULL;
    JsonObject *o = parse_object(reply, &p);
    JsonObject *e;

    g_assert_false(json_object_get_boolean_member(o, "ok"));
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==, "error");
    e = json_object_get_object_member(o, "error");
    g_assert_cmpstr(json_object_get_string_member(e, "class"), ==, error_class);
    g_assert_nonnull(strstr(json_object_get_string_member(e, "desc"), needle));
}

static void assert_server_alive(void)
{
    g_autofree char *reply =
        raw_exchange(app.socket, "{\"cmd\":\"status\"}\n", 17, false);
    g_autoptr(JsonParser) p = NULL;
    JsonObject *o = parse_object(reply, &p);

    g_assert_true(json_object_get_boolean_member(o, "ok"));
    /* The program's pid: `cpr-exec run` stays as its keeper. */
    g_assert_cmpint(json_object_get_int_member(o, "pid"), ==, app.prog_pid);
    g_assert_true(app_alive(&app));
}

static void test_malformed(void)
{
    static const struct {
        const char *request;
        const char *error;
    } cases[] = {
        {"garbage\n", "not JSON"},
        {"[1,2,3]\n", "must be a JSON object"},
        {"42\n", "must be a JSON object"},
        {"{}\n", "no \"cmd\""},
        {"{\"cmd\":7}\n", "no \"cmd\""},
        {"{\"cmd\":\"reboot\"}\n",
         "unknown command \"reboot\" (status, inspect, check, upgrade)"},
        {"{\"cmd\":\"upgrade\"}\n", "absolute path"},
        {"{\"cmd\":\"upgrade\",\"binary\":\"relative/path\"}\n",
         "absolute path"},
        {"{\"cmd\":\"upgrade\",\"binary\":\"/bin/true\",\"args\":\"x\"}\n",
         "array of strings"},
        {"{\"cmd\":\"upgrade\",\"binary\":\"/bin/true\",\"args\":[1]}\n",
         "array of strings"},
        {"{\"cmd\":\"check\",\"binary\":[]}\n", "must be a string"},
        {"{\"cmd\":\"status\"\n", "not JSON"},
        {"\xff\xfe{}\n", "UTF-8"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *reply = raw_exchange(
            app.socket, cases[i].request, strlen(cases[i].request), false);
        /* Escaped: a raw non-UTF-8 request in the TAP output is a line
         * meson's TAP parser cannot read. */
        g_autofree char *shown = g_strescape(cases[i].request, NULL);

        g_test_message("request %s -> %s", shown, reply);
        assert_error_reply(reply, "BadRequest", cases[i].error);
    }
    /* An embedded NUL. */
    {
        static const char req[] = "{\"cmd\":\0\"status\"}\n";
        g_autofree char *reply =
            raw_exchange(app.socket, req, sizeof(req) - 1, false);

        assert_error_reply(reply, "BadRequest", "NUL");
    }
    assert_server_alive();
}

/* The status reply byte for byte where it does not depend on the run:
 * libcprkit-control builds it from libcprkit's public API (fd list,
 * participant figures) and must keep the members and their order. */
static void test_status_shape(void)
{
    static const char req[] = "{\"cmd\":\"status\"}\n";
    g_autofree char *reply =
        raw_exchange(app.socket, req, sizeof(req) - 1, false);

    g_test_message("%s", reply);
    g_assert_true(g_str_has_prefix(reply, "{\"ok\":true,\"result\":\"status\","
                                          "\"pid\":"));
    g_assert_nonnull(strstr(reply, "{\"name\":\"cprkit-control\",\"id\":0,"
                                   "\"fd\":"));
    g_assert_nonnull(strstr(reply, ",\"type\":\"socket\"}"));
    g_assert_nonnull(strstr(reply, "],\"blockers\":[],\"vfio\":{\"containers\":0,\"groups\":0,"
                                   "\"devices\":[],\"dma_mappings\":0,"
                                   "\"mapped_bytes\":0,\"irq_indexes\":0,"
                                   "\"ram_blocks\":0},\"last_update\":"));
}

/* A blocker the application registered is in status at once, and check
 * refuses naming it; the app goes on serving. */
static void test_registered_blocker(void)
{
    static const char *const extra[] = {"--blocker", "a migration is running",
                                        NULL};
    static const char status[] = "{\"cmd\":\"status\"}\n";
    static const char check[] = "{\"cmd\":\"check\",\"binary\":\"/bin/true\"}\n";
    g_autofree char *reply = NULL;
    struct app blocked = {0};

    app_start(&blocked, extra);
    reply = raw_exchange(blocked.socket, status, sizeof(status) - 1, false);
    g_assert_nonnull(strstr(reply, ",\"blockers\":[{\"owner\":\"app\","
                                   "\"reason\":\"a migration is running\"}],"));
    g_free(reply);
    reply = raw_exchange(blocked.socket, check, sizeof(check) - 1, false);
    g_test_message("%s", reply);
    g_assert_true(g_str_has_prefix(reply, "{\"ok\":false,"));
    g_assert_nonnull(
        strstr(reply, "the update is blocked: app: a migration is running"));
    g_assert_nonnull(strstr(reply, "\"error\":{\"class\":\"Blocked\","));
    g_assert_true(app_alive(&blocked));

    /* And `cpr-exec status` tells the operator. */
    {
        const char *argv[] = {env_or_fail("CPR_EXEC"), "status", "--socket",
                              blocked.socket, NULL};
        g_autofree char *out = NULL;
        g_autoptr(GError) error = NULL;
        int wait_status;

        g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                                   G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                                   &out, NULL, &wait_status, &error));
        g_assert_cmpint(wait_status, ==, 0);
        g_assert_no_error(error);
        g_assert_nonnull(
            strstr(out, "\nupdate blocked: app: a migration is running\n"));
    }
    app_stop(&blocked, true);
}

static void test_oversized(void)
{
    size_t len = CONTROL_MAX_REQUEST * 2;
    g_autofree char *big = g_malloc(len);
    g_autofree char *reply = NULL;

    memset(big, 'x', len);
    reply = raw_exchange(app.socket, big, len, false);
    assert_error_reply(reply, "BadRequest", "longer than");
    assert_server_alive();
}

/* Several requests on one connection, then EOF without a newline. */
/* A client that sends requests and never reads the replies: once its
 * receive buffer is full the server gives it up (one write timeout) and
 * closes the connection, instead of spending a timeout on every reply
 * while the program waits. */
static void test_client_never_reads(void)
{
    g_autoptr(GString) reqs = g_string_new(NULL);
    struct timeval give_up = {.tv_sec = 60};
    int fd = try_connect(app.socket), small = 4096;
    char buf[65536];
    ssize_t n;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small,
                               sizeof(small)), ==, 0);
    /* Without the fix the test fails here instead of hanging. */
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &give_up,
                               sizeof(give_up)), ==, 0);
    /* 3000 inspect replies are megabytes, far beyond what the socket
     * buffers hold; each reply the server cannot write would cost it a
     * write timeout (1 s) without the fix. */
    for (int i = 0; i < 3000; i++)
        g_string_append(reqs, "{\"cmd\":\"inspect\"}\n");
    for (size_t off = 0; off < reqs->len;) {
        n = send(fd, reqs->str + off, reqs->len - off, MSG_NOSIGNAL);
        if (n < 0)
            break; /* the server may already have cut us off */
        off += (size_t)n;
    }
    /* Another client is served meanwhile... */
    assert_server_alive();
    /* ...and the silent one was cut off: reading what was sent ends in an
     * end of stream (or a reset), after far fewer than 40 replies. */
    {
        g_autoptr(GString) in = g_string_new(NULL);
        guint lines = 0;

        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
            g_string_append_len(in, buf, n);
        g_assert_true(n == 0 || errno == ECONNRESET);
        for (const char *p = in->str; (p = strchr(p, '\n')); p++)
            lines++;
        g_test_message("the silent client got %u of 3000 replies", lines);
        g_assert_cmpuint(lines, <, 3000);
    }
    close(fd);
    assert_server_alive();
}

/* 32 connections that say nothing take every slot: a new client is
 * refused at once, but once they have been idle CONTROL_IDLE_EVICT_MS the
 * owner gets in, replacing the idlest (which is told why). */
static void test_idle_clients_evicted(void)
{
    int idle[CONTROL_MAX_CLIENTS];
    g_autofree char *busy = NULL;
    guint told = 0;

    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        idle[i] = try_connect(app.socket);
        g_assert_cmpint(idle[i], >=, 0);
    }
    g_usleep(200 * 1000); /* the server has accepted them all */
    busy = raw_exchange(app.socket, "{\"cmd\":\"status\"}\n", 17, false);
    g_assert_nonnull(strstr(busy, "too many control connections"));
    g_usleep((CONTROL_IDLE_EVICT_MS + 500) * 1000);
    assert_server_alive();
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        char buf[512];
        ssize_t n = recv(idle[i], buf, sizeof(buf) - 1, MSG_DONTWAIT);

        if (n > 0) {
            buf[n] = '\0';
            g_assert_nonnull(strstr(buf, "closing an idle connection"));
            told++;
        }
        close(idle[i]);
    }
    g_assert_cmpuint(told, ==, 1);
    assert_server_alive();
}

static void test_pipelined(void)
{
    static const char req[] = "{\"cmd\":\"status\"}\n\n{\"cmd\":\"inspect\"}\n"
                              "{\"cmd\":\"status\"}";
    int fd = try_connect(app.socket);
    g_autoptr(GString) in = g_string_new(NULL);
    char buf[65536];
    ssize_t n;
    guint lines = 0;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(send(fd, req, sizeof(req) - 1, 0), ==, sizeof(req) - 1);
    shutdown(fd, SHUT_WR);
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        g_string_append_len(in, buf, n);
    close(fd);
    for (const char *p = in->str; (p = strchr(p, '\n')); p++)
        lines++;
    /* Two complete requests answered; the unterminated one is dropped. */
    g_assert_cmpuint(lines, ==, 2);
    g_assert_nonnull(strstr(in->str, "\"result\":\"inspect\""));
    assert_server_alive();
}

/* Random bytes, with and without newlines: never a crash. */
static void test_fuzz(void)
{
    GRand *rand = g_rand_new_with_seed(0xc0ffee);

    for (int i = 0; i < 300; i++) {
        size_t len = g_rand_int_range(rand, 1, 2048);
        g_autofree char *buf = g_malloc(len + 1);
        g_autofree char *reply = NULL;

        for (size_t j = 0; j < len; j++) {
            /* Mostly JSON-ish characters, so the parser gets deep. */
            static const char alphabet[] = "{}[]\":,0123456789abcdcmdstatus"
                                           "upgradebinaryargs\\ \n\t";
            buf[j] = g_rand_boolean(rand)
                         ? alphabet[g_rand_int_range(rand, 0,
                                                     sizeof(alphabet) - 1)]
                         : (char)g_rand_int_range(rand, 0, 256);
        }
        buf[len] = '\n';
        reply = raw_exchange(app.socket, buf, len + 1, true);
        /* Every answer, if any, is a JSON object. */
        if (*reply) {
            g_autoptr(JsonParser) p = NULL;
            JsonObject *o = parse_object(reply, &p);

            g_assert_true(json_object_has_member(o, "ok"));
        }
    }
    g_rand_free(rand);
    assert_server_alive();
}

/* A client of another uid gets "permission denied" (SO_PEERCRED), even
 * when the socket file lets it connect. */
static void test_peer_cred(void)
{
    int pipefd[2];
    pid_t pid;
    int status;
    char buf[4096] = "";
    ssize_t n;

    if (geteuid() != 0) {
        g_test_skip("needs root to run a client as another uid");
        return;
    }
    g_assert_cmpint(chmod(app.socket, 0666), ==, 0);
    g_assert_cmpint(chmod(app.dir, 0755), ==, 0);
    g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        static const char req[] = "{\"cmd\":\"status\"}\n";
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;
        size_t got = 0;

        if (setresgid(65534, 65534, 65534) < 0 ||
            setresuid(65534, 65534, 65534) < 0)
            _exit(10);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memcpy(sa.sun_path, app.socket, strlen(app.socket));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            _exit(11);
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
        while (got < sizeof(buf) - 1) {
            ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (write(pipefd[1], buf, got) != (ssize_t)got)
            _exit(12);
        _exit(0);
    }
    close(pipefd[1]);
    n = read(pipefd[0], buf, sizeof(buf) - 1);
    close(pipefd[0]);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_cmpint(n, >, 0);
    buf[n] = '\0';
    g_strchomp(buf);
    assert_error_reply(buf, "NotPermitted", "permission denied: uid 65534");
    g_assert_cmpint(chmod(app.socket, 0600), ==, 0);
    assert_server_alive();
}

/* The state blob is sealed and close-on-exec: a child does not get it. */
static void test_blob_sealed_cloexec(void)
{
    cprkit_ctx *ctx;
    _cleanup_free_ uint8_t *blob = NULL;
    size_t size;
    int fd, seals, status;
    pid_t pid;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(cprkit_state_encode(ctx, &blob, &size), ==, 0);
    g_assert_cmpint(blob_write_sealed_memfd(ctx, blob, size, &fd), ==, 0);
    seals = fcntl(fd, F_GET_SEALS);
    g_assert_cmpint(seals & (F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW |
                             F_SEAL_SHRINK),
                    ==,
                    F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
    g_assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    g_assert_cmpint(write(fd, "x", 1), ==, -1);
    g_assert_cmpint(errno, ==, EPERM);

    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        /* In the exec'd shell the fd must be gone. */
        execl("/bin/sh", "sh", "-c", "test ! -e \"$0\"", path, (char *)NULL);
        _exit(127);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    close(fd);
    cprkit_free(ctx);
}

/* A second server on the same path is refused; a stale file is replaced. */
/* The socket's mode is set without following a symlink: a socket file
 * replaced by a symlink after bind() must not make us chmod its target. */
static void test_chmod_no_symlink(void)
{
    g_autofree char *victim = g_build_filename(app.dir, "victim", NULL);
    g_autofree char *link = g_build_filename(app.dir, "link.sock", NULL);
    g_autofree char *plain = g_build_filename(app.dir, "plain.sock", NULL);
    g_autofree char *sock = g_build_filename(app.dir, "real.sock", NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    g_assert_true(g_file_set_contents(victim, "x", 1, NULL));
    g_assert_cmpint(chmod(victim, 0644), ==, 0);
    g_assert_cmpint(symlink(victim, link), ==, 0);
    g_assert_cmpint(control_chmod_socket(link, 0600), ==, -ENOTSOCK);
    g_assert_cmpint(stat(victim, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0644);
    g_assert_true(g_file_set_contents(plain, "x", 1, NULL));
    g_assert_cmpint(control_chmod_socket(plain, 0600), ==, -ENOTSOCK);

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memcpy(sa.sun_path, sock, strlen(sock));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(control_chmod_socket(sock, 0600), ==, 0);
    g_assert_cmpint(stat(sock, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    close(fd);
    unlink(sock);
    unlink(plain);
    unlink(link);
    unlink(victim);
}

static void test_listen_paths(void)
{
    g_autofree char *stale = g_build_filename(app.dir, "stale.sock", NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cprkit_control *c = NULL;
    cprkit_ctx *ctx;
    int fd;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(cprkit_control_listen(ctx, app.socket, &c), ==,
                    -EADDRINUSE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "in use"));
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 0);

    /* A socket file nobody listens on. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memcpy(sa.sun_path, stale, strlen(stale));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    close(fd);
    g_assert_cmpint(cprkit_control_listen(ctx, stale, &c), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 1);
    g_assert_cmpint(cprkit_fd_find(ctx, CONTROL_LISTEN_FD_NAME, 0,
                                   CPRKIT_FD_SOCKET),
                    >=, 0);
    g_assert_true(fcntl(cprkit_control_fd(c), F_GETFD) & FD_CLOEXEC);
    cprkit_control_free(c);
    g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 0);

    g_unsetenv(CPRKIT_CONTROL_SOCKET_ENV);
    g_assert_cmpint(cprkit_control_listen(ctx, NULL, &c), ==, -EINVAL);
    cprkit_free(ctx);
}

int main(int argc, char **argv)
{
    int r;

    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_func("/control/malformed", test_malformed);
    g_test_add_func("/control/status-shape", test_status_shape);
    g_test_add_func("/control/registered-blocker", test_registered_blocker);
    g_test_add_func("/control/oversized", test_oversized);
    g_test_add_func("/control/pipelined", test_pipelined);
    g_test_add_func("/control/fuzz", test_fuzz);
    g_test_add_func("/control/peer-cred", test_peer_cred);
    g_test_add_func("/control/listen-paths", test_listen_paths);
    g_test_add_func("/control/chmod-no-symlink", test_chmod_no_symlink);
    g_test_add_func("/control/client-never-reads", test_client_never_reads);
    g_test_add_func("/control/idle-clients-evicted", test_idle_clients_evicted);
    g_test_add_func("/control/blob-sealed-cloexec", test_blob_sealed_cloexec);
    app_start(&app, NULL);
    r = g_test_run();
    app_stop(&app, true);
    return r;
}
