/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The participant table: the order of every step, the undo of a failed
 * suspend or rollback preparation, private state per context, and the
 * core's use of pending for commit. Three recording participants around
 * the real VFIO one (priority 100, empty here, so it records nothing and
 * changes nothing).
 */
#include "cprkit-internal.h"
#include "test-util.h"

static GString *trace;

struct fake_state {
    int inits;
    bool loaded;
};

struct fake {
    const char *name;
    int fail_suspend, fail_resume, fail_load, fail_rollback_prepare;
    unsigned pending;
};

static struct fake fakes[3] = {
    {.name = "early"},
    {.name = "late"},
    {.name = "later"},
};

static void record(int i, const char *what)
{
    g_string_append_printf(trace, "%s%s:%s", trace->len ? " " : "",
                           fakes[i].name, what);
}

/* One set of callbacks per fake, each recording and failing on demand. */
#define FAKE_CALLBACKS(i, p)                                                   \
    static void init_##i(cprkit_ctx *ctx)                                      \
    {                                                                          \
        struct fake_state *s = participant_state(ctx, &p);                     \
        s->inits++;                                                            \
        s->loaded = false;                                                     \
        record(i, "init");                                                     \
    }                                                                          \
    static void clear_##i(cprkit_ctx *ctx)                                     \
    {                                                                          \
        record(i, "clear");                                                    \
    }                                                                          \
    static int check_##i(cprkit_ctx *ctx)                                      \
    {                                                                          \
        record(i, "check");                                                    \
        return 0;                                                              \
    }                                                                          \
    static int suspend_##i(cprkit_ctx *ctx)                                    \
    {                                                                          \
        record(i, "suspend");                                                  \
        if (fakes[i].fail_suspend)                                             \
            return ctx_fail(ctx, fakes[i].fail_suspend, "%s cannot suspend",   \
                            fakes[i].name);                                    \
        return 0;                                                              \
    }                                                                          \
    static int resume_##i(cprkit_ctx *ctx)                                     \
    {                                                                          \
        record(i, "resume");                                                   \
        if (fakes[i].fail_resume)                                              \
            return ctx_fail(ctx, fakes[i].fail_resume, "cannot resume");       \
        return 0;                                                              \
    }                                                                          \
    static int save_##i(cprkit_ctx *ctx, Cprkit__State *state)                 \
    {                                                                          \
        record(i, "save");                                                     \
        return 0;                                                              \
    }                                                                          \
    static int load_##i(cprkit_ctx *ctx, const Cprkit__State *state)           \
    {                                                                          \
        record(i, "load");                                                     \
        if (fakes[i].fail_load)                                                \
            return ctx_fail(ctx, fakes[i].fail_load, "%s cannot load",         \
                            fakes[i].name);                                    \
        ((struct fake_state *)participant_state(ctx, &p))->loaded = true;      \
        return 0;                                                              \
    }                                                                          \
    static unsigned pending_##i(cprkit_ctx *ctx, GString *out)                 \
    {                                                                          \
        if (fakes[i].pending)                                                  \
            g_string_append_printf(out, "%u %s thing(s) left",                 \
                                   fakes[i].pending, fakes[i].name);           \
        return fakes[i].pending;                                               \
    }                                                                          \
    static void committed_##i(cprkit_ctx *ctx)                                 \
    {                                                                          \
        record(i, "committed");                                                \
    }                                                                          \
    static int rollback_prepare_##i(cprkit_ctx *ctx)                           \
    {                                                                          \
        record(i, "rollback_prepare");                                         \
        if (fakes[i].fail_rollback_prepare)                                    \
            return ctx_fail(ctx, fakes[i].fail_rollback_prepare,               \
                            "%s cannot prepare", fakes[i].name);               \
        return 0;                                                              \
    }                                                                          \
    static void rollback_abort_##i(cprkit_ctx *ctx)                            \
    {                                                                          \
        record(i, "rollback_abort");                                           \
    }                                                                          \
    static void stats_##i(cprkit_ctx *ctx, participant_stat_fn add, void *ud)  \
    {                                                                          \
        add(ud, fakes[i].name, (uint64_t)i, NULL);                             \
    }

#define FAKE_PARTICIPANT(i, p, prio)                                           \
    {                                                                          \
        .name = #p, .priority = prio, .state_size = sizeof(struct fake_state), \
        .init = init_##i, .clear = clear_##i, .check_blockers = check_##i,     \
        .suspend = suspend_##i, .resume = resume_##i, .save = save_##i,        \
        .load = load_##i, .pending = pending_##i, .committed = committed_##i,  \
        .rollback_prepare = rollback_prepare_##i,                              \
        .rollback_abort = rollback_abort_##i, .stats = stats_##i,              \
    }

