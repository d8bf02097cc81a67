/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keeper (shim/keeper.c) on the host, without VFIO: `cpr-exec run`
 * keeps cprtest-app's preserved fds (a memfd counter, an eventfd) and
 * starts it again from them when an update's new binary dies (crash,
 * abort, exit, no cprkit at all, no commit in time: rolled back) or the
 * committed program is killed (restarted, with a burst limit). After each
 * one the program serves with the same memfd (its counter counts on) and
 * the same eventfd (a value written into it before is still there).
 */
#include "shim-test-util.h"

#include <dirent.h>
#include <stdint.h>

/* Bounded waits: polled, never slept through. */
#define WAIT_MS 10000

/* `cpr-exec status --json`, or NULL if it did not answer 0. */
static JsonObject *try_status(struct app *a, JsonParser **p)
{
    struct cmd_result r = CPR_EXEC("status", "--json", "--socket", a->socket);
    JsonObject *o = NULL;

    if (r.code == 0)
        o = parse_object(r.out, p);
    cmd_result_clear(&r);
    return o;
}

static JsonObject *status_of(struct app *a, JsonParser **p)
{
    JsonObject *o = try_status(a, p);

    g_assert_nonnull(o);
    return o;
}

static JsonObject *keeper_of(JsonObject *status)
{
    return json_object_get_object_member(status, "keeper");
}

/* The fd number the program has for a preserved fd. */
static int fd_named(JsonObject *status, const char *name)
{
    JsonArray *fds = json_object_get_array_member(status, "fds");

    for (guint i = 0; i < json_array_get_length(fds); i++) {
        JsonObject *f = json_array_get_object_element(fds, i);

        if (!strcmp(json_object_get_string_member(f, "name"), name))
            return (int)json_object_get_int_member(f, "fd");
    }
    g_error("no fd named %s in status", name);
}

/* The counter in the program's memfd, read through its fd. */
static uint64_t counter_of(pid_t pid, JsonObject *status)
{
    g_autofree char *path =
        g_strdup_printf("/proc/%d/fd/%d", (int)pid, fd_named(status, "data"));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t v = 0;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, &v, sizeof(v), 0), ==, sizeof(v));
    close(fd);
    return v;
}

/* The value in the program's eventfd, without reading it (fdinfo). */
static uint64_t eventfd_count_of(pid_t pid, JsonObject *status)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fdinfo/%d", (int)pid,
                                            fd_named(status, "events"));
    g_autofree char *text = NULL;
    const char *c;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    c = strstr(text, "eventfd-count:");
    g_assert_nonnull(c);
    return g_ascii_strtoull(c + strlen("eventfd-count:"), NULL, 16);
}

