/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging: CPRKIT_LOG read by cprkit_new() (the operator's switch for any
 * cprkit program), the stderr fallback it turns on, and how it combines
 * with the API calls (the priority wins, the log function is replaced).
 */
#include <errno.h>
#include <syslog.h>

#include "cprkit-internal.h"
#include "test-util.h"

struct captured {
    GString *text; /* "<priority>message\n" per message */
};

static void capture_log(void *userdata, int priority, const char *msg)
{
    struct captured *c = userdata;

    g_string_append_printf(c->text, "<%d>%s\n", priority, msg);
}

static cprkit_ctx *new_ctx_with_env(const char *value)
{
    cprkit_ctx *ctx;

    if (value)
        g_setenv("CPRKIT_LOG", value, true);
    else
        g_unsetenv("CPRKIT_LOG");
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_unsetenv("CPRKIT_LOG");
    return ctx;
}

/* Runs fn with stderr redirected to a memfd; returns what it wrote. */
static char *stderr_of(void (*fn)(cprkit_ctx *), cprkit_ctx *ctx)
{
    int mem = memfd_create("stderr", MFD_CLOEXEC);
    int saved = dup(STDERR_FILENO);
    char buf[4096];
    ssize_t n;

    g_assert_cmpint(mem, >=, 0);
    g_assert_cmpint(saved, >=, 0);
    g_assert_cmpint(dup2(mem, STDERR_FILENO), ==, STDERR_FILENO);
    fn(ctx);
    g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
    close(saved);
    n = pread(mem, buf, sizeof(buf) - 1, 0);
    g_assert_cmpint(n, >=, 0);
    close(mem);
    buf[n] = '\0';
    return g_strdup(buf);
}

/* A failure (passed at LOG_DEBUG), a notice and an info message. */
static void log_some(cprkit_ctx *ctx)
{
    g_assert_cmpint(cprkit_fd_remove(ctx, "nothing", 3), ==, -ENOENT);
    cprkit_log(ctx, LOG_NOTICE, "a notice");
    cprkit_log(ctx, LOG_INFO, "some info");
}

/* CPRKIT_LOG=debug reaches the application's log function, errors
 * included: the operator turns on debug logging without a rebuild. */
static void test_env_debug_reaches_log_fn(void)
{
    struct captured c = {g_string_new("")};
    cprkit_ctx *ctx = new_ctx_with_env("debug");

    cprkit_set_log_fn(ctx, capture_log, &c);
    log_some(ctx);
    g_assert_cmpstr(c.text->str, ==,
                    "<7>error: no preserved fd 'nothing'/3\n"
                    "<5>a notice\n"
                    "<6>some info\n");
    cprkit_free(ctx);
    g_string_free(c.text, true);
}

/* Without a log function, CPRKIT_LOG sends the messages to stderr in the
 * journal's "<priority>" form; without CPRKIT_LOG the library prints
 * nothing. */
static void test_env_stderr_fallback(void)
{
    g_autofree char *expected = NULL, *out = NULL, *quiet = NULL;
    cprkit_ctx *ctx = new_ctx_with_env("notice");

    out = stderr_of(log_some, ctx);
    expected = g_strdup_printf("<5>cprkit[%d]: a notice\n", (int)getpid());
    g_assert_cmpstr(out, ==, expected);
    /* The application's choice wins: no log function, no output. */
    cprkit_set_log_fn(ctx, NULL, NULL);
    g_free(out);
    out = stderr_of(log_some, ctx);
    g_assert_cmpstr(out, ==, "");
    cprkit_free(ctx);

    ctx = new_ctx_with_env(NULL);
    quiet = stderr_of(log_some, ctx);
    g_assert_cmpstr(quiet, ==, "");
    g_assert_cmpint(cprkit_get_log_priority(ctx), ==, LOG_INFO);
    cprkit_free(ctx);
}

/* Names (syslog's, any case) and numbers 0-7; anything else is ignored:
 * the default stays, and nothing is printed. */
static void test_env_values(void)
{
    static const struct {
        const char *value;
        int priority;
    } cases[] = {
        {"emerg", LOG_EMERG},  {"alert", LOG_ALERT},   {"crit", LOG_CRIT},
        {"err", LOG_ERR},      {"error", LOG_ERR},     {"warning", LOG_WARNING},
        {"warn", LOG_WARNING}, {"notice", LOG_NOTICE}, {"info", LOG_INFO},
        {"debug", LOG_DEBUG},  {"DEBUG", LOG_DEBUG},   {"0", LOG_EMERG},
        {"3", LOG_ERR},        {"7", LOG_DEBUG},       {"", LOG_INFO},
        {"8", LOG_INFO},       {"-1", LOG_INFO},       {"7x", LOG_INFO},
        {"verbose", LOG_INFO}, {" debug", LOG_INFO},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        cprkit_ctx *ctx = new_ctx_with_env(cases[i].value);
        g_autofree char *out = NULL;

        g_test_message("CPRKIT_LOG='%s'", cases[i].value);
        g_assert_cmpint(cprkit_get_log_priority(ctx), ==, cases[i].priority);
        if (cases[i].priority == LOG_INFO &&
            g_ascii_strcasecmp(cases[i].value, "info") != 0) {
            /* Ignored: no stderr fallback either. */
            out = stderr_of(log_some, ctx);
            g_assert_cmpstr(out, ==, "");
        }
        cprkit_free(ctx);
    }
}

/* The operator's variable wins over the application's priority: a
 * program that always sets LOG_NOTICE (as the VM workload does) still
 * logs debug lines under CPRKIT_LOG=debug; without the variable the API
 * sets it. */
static void test_env_overrides_api_priority(void)
{
    struct captured c = {g_string_new("")};
    cprkit_ctx *ctx = new_ctx_with_env("debug");

    g_assert_cmpint(cprkit_get_log_priority(ctx), ==, LOG_DEBUG);
    cprkit_set_log_priority(ctx, LOG_NOTICE);
    g_assert_cmpint(cprkit_get_log_priority(ctx), ==, LOG_DEBUG);
    cprkit_set_log_fn(ctx, capture_log, &c);
    log_some(ctx);
    g_assert_nonnull(strstr(c.text->str, "<5>a notice\n"));
    g_assert_nonnull(strstr(c.text->str, "<7>"));
    cprkit_free(ctx);
    g_string_free(c.text, true);

    ctx = new_ctx_with_env(NULL);
    cprkit_set_log_priority(ctx, LOG_NOTICE);
    g_assert_cmpint(cprkit_get_log_priority(ctx), ==, LOG_NOTICE);
    cprkit_free(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/log/env-debug-reaches-log-fn",
                    test_env_debug_reaches_log_fn);
    g_test_add_func("/log/env-stderr-fallback", test_env_stderr_fallback);
    g_test_add_func("/log/env-values", test_env_values);
    g_test_add_func("/log/env-overrides-api-priority",
                    test_env_overrides_api_priority);
    return g_test_run();
}