static const struct participant early, late, later;
FAKE_CALLBACKS(0, early)
FAKE_CALLBACKS(1, late)
FAKE_CALLBACKS(2, later)
static const struct participant early = FAKE_PARTICIPANT(0, early, 50);
static const struct participant late = FAKE_PARTICIPANT(1, late, 300);
static const struct participant later = FAKE_PARTICIPANT(2, later, 300);

/* Registered from main(), in the order late, later, early: the table
 * sorts by priority, and late and later (equal) keep their order. */
static void register_fakes(void)
{
    participant_register(&late);
    participant_register(&later);
    participant_register(&early);
}

static cprkit_ctx *new_ctx(void)
{
    cprkit_ctx *ctx;

    for (int i = 0; i < 3; i++) {
        const char *name = fakes[i].name;

        memset(&fakes[i], 0, sizeof(fakes[i]));
        fakes[i].name = name;
    }
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_string_truncate(trace, 0);
    return ctx;
}

static void test_order(void)
{
    cprkit_ctx *ctx;

    g_string_truncate(trace, 0);
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpstr(trace->str, ==, "early:init late:init later:init");

    g_string_truncate(trace, 0);
    g_assert_cmpint(participants_check_blockers(ctx), ==, 0);
    g_assert_cmpint(participants_suspend(ctx), ==, 0);
    g_assert_cmpint(participants_resume(ctx), ==, 0);
    g_assert_cmpstr(trace->str, ==,
                    "early:check late:check later:check "
                    "early:suspend late:suspend later:suspend "
                    "later:resume late:resume early:resume");

    g_string_truncate(trace, 0);
    g_assert_cmpint(participants_rollback_prepare(ctx), ==, 0);
    participants_rollback_abort(ctx);
    participants_committed(ctx);
    g_assert_cmpstr(trace->str, ==,
                    "early:rollback_prepare late:rollback_prepare "
                    "later:rollback_prepare later:rollback_abort "
                    "late:rollback_abort early:rollback_abort "
                    "early:committed late:committed later:committed");

    g_string_truncate(trace, 0);
    cprkit_free(ctx);
    g_assert_cmpstr(trace->str, ==, "later:clear late:clear early:clear");
}

/* Participant k fails to suspend: k-1 .. 0 are resumed, k+1 .. never
 * suspended, and the caller sees k's error. */
static void test_suspend_failure(void)
{
    cprkit_ctx *ctx = new_ctx();

    fakes[1].fail_suspend = -EIO;
    g_assert_cmpint(participants_suspend(ctx), ==, -EIO);
    g_assert_cmpstr(trace->str, ==, "early:suspend late:suspend early:resume");
    g_assert_cmpstr(cprkit_last_error(ctx), ==, "late cannot suspend");
    cprkit_free(ctx);
}

/* Resume is best effort: one failure does not keep the others
 * suspended; the first error is reported with its participant's name. */
static void test_resume_failure(void)
{
    cprkit_ctx *ctx = new_ctx();

    fakes[2].fail_resume = -EIO;
    fakes[0].fail_resume = -ENOMEM;
    g_assert_cmpint(participants_resume(ctx), ==, -EIO);
    g_assert_cmpstr(trace->str, ==, "later:resume late:resume early:resume");
    g_assert_cmpstr(cprkit_last_error(ctx), ==, "later: cannot resume");
    cprkit_free(ctx);
}

static void test_rollback_prepare_failure(void)
{
    cprkit_ctx *ctx = new_ctx();

    fakes[2].fail_rollback_prepare = -EPERM;
    g_assert_cmpint(participants_rollback_prepare(ctx), ==, -EPERM);
    g_assert_cmpstr(trace->str, ==,
                    "early:rollback_prepare late:rollback_prepare "
                    "later:rollback_prepare late:rollback_abort "
                    "early:rollback_abort");
    g_assert_cmpstr(cprkit_last_error(ctx), ==, "later cannot prepare");
    cprkit_free(ctx);
}

/* Each context has its own zeroed private state, made by init. */
static void test_private_state(void)
{
    cprkit_ctx *a = new_ctx(), *b = new_ctx();
    struct fake_state *sa = participant_state(a, &late);
    struct fake_state *sb = participant_state(b, &late);

    g_assert_true(sa != sb);
    g_assert_cmpint(sa->inits, ==, 1);
    g_assert_false(sa->loaded);
    g_assert_true(participant_state(a, &early) != (void *)sa);
    cprkit_free(a);
    cprkit_free(b);
}

