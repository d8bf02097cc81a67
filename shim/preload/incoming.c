/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The incoming side: a binary started by an update re-runs the program's
 * initialisation, and each interposed call claims one resource the
 * previous binary recorded. Init is complete when every recorded resource
 * was claimed: the shim commits then. If the new binary does something
 * else, or does not get there within CPRKIT_PRELOAD_INIT_TIMEOUT, the shim
 * rolls back to the previous binary.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "preload-internal.h"

bool preload_incoming;
static struct preload_item expected[PRELOAD_MAX_ITEMS];
static size_t n_expected;
static uint64_t commit_deadline_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Called at start-up when the state says this binary was started by an
 * update; rolls back and returns < 0 if the record is unreadable. */
int preload_incoming_start(void)
{
    const char *timeout = getenv("CPRKIT_PRELOAD_INIT_TIMEOUT");
    char why[256], reason[320];
    int r;

    preload_incoming = true;
    r = preload_records_load(expected, PRELOAD_MAX_ITEMS, &n_expected, why,
                             sizeof(why));
    if (r < 0) {
        snprintf(reason, sizeof(reason),
                 "the shim's record of the VFIO resources is unreadable: %s",
                 why);
        cprkit_rollback(preload_ctx, reason);
        return r;
    }
    commit_deadline_ns =
        now_ns() + (uint64_t)(timeout ? atoi(timeout) : 30) * 1000000000ull;
    preload_log(LOG_INFO,
                "started by an update (generation %" PRIu64 "%s): "
                "expecting the program to re-create %zu VFIO "
                "resources",
                cprkit_generation(preload_ctx),
                cprkit_is_rollback(preload_ctx) ? ", rolled back" : "",
                n_expected);
    return 0;
}

/* The recorded group number, or NULL: it was not preserved. */
const struct preload_item *preload_incoming_find_group(int number)
{
    for (size_t i = 0; preload_incoming && i < n_expected; i++)
        if (expected[i].kind == PRELOAD_ITEM_GROUP &&
            expected[i].a == (uint64_t)number)
            return &expected[i];
    return NULL;
}

/* Hands the state back to the previous binary. Returns only if that
 * failed; the caller fails the program's call then. */
void preload_rollback(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    int r;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    preload_log(LOG_ERR,
                "the new binary cannot take over the preserved "
                "devices: %s; rolling back",
                why);
    preload_in_lib++;
    r = cprkit_rollback(preload_ctx, why);
    preload_log(LOG_ERR, "rollback failed: %s (%s)", strerror(-r),
                cprkit_last_error(preload_ctx));
    preload_in_lib--;
}

/* Marks it re-created (if it was recorded) and records it for the next
 * update. */
void preload_claim(const struct preload_item *it)
{
    int i = preload_items_find(expected, n_expected, it);

    if (i >= 0)
        expected[i].claimed = true;
    preload_record_add(it);
}

/* Init is complete when every recorded resource was re-created: commit
 * then, before the program's next instruction after the claiming call. */
void preload_maybe_commit(void)
{
    int r;

    if (!preload_incoming)
        return;
    for (size_t i = 0; i < n_expected; i++)
        if (!expected[i].claimed)
            return;
    preload_in_lib++;
    r = cprkit_commit(preload_ctx);
    if (r < 0) {
        char why[512];

        snprintf(why, sizeof(why), "commit: %s",
                 cprkit_last_error(preload_ctx));
        preload_in_lib--;
        preload_rollback("%s", why);
        return;
    }
    preload_incoming = false;
    preload_log(LOG_INFO,
                "committed: generation %" PRIu64 ", every "
                "preserved VFIO resource was taken over",
                cprkit_generation(preload_ctx));
    cprkit_control_mark_serving(preload_control);
    preload_in_lib--;
}

/* Called by the control thread: the new binary did not re-create
 * everything in time. */
void preload_check_deadline(void)
{
    char what[128] = "";

    if (!preload_incoming || now_ns() < commit_deadline_ns)
        return;
    for (size_t i = 0; i < n_expected; i++)
        if (!expected[i].claimed) {
            preload_item_describe(&expected[i], what, sizeof(what));
            break;
        }
    preload_rollback("initialisation did not re-create %s within "
                     "CPRKIT_PRELOAD_INIT_TIMEOUT",
                     what);
}
