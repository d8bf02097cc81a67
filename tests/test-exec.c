/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Real exec hand-offs, driven through exec-helper (which links the public
 * libcprkit.so): preserve a memfd, an eventfd, a pipe and a socketpair,
 * exec, find them again; exec failures first; rollback after a restore-side
 * failure; and the refusal to roll back twice.
 */
#include <glib.h>
#include <string.h>
#include <sys/wait.h>

struct run {
    char *out;
    char *err;
    int exit_code;
};

static void run_helper(const char *mode, struct run *ret)
{
    const char *helper = g_getenv("CPRKIT_EXEC_HELPER");
    g_autoptr(GError) error = NULL;
    int status;

    g_assert_nonnull(helper);
    const char *argv[] = {helper, "old", helper, mode, NULL};
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL,
                               NULL, &ret->out, &ret->err, &status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(status));
    ret->exit_code = WEXITSTATUS(status);
    g_test_message("mode %s, exit %d\nstdout:\n%s\nstderr:\n%s", mode,
                   ret->exit_code, ret->out, ret->err);
}

static void run_clear(struct run *r)
{
    g_free(r->out);
    g_free(r->err);
}

static void assert_has_line(const char *out, const char *prefix)
{
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);

    for (char **l = lines; *l; l++)
        if (g_str_has_prefix(*l, prefix))
            return;
    g_error("no line starting with '%s' in:\n%s", prefix, out);
}

static int pid_after(const char *out, const char *key)
{
    const char *p = strstr(out, key);

    g_assert_nonnull(p);
    return atoi(p + strlen(key));
}

static void test_handoff(void)
{
    struct run r;

    run_helper("normal", &r);
    g_assert_cmpint(r.exit_code, ==, 0);
    g_assert_null(strstr(r.out, "FAIL"));
    assert_has_line(r.out, "child-inherits-nothing: ok");
    assert_has_line(r.out, "NEW-OK pid=");
    /* exec replaced the program in the same process. */
    g_assert_cmpint(pid_after(r.out, "OLD-EXEC pid="), ==,
                    pid_after(r.out, "NEW-OK pid="));
    g_assert_nonnull(strstr(r.out, "generation=1"));
    run_clear(&r);
}

static void test_fail_then_succeed(void)
{
    struct run r;

    run_helper("fail-first", &r);
    g_assert_cmpint(r.exit_code, ==, 0);
    assert_has_line(r.out, "exec-missing: new binary '/nonexistent/new-binary':"
                           " No such file or directory");
    assert_has_line(r.out, "exec-not-executable: ok");
    assert_has_line(r.out, "exec-enoexec: ok");
    assert_has_line(r.out, "EXEC-FAILURES-OK");
    assert_has_line(r.out, "NEW-OK pid=");
    run_clear(&r);
}

static void test_rollback_wrong_type(void)
{
    struct run r;

    run_helper("wrong-type", &r);
    g_assert_cmpint(r.exit_code, ==, 0);
    assert_has_line(r.out, "NEW-CLAIM-FAILED: preserved fd 'ev'/0 has type "
                           "eventfd, expected memfd");
    /* The old binary runs again and finds everything intact. */
    assert_has_line(r.out, "ROLLED-BACK generation=0 reason=preserved fd "
                           "'ev'/0 has type eventfd, expected memfd");
    g_assert_null(strstr(r.out, "FAIL:"));
    run_clear(&r);
}

static void test_rollback_missing(void)
{
    struct run r;

    run_helper("missing", &r);
    g_assert_cmpint(r.exit_code, ==, 0);
    assert_has_line(r.out, "NEW-CLAIM-FAILED: no preserved fd 'extra'/0");
    assert_has_line(r.out, "ROLLED-BACK generation=0 reason=no preserved fd "
                           "'extra'/0");
    run_clear(&r);
}

/* The new binary's start-up closed a preserved fd: it cannot load, rolls
 * back; the old binary cannot load either (the fd is really gone) and must
 * not bounce back again. */
static void test_rollback_not_twice(void)
{
    struct run r;

    run_helper("close-before-load", &r);
    g_assert_cmpint(r.exit_code, ==, 3);
    assert_has_line(r.out, "NEW-LOAD-FAILED: preserved fd 'ev'/0");
    g_assert_nonnull(strstr(r.out, "is missing after exec"));
    assert_has_line(r.out, "OLD-LOAD-FAILED: preserved fd 'ev'/0");
    assert_has_line(r.out, "ROLLBACK-REFUSED: this state was already handed "
                           "back by a rollback");
    run_clear(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/exec/handoff", test_handoff);
    g_test_add_func("/exec/fail-then-succeed", test_fail_then_succeed);
    g_test_add_func("/exec/rollback-wrong-type", test_rollback_wrong_type);
    g_test_add_func("/exec/rollback-missing", test_rollback_missing);
    g_test_add_func("/exec/rollback-not-twice", test_rollback_not_twice);
    return g_test_run();
}