/* A blob goes through save and load of every participant, in order; a
 * failed load leaves every participant as cprkit_new() made it. */
static void test_save_load(void)
{
    cprkit_ctx *ctx = new_ctx(), *loaded = new_ctx();
    Cprkit__State *state;

    g_assert_cmpint(state_build(ctx, 1, &state), ==, 0);
    g_assert_cmpstr(trace->str, ==, "early:save late:save later:save");

    g_string_truncate(trace, 0);
    g_assert_cmpint(state_load(loaded, state), ==, 0);
    g_assert_cmpstr(trace->str, ==, "early:load late:load later:load");
    g_assert_true(
        ((struct fake_state *)participant_state(loaded, &later))->loaded);

    g_string_truncate(trace, 0);
    fakes[1].fail_load = -EBADMSG;
    g_assert_cmpint(state_load(loaded, state), ==, -EBADMSG);
    g_assert_cmpstr(trace->str, ==,
                    "early:load late:load "
                    "later:clear late:clear early:clear "
                    "early:init late:init later:init");
    g_assert_false(
        ((struct fake_state *)participant_state(loaded, &early))->loaded);
    g_assert_cmpint(
        ((struct fake_state *)participant_state(loaded, &early))->inits, ==, 2);

    state_build_free(state);
    cprkit_free(ctx);
    cprkit_free(loaded);
}

/* Commit joins every participant's clause after the unclaimed fds. */
static void test_pending_blocks_commit(void)
{
    cprkit_ctx *ctx = new_ctx();

    fakes[0].pending = 1;
    fakes[2].pending = 2;
    ctx->incoming = true;
    g_assert_cmpint(cprkit_commit(ctx), ==, -EBUSY);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "cannot commit: 1 early thing(s) left; "
                    "2 later thing(s) left");

    fakes[0].pending = fakes[2].pending = 0;
    g_string_truncate(trace, 0);
    g_assert_cmpint(cprkit_commit(ctx), ==, 0);
    g_assert_cmpstr(trace->str, ==,
                    "early:committed late:committed later:committed");
    cprkit_free(ctx);
}

static void add_stat(void *userdata, const char *key, uint64_t value,
                     const char *const *names)
{
    g_string_append_printf(userdata, "%s=%" PRIu64 " ", key, value);
}

static void test_stats(void)
{
    cprkit_ctx *ctx = new_ctx();
    g_autoptr(GString) s = g_string_new(NULL);

    participants_stats(ctx, add_stat, s);
    /* early, then VFIO (priority 100), then late and later. */
    g_assert_true(g_str_has_prefix(s->str, "early=0 containers=0 "));
    g_assert_true(g_str_has_suffix(s->str, "late=1 later=2 "));
    g_assert_nonnull(strstr(s->str, " mapped_bytes=0 "));
    cprkit_free(ctx);
}

static void add_named_stat(void *userdata, const char *participant,
                           const char *key, uint64_t value,
                           const char *const *names)
{
    g_string_append_printf(userdata, "%s.%s=%" PRIu64 "%s ", participant, key,
                           value, names ? "[]" : "");
}

/* The public form: each figure with its participant's name, and the VFIO
 * devices with their (here: no) addresses. */
static void test_public_stats(void)
{
    cprkit_ctx *ctx = new_ctx();
    g_autoptr(GString) s = g_string_new(NULL);

    cprkit_participant_stats(ctx, add_named_stat, s);
    g_assert_true(g_str_has_prefix(s->str, "early.early=0 vfio.containers=0 "
                                           "vfio.groups=0 vfio.devices=0[] "));
    g_assert_true(g_str_has_suffix(s->str, "late.late=1 later.later=2 "));
    cprkit_free(ctx);
}

int main(int argc, char **argv)
{
    int r;

    trace = g_string_new(NULL);
    register_fakes();
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/participant/order", test_order);
    g_test_add_func("/participant/suspend-failure", test_suspend_failure);
    g_test_add_func("/participant/resume-failure", test_resume_failure);
    g_test_add_func("/participant/rollback-prepare-failure",
                    test_rollback_prepare_failure);
    g_test_add_func("/participant/private-state", test_private_state);
    g_test_add_func("/participant/public-stats", test_public_stats);
    g_test_add_func("/participant/save-load", test_save_load);
    g_test_add_func("/participant/pending", test_pending_blocks_commit);
    g_test_add_func("/participant/stats", test_stats);
    r = g_test_run();
    g_string_free(trace, true);
    return r;
}