static unsigned fd_count(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    unsigned n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* What /proc/PID/fd points to, for a failure's message. */
static char *fd_list(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
    GString *out = g_string_new(NULL);
    DIR *d = opendir(path);
    struct dirent *e;

    g_assert_nonnull(d);
    while ((e = readdir(d))) {
        g_autofree char *link = NULL;
        g_autofree char *target = NULL;

        if (e->d_name[0] == '.')
            continue;
        link = g_strdup_printf("%s/%s", path, e->d_name);
        target = g_file_read_link(link, NULL);
        g_string_append_printf(out, " %s->%s", e->d_name,
                               target ? target : "?");
    }
    closedir(d);
    return g_string_free(out, false);
}

/* The count without the transient ones: a status request's connection
 * stays open in the program until its next dispatch, a sync in flight
 * adds fds to the keeper for a moment. Transients only add fds, so the
 * smallest of a few samples over 500 ms is the settled count. */
static unsigned settled_fd_count(pid_t pid)
{
    unsigned n = fd_count(pid);

    for (int i = 0; i < 25; i++) {
        g_usleep(20000);
        n = MIN(n, fd_count(pid));
    }
    return n;
}

/* Polls until pid has expected fds (a leak never gets there). */
static void wait_fd_count(pid_t pid, unsigned expected, const char *who)
{
    gint64 end = g_get_monotonic_time() + WAIT_MS * 1000;
    g_autofree char *list = NULL;

    do {
        if (fd_count(pid) == expected)
            return;
        g_usleep(20000);
    } while (g_get_monotonic_time() < end);
    list = fd_list(pid);
    g_error("%s %d has %u fds, not %u, after %d ms:%s", who, (int)pid,
            fd_count(pid), expected, WAIT_MS, list);
}

/* Polls status until a program other than old_pid serves and its counter
 * is past old_counter (it increments after marking serving); returns its
 * status. */
static JsonObject *wait_new_program(struct app *a, pid_t old_pid,
                                    uint64_t old_counter, JsonParser **p)
{
    gint64 end = g_get_monotonic_time() + WAIT_MS * 1000;

    do {
        JsonObject *o;

        g_clear_object(p);
        o = try_status(a, p);
        if (o) {
            pid_t pid = (pid_t)json_object_get_int_member(o, "pid");

            if (pid != old_pid && counter_of(pid, o) > old_counter)
                return o;
        }
        g_usleep(20000);
    } while (g_get_monotonic_time() < end);
    g_error("no new program after pid %d within %d ms", (int)old_pid,
            WAIT_MS);
}

/* waitpid with a bound. */
static int wait_exit(pid_t pid)
{
    gint64 end = g_get_monotonic_time() + WAIT_MS * 1000;
    int status;

    do {
        pid_t r = waitpid(pid, &status, WNOHANG);

        g_assert_cmpint(r, >=, 0);
        if (r == pid) {
            app_group_track(pid, false); /* its number may be reused */
            return status;
        }
        g_usleep(10000);
    } while (g_get_monotonic_time() < end);
    g_error("pid %d did not exit within %d ms", (int)pid, WAIT_MS);
}

/* After `cpr-exec run` exited on its own (and wait_exit reaped it). */
static void app_forget(struct app *a)
{
    g_unlink(a->socket);
    g_rmdir(a->dir);
    g_free(a->socket);
    g_free(a->dir);
}

/* The first program writes 7 into its eventfd and never reads it. */
static const char *const seed_events[] = {"--seed-events", "7", NULL};

struct failed_update {
    const char *mode;  /* the new binary's --mode */
    bool short_commit; /* --commit-timeout 2 */
    const char *reason;
};

/* An update whose new binary dies (or never commits): the keeper starts
 * the old binary with the update's state; the client hears "rolled-back"
 * with the cause; the program serves with the same memfd and eventfd. */
static void test_failed_update(gconstpointer data)
{
    const struct failed_update *t = data;
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_autoptr(JsonParser) p = NULL;
    g_autoptr(JsonParser) p2 = NULL;
    g_autoptr(JsonParser) p3 = NULL;
    struct cmd_result r;
    struct app a;
    JsonObject *o, *k;
    gint64 gen;
    uint64_t counter;

    app_start(&a, seed_events);
    o = status_of(&a, &p);
    gen = json_object_get_int_member(o, "generation");
    counter = counter_of(a.prog_pid, o);
    g_assert_cmpuint(counter, ==, 1);
    g_assert_cmpint(json_object_get_int_member(keeper_of(o), "restarts"), ==,
                    0);
    g_assert_cmpuint(eventfd_count_of(a.prog_pid, o), ==, 7);

    g_ptr_array_add(args, "upgrade");
    g_ptr_array_add(args, "--json");
    g_ptr_array_add(args, "--socket");
    g_ptr_array_add(args, a.socket);
    if (t->short_commit) {
        g_ptr_array_add(args, "--commit-timeout");
        g_ptr_array_add(args, "2");
    }
    g_ptr_array_add(args, "--to");
    g_ptr_array_add(args, (char *)g_getenv("CPRTEST_APP"));
    if (t->mode) {
        g_ptr_array_add(args, "--");
        g_ptr_array_add(args, "--mode");
        g_ptr_array_add(args, (char *)t->mode);
    }
    g_ptr_array_add(args, NULL);
    r = cpr_exec_v((const char *const *)args->pdata);
    g_assert_cmpint(r.code, ==, 3);
    o = parse_object(r.out, &p2);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "rolled-back");
    g_assert_nonnull(
        strstr(json_object_get_string_member(
                   json_object_get_object_member(o, "error"), "desc"),
               t->reason));
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    cmd_result_clear(&r);

    /* The old binary serves again, in a new process under the same
     * keeper, with the same memory and the same eventfd. */
    o = wait_new_program(&a, a.prog_pid, counter, &p3);
    g_assert_cmpint(json_object_get_int_member(o, "generation"), ==, gen);
    g_assert_cmpstr(json_object_get_string_member(o, "binary"), ==,
                    g_getenv("CPRTEST_APP"));
    a.prog_pid = (GPid)json_object_get_int_member(o, "pid");
    g_assert_cmpuint(counter_of(a.prog_pid, o), ==, counter + 1);
    g_assert_cmpuint(eventfd_count_of(a.prog_pid, o), ==, 7);
    k = keeper_of(o);
    g_assert_cmpint(json_object_get_int_member(k, "pid"), ==, a.pid);
    g_assert_cmpint(json_object_get_int_member(k, "restarts"), ==, 1);
    g_assert_nonnull(
        strstr(json_object_get_string_member(k, "last_cause"), t->reason));
    g_assert_cmpstr(json_object_get_string_member(
                        json_object_get_object_member(o, "last_update"),
                        "result"),
                    ==, "rolled-back");
    app_stop(&a, true);
}

