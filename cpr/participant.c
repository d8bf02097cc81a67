/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The participant table and the steps of an update over it, in the order
 * documented in participant.h. The core knows participants only through
 * this table: it never names one.
 */
#include <stdlib.h>

#include "cprkit-internal.h"

/* A handful at most: VFIO type1 today, perhaps iommufd or vhost later. */
#define PARTICIPANTS_MAX 8

static const struct participant *registry[PARTICIPANTS_MAX];
static unsigned n_registered;

struct participant_slot {
    const struct participant *p;
    void *state;
};

void participant_register(const struct participant *p)
{
    unsigned i;

    for (i = 0; i < n_registered; i++)
        if (registry[i] == p)
            return;
    /* Runs before main, with nobody to report to: a table too small is a
     * build mistake, caught by the first test that runs. */
    if (n_registered == PARTICIPANTS_MAX)
        abort();
    /* Insertion keeps the order stable among equal priorities. */
    for (i = n_registered; i > 0 && registry[i - 1]->priority > p->priority;
         i--)
        registry[i] = registry[i - 1];
    registry[i] = p;
    n_registered++;
}

/* By the participant's address: every context is made and used by one
 * copy of the code (libcprkit-control calls libcprkit.so's API and holds
 * no copy of its own, tests/check-control-so). */
void *participant_state(cprkit_ctx *ctx, const struct participant *p)
{
    for (unsigned i = 0; i < ctx->n_participants; i++)
        if (ctx->participants[i].p == p)
            return ctx->participants[i].state;
    /* Only a participant that never registered gets here; every caller
     * would dereference the result. */
    abort();
}

/* A context takes the table as it is when created: a later registration
 * (a library loaded afterwards) does not change the contexts that exist. */
void participants_init(cprkit_ctx *ctx)
{
    ctx->n_participants = n_registered;
    ctx->participants = g_new0(struct participant_slot, n_registered);
    for (unsigned i = 0; i < n_registered; i++) {
        ctx->participants[i].p = registry[i];
        ctx->participants[i].state = g_malloc0(registry[i]->state_size);
    }
    for (unsigned i = 0; i < ctx->n_participants; i++)
        if (ctx->participants[i].p->init)
            ctx->participants[i].p->init(ctx);
}

static void clear_all(cprkit_ctx *ctx)
{
    for (unsigned i = ctx->n_participants; i-- > 0;)
        if (ctx->participants[i].p->clear)
            ctx->participants[i].p->clear(ctx);
}

void participants_clear(cprkit_ctx *ctx)
{
    clear_all(ctx);
    for (unsigned i = 0; i < ctx->n_participants; i++)
        g_free(ctx->participants[i].state);
    g_free(ctx->participants);
    ctx->participants = NULL;
    ctx->n_participants = 0;
}

/* Back to what cprkit_new() made: after a failed load. */
void participants_reset(cprkit_ctx *ctx)
{
    clear_all(ctx);
    for (unsigned i = 0; i < ctx->n_participants; i++)
        if (ctx->participants[i].p->init)
            ctx->participants[i].p->init(ctx);
}

int participants_check_blockers(cprkit_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->check_blockers ? p->check_blockers(ctx) : 0;

        if (r < 0)
            return r;
    }
    return 0;
}

int participants_suspend(cprkit_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->suspend ? p->suspend(ctx) : 0;

        if (r < 0) {
            /* p undid its own part; k-1 .. 0 are resumed here. Keep p's
             * message: that is the failure the caller reports. */
            g_autofree char *why = g_strdup(cprkit_last_error(ctx));

            for (unsigned j = i; j-- > 0;) {
                const struct participant *q = ctx->participants[j].p;

                if (q->resume)
                    q->resume(ctx);
            }
            return ctx_fail(ctx, r, "%s", why);
        }
    }
    return 0;
}

/* Best effort over every participant: one that cannot resume must not
 * keep the others suspended. Returns the first error, its message
 * prefixed with the participant's name. */
int participants_resume(cprkit_ctx *ctx)
{
    g_autofree char *first_msg = NULL;
    int first_error = 0;

    for (unsigned i = ctx->n_participants; i-- > 0;) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->resume ? p->resume(ctx) : 0;

        if (r < 0 && !first_error) {
            first_error = r;
            first_msg =
                g_strdup_printf("%s: %s", p->name, cprkit_last_error(ctx));
        }
    }
    if (first_error)
        return ctx_fail(ctx, first_error, "%s", first_msg);
    return 0;
}

int participants_save(cprkit_ctx *ctx, Cprkit__State *state)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->save ? p->save(ctx, state) : 0;

        if (r < 0)
            return r;
    }
    return 0;
}

int participants_load(cprkit_ctx *ctx, const Cprkit__State *state)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->load ? p->load(ctx, state) : 0;

        if (r < 0)
            return r;
    }
    return 0;
}

int participants_adopt(cprkit_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->adopt ? p->adopt(ctx) : 0;

        if (r < 0)
            return r;
    }
    return 0;
}

/* Each participant's clause, joined with "; ". */
unsigned participants_pending(cprkit_ctx *ctx, GString *out)
{
    unsigned total = 0;

    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        g_autoptr(GString) clause = g_string_new(NULL);
        unsigned n = p->pending ? p->pending(ctx, clause) : 0;

        if (n == 0)
            continue;
        if (total)
            g_string_append(out, "; ");
        g_string_append(out, clause->str);
        total += n;
    }
    return total;
}

void participants_committed(cprkit_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->n_participants; i++)
        if (ctx->participants[i].p->committed)
            ctx->participants[i].p->committed(ctx);
}

static void abort_below(cprkit_ctx *ctx, unsigned k)
{
    for (unsigned i = k; i-- > 0;)
        if (ctx->participants[i].p->rollback_abort)
            ctx->participants[i].p->rollback_abort(ctx);
}

int participants_rollback_prepare(cprkit_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        int r = p->rollback_prepare ? p->rollback_prepare(ctx) : 0;

        if (r < 0) {
            g_autofree char *why = g_strdup(cprkit_last_error(ctx));

            abort_below(ctx, i);
            return ctx_fail(ctx, r, "%s", why);
        }
    }
    return 0;
}

void participants_rollback_abort(cprkit_ctx *ctx)
{
    abort_below(ctx, ctx->n_participants);
}

void participants_stats(cprkit_ctx *ctx, participant_stat_fn add,
                        void *userdata)
{
    for (unsigned i = 0; i < ctx->n_participants; i++)
        if (ctx->participants[i].p->stats)
            ctx->participants[i].p->stats(ctx, add, userdata);
}

/* cprkit_participant_stats(): each participant's figures with its name. */
struct named_stats {
    const char *participant;
    cprkit_stat_fn fn;
    void *userdata;
};

static void add_named_stat(void *userdata, const char *key, uint64_t value,
                           const char *const *names)
{
    struct named_stats *n = userdata;

    n->fn(n->userdata, n->participant, key, value, names);
}

CPRKIT_EXPORT void cprkit_participant_stats(cprkit_ctx *ctx, cprkit_stat_fn fn,
                                            void *userdata)
{
    for (unsigned i = 0; i < ctx->n_participants; i++) {
        const struct participant *p = ctx->participants[i].p;
        struct named_stats n = {p->name, fn, userdata};

        if (p->stats)
            p->stats(ctx, add_named_stat, &n);
    }
}
