/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks and output. In TAP mode (the VM tests) every check is a result
 * line and the numbering continues across exec; in human mode (./demo)
 * only failed checks are printed, next to the per-update lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tap.h"
#include "workload.h"

static bool tap_mode;
static unsigned human_checks, human_failed;
static uint32_t *live_failed; /* report_attach() */

void report_init(bool tap)
{
    tap_mode = tap;
}

bool check(bool pass, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (tap_mode)
        return tap_ok(pass, "%s", msg);
    human_checks++;
    if (!pass) {
        human_failed++;
        if (live_failed)
            *live_failed = human_failed;
        printf("  FAIL: %s\n", msg);
        fflush(stdout);
    }
    return pass;
}

void note(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (tap_mode)
        tap_diag("%s", msg);
    else
        printf("%s\n", msg);
    fflush(stdout);
}

void fatal(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (tap_mode)
        tap_bail("%s", msg);
    printf("  FATAL: %s\n", msg);
    fflush(stdout);
    exit(1);
}

unsigned report_failures(void)
{
    return tap_mode ? tap_failed() : human_failed;
}

void report_attach(uint32_t *failed, bool incoming)
{
    if (tap_mode)
        return;
    /* After an update the environment brought the same count; after a
     * restart by the keeper (crash, or an update's process killed) only
     * the RAM block has it. */
    if (incoming && *failed > human_failed)
        human_failed = *failed;
    *failed = human_failed;
    live_failed = failed;
}

void report_export(void)
{
    char v[64];

    if (tap_mode)
        snprintf(v, sizeof(v), "%u %u", tap_count(), tap_failed());
    else
        snprintf(v, sizeof(v), "%u %u", human_checks, human_failed);
    setenv(WL_TAP_ENV, v, 1);
}

void report_import(void)
{
    const char *v = getenv(WL_TAP_ENV);
    unsigned count, failed;

    if (!v || sscanf(v, "%u %u", &count, &failed) != 2)
        return;
    if (tap_mode)
        tap_resume(count, failed);
    human_checks = count;
    human_failed = failed;
    /* Ours alone: must not reach any other child. */
    unsetenv(WL_TAP_ENV);
}

void report_finish(void)
{
    if (tap_mode) {
        /* Trailing plan: how many results depends on the path taken. */
        tap_plan(tap_count());
        tap_exit();
    }
    printf("%s: %u checks, %u failed\n", human_failed ? "FAILED" : "PASSED",
           human_checks, human_failed);
    fflush(stdout);
    exit(human_failed ? 1 : 0);
}