/* The committed program SIGKILLed 20 times: each time it comes back from
 * the kept state, and nothing leaks in the keeper or the program. */
static void test_kill_restart(void)
{
    static const char *const opts[] = {"--restart-burst", "100",
                                       "--restart-delay", "10",
                                       "--restart-max-delay", "10", NULL};
    g_autoptr(JsonParser) p = NULL;
    unsigned keeper_fds = 0, prog_fds = 0, first_fds;
    struct app a;
    JsonObject *o;
    uint64_t counter;

    app_start_with(&a, opts, seed_events);
    o = status_of(&a, &p);
    first_fds = settled_fd_count(a.prog_pid);
    counter = counter_of(a.prog_pid, o);
    g_assert_cmpuint(eventfd_count_of(a.prog_pid, o), ==, 7);
    for (int i = 1; i <= 20; i++) {
        g_autoptr(JsonParser) p2 = NULL;
        JsonObject *k;

        g_assert_cmpint(kill(a.prog_pid, SIGKILL), ==, 0);
        o = wait_new_program(&a, a.prog_pid, counter, &p2);
        a.prog_pid = (GPid)json_object_get_int_member(o, "pid");
        g_assert_cmpuint(counter_of(a.prog_pid, o), ==, counter + 1);
        counter++;
        g_assert_cmpuint(eventfd_count_of(a.prog_pid, o), ==, 7);
        g_assert_cmpstr(json_object_get_string_member(
                            json_object_get_object_member(o, "last_update"),
                            "result"),
                        ==, "restarted");
        k = keeper_of(o);
        g_assert_cmpint(json_object_get_int_member(k, "pid"), ==, a.pid);
        g_assert_cmpint(json_object_get_int_member(k, "restarts"), ==, i);
        g_assert_cmpstr(json_object_get_string_member(k, "last_cause"), ==,
                        "program killed by SIGKILL");
        if (i == 1) {
            keeper_fds = settled_fd_count(a.pid);
            prog_fds = settled_fd_count(a.prog_pid);
        }
    }
    g_test_message("keeper fds %u, program fds %u (%u before the first kill)",
                   keeper_fds, prog_fds, first_fds);
    wait_fd_count(a.pid, keeper_fds, "the keeper");
    wait_fd_count(a.prog_pid, prog_fds, "the program");
    g_assert_cmpuint(prog_fds, ==, first_fds);
    app_stop(&a, true);
}

/* --restart-burst 2: the third death within the interval ends it. */
static void test_burst_limit(void)
{
    static const char *const opts[] = {"--restart-burst", "2",
                                       "--restart-interval", "60000",
                                       "--restart-delay", "10", NULL};
    g_autoptr(GString) err = g_string_new(NULL);
    struct app a;
    int status, err_fd;

    app_start_err(&a, opts, NULL, &err_fd);
    for (int i = 0; i < 2; i++) {
        g_autoptr(JsonParser) p = NULL;
        g_autoptr(JsonParser) p2 = NULL;
        JsonObject *o = status_of(&a, &p);
        uint64_t counter = counter_of(a.prog_pid, o);

        g_assert_cmpint(kill(a.prog_pid, SIGKILL), ==, 0);
        o = wait_new_program(&a, a.prog_pid, counter, &p2);
        a.prog_pid = (GPid)json_object_get_int_member(o, "pid");
    }
    g_assert_cmpint(kill(a.prog_pid, SIGKILL), ==, 0);
    status = wait_exit(a.pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    /* Every writer of the pipe is gone: read to EOF. */
    for (;;) {
        char buf[4096];
        ssize_t n = read(err_fd, buf, sizeof(buf));

        if (n <= 0)
            break;
        g_string_append_len(err, buf, n);
    }
    close(err_fd);
    g_test_message("keeper stderr:\n%s", err->str);
    g_assert_nonnull(strstr(err->str, "giving up"));
    g_assert_cmpint(kill(a.prog_pid, 0), ==, -1);
    app_forget(&a);
}

/* SIGTERM to the keeper: passed on, the program exits 0, so does the
 * keeper, and the socket is gone (app_stop checks all of it). */
static void test_clean_stop(void)
{
    struct app a;

    app_start(&a, NULL);
    g_assert_true(app_alive(&a));
    app_stop(&a, true);
}

/* The program exits 0 by itself (SIGTERM to it, not the keeper): a
 * clean stop, not restarted; the keeper exits 0. */
static void test_exit0_not_restarted(void)
{
    struct app a;
    int status;

    app_start(&a, NULL);
    g_assert_cmpint(kill(a.prog_pid, SIGTERM), ==, 0);
    status = wait_exit(a.pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_false(g_file_test(a.socket, G_FILE_TEST_EXISTS));
    g_assert_cmpint(try_connect(a.socket), <, 0);
    app_forget(&a);
}

int main(int argc, char **argv)
{
    static const struct failed_update crash = {
        .mode = "crash", .reason = "new binary killed by SIGSEGV before commit"};
    static const struct failed_update abrt = {
        .mode = "abort-after-claim",
        .reason = "new binary killed by SIGABRT before commit"};
    static const struct failed_update exit1 = {
        .mode = "exit1-early",
        .reason = "new binary exited with status 1 without loading the state"};
    static const struct failed_update hang = {
        .mode = "hang", .short_commit = true,
        .reason = "no commit within 2 s"};
    static const struct failed_update exit0 = {
        .mode = "exit0-early",
        .reason = "new binary exited with status 0 without loading the state"};

    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_data_func("/keeper/update/crash", &crash, test_failed_update);
    g_test_add_data_func("/keeper/update/abort-after-claim", &abrt,
                         test_failed_update);
    g_test_add_data_func("/keeper/update/exit1-early", &exit1,
                         test_failed_update);
    g_test_add_data_func("/keeper/update/hang", &hang, test_failed_update);
    g_test_add_data_func("/keeper/update/exit0-early", &exit0,
                         test_failed_update);
    g_test_add_func("/keeper/kill-restart", test_kill_restart);
    g_test_add_func("/keeper/burst-limit", test_burst_limit);
    g_test_add_func("/keeper/clean-stop", test_clean_stop);
    g_test_add_func("/keeper/exit0-not-restarted", test_exit0_not_restarted);
    return g_test_run();
}
