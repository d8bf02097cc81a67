/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The incoming side in-process: a blob is put in CPRKIT_STATE_FD as the
 * exec path would, then loaded. Covers validation of every fd, CLOEXEC
 * restore, commit, and the refusals. The real exec is in test-exec.
 */
#include <sys/stat.h>

#include "cprkit-internal.h"
#include "test-util.h"

struct outgoing {
    cprkit_ctx *ctx;
    int mem, ev, pipe_r, pipe_w;
};

static void outgoing_init(struct outgoing *o)
{
    int p[2];

    g_assert_cmpint(cprkit_new(&o->ctx), ==, 0);
    o->mem = make_memfd_with("ram", "ram contents");
    o->ev = eventfd(4, EFD_CLOEXEC);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    o->pipe_r = p[0];
    o->pipe_w = p[1];
    g_assert_cmpint(cprkit_fd_save(o->ctx, "ram", 0, o->mem), ==, 0);
    g_assert_cmpint(cprkit_fd_save(o->ctx, "irq", 0, o->ev), ==, 0);
    g_assert_cmpint(cprkit_fd_save(o->ctx, "pipe", 0, o->pipe_r), ==, 0);
    g_assert_cmpint(cprkit_fd_save(o->ctx, "pipe", 1, o->pipe_w), ==, 0);
    g_assert_cmpint(cprkit_section_put(o->ctx, "app", "v1 state", 8), ==, 0);
}

static void outgoing_clear(struct outgoing *o)
{
    close(o->mem);
    close(o->ev);
    close(o->pipe_r);
    close(o->pipe_w);
    cprkit_free(o->ctx);
}

/* Optionally mangles the encoded blob, seals it (or not) and sets the
 * environment as cprkit_exec would. Returns the blob fd. */
static int hand_over(struct outgoing *o, void (*mangle)(uint8_t *, size_t),
                     bool seal)
{
    char *argv[] = {"old", "--arg", NULL};
    struct command_line rescue = {"/opt/old-binary", argv};
    Cprkit__State *state;
    g_autofree uint8_t *buf = NULL;
    char value[16];
    size_t size;
    int fd;

    g_assert_cmpint(state_build(o->ctx, 1, &state), ==, 0);
    g_assert_cmpint(blob_encode(o->ctx, state, &rescue, &buf, &size), ==, 0);
    state_build_free(state);
    if (mangle)
        mangle(buf, size);
    if (seal) {
        g_assert_cmpint(blob_write_sealed_memfd(o->ctx, buf, size, &fd), ==, 0);
    } else {
        fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        g_assert_cmpint(write(fd, buf, size), ==, (ssize_t)size);
    }
    /* As after exec: preserved fds and the blob without FD_CLOEXEC. */
    g_assert_cmpint(fdreg_set_cloexec_all(o->ctx, false), ==, 0);
    g_assert_cmpint(fd_set_cloexec(fd, false), ==, 0);
    snprintf(value, sizeof(value), "%d", fd);
    g_setenv(CPRKIT_STATE_FD_ENV, value, true);
    return fd;
}

static cprkit_ctx *new_ctx(void)
{
    cprkit_ctx *ctx;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    return ctx;
}

/* The names of the sections a state would carry to the next binary. */
static char *state_section_names(cprkit_ctx *ctx)
{
    GString *names = g_string_new("");
    Cprkit__State *state;

    g_assert_cmpint(state_build(ctx, cprkit_generation(ctx) + 1, &state), ==,
                    0);
    for (size_t i = 0; i < state->n_sections; i++)
        g_string_append_printf(names, "%s%s", i ? "," : "",
                               state->sections[i]->name);
    state_build_free(state);
    return g_string_free(names, false);
}

/* A section loaded from the previous binary is carried on to the next one
 * without being put again, until cprkit_section_remove() drops it. */
static void test_sections_persist_until_removed(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    g_autofree char *before = NULL, *after = NULL;
    const void *data;
    size_t size;

    outgoing_init(&o);
    g_assert_cmpint(cprkit_section_put(o.ctx, "old-model", "v0", 2), ==, 0);
    hand_over(&o, NULL, true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, 1);
    g_assert_cmpint(cprkit_fd_find(ctx, "ram", 0, CPRKIT_FD_ANY), ==, o.mem);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_ANY), ==, o.ev);
    g_assert_cmpint(cprkit_fd_find(ctx, "pipe", 0, CPRKIT_FD_ANY), ==,
                    o.pipe_r);
    g_assert_cmpint(cprkit_fd_find(ctx, "pipe", 1, CPRKIT_FD_ANY), ==,
                    o.pipe_w);
    g_assert_cmpint(cprkit_commit(ctx), ==, 0);

    before = state_section_names(ctx);
    g_assert_cmpstr(before, ==, "app,old-model");

    g_assert_cmpint(cprkit_section_remove(ctx, "old-model"), ==, 0);
    g_assert_cmpint(cprkit_section_get(ctx, "old-model", &data, &size), ==,
                    -ENOENT);
    after = state_section_names(ctx);
    g_assert_cmpstr(after, ==, "app");
    g_assert_cmpint(cprkit_section_get(ctx, "app", &data, &size), ==, 0);
    g_assert_cmpmem(data, size, "v1 state", 8);

    g_assert_cmpint(cprkit_section_remove(ctx, "old-model"), ==, -ENOENT);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "no application section 'old-model'");
    g_assert_cmpint(cprkit_section_remove(ctx, NULL), ==, -ENOENT);
    g_assert_cmpint(cprkit_section_remove(ctx, ""), ==, -ENOENT);
    /* Put again after a remove: a new section, last in order. */
    g_assert_cmpint(cprkit_section_put(ctx, "old-model", "v2", 2), ==, 0);
    g_free(after);
    after = state_section_names(ctx);
    g_assert_cmpstr(after, ==, "app,old-model");

    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_no_state(void)
{
    cprkit_ctx *ctx = new_ctx();

    g_unsetenv(CPRKIT_STATE_FD_ENV);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, 0);
    g_assert_false(cprkit_is_incoming(ctx));
    g_assert_cmpuint(cprkit_generation(ctx), ==, 0);
    g_assert_cmpint(cprkit_commit(ctx), ==, -EINVAL);
    g_assert_cmpint(cprkit_rollback(ctx, "x"), ==, -EINVAL);
    cprkit_free(ctx);
}

static void test_load_validate_commit(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    const void *data;
    size_t size;
    int blob_fd;

    outgoing_init(&o);
    blob_fd = hand_over(&o, NULL, true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, 1);
    g_assert_true(cprkit_is_incoming(ctx));
    g_assert_false(cprkit_is_rollback(ctx));
    g_assert_cmpuint(cprkit_generation(ctx), ==, 1);
    /* The variable is gone: children and later contexts do not see it. */
    g_assert_null(getenv(CPRKIT_STATE_FD_ENV));
    /* Everything is close-on-exec again. */
    g_assert_true(fd_has_cloexec(blob_fd));
    g_assert_true(fd_has_cloexec(o.mem));
    g_assert_true(fd_has_cloexec(o.ev));
    g_assert_true(fd_has_cloexec(o.pipe_r));
    g_assert_true(fd_has_cloexec(o.pipe_w));
    g_assert_cmpuint(cprkit_timestamp(ctx, "nope"), ==, 0);

    g_assert_cmpint(cprkit_section_get(ctx, "app", &data, &size), ==, 0);
    g_assert_cmpmem(data, size, "v1 state", 8);
    g_assert_cmpint(cprkit_fd_find(ctx, "ram", 0, CPRKIT_FD_MEMFD), ==, o.mem);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_EVENTFD), ==, o.ev);

    /* Commit with unclaimed fds fails and names them. */
    g_assert_cmpint(cprkit_commit(ctx), ==, -EBUSY);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "cannot commit: 2 preserved fds were not claimed: "
                    "'pipe'/0 (pipe), 'pipe'/1 (pipe)");
    g_assert_true(cprkit_is_incoming(ctx));
    /* Not before the incoming update is committed. */
    {
        char *argv[] = {"true", NULL};
        g_assert_cmpint(cprkit_exec(ctx, "/bin/true", argv, NULL), ==, -EBUSY);
    }

    g_assert_cmpint(cprkit_fd_find(ctx, "pipe", 0, CPRKIT_FD_PIPE), ==, o.pipe_r);
    /* Dropping a preserved fd is the other way to account for it. */
    g_assert_cmpint(cprkit_fd_remove(ctx, "pipe", 1), ==, 0);
    g_assert_cmpint(cprkit_commit(ctx), ==, 0);
    g_assert_false(cprkit_is_incoming(ctx));
    g_assert_false(fd_is_open(blob_fd));
    /* Claimed fds stay registered for the next update. */
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 3);
    g_assert_cmpint(cprkit_commit(ctx), ==, -EINVAL);
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_rollback_marker(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();

    outgoing_init(&o);
    hand_over(&o, NULL, true);
    g_setenv(CPRKIT_ROLLBACK_REASON_ENV, "health check failed", true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, 1);
    g_assert_null(getenv(CPRKIT_ROLLBACK_REASON_ENV));
    g_assert_true(cprkit_is_rollback(ctx));
    g_assert_cmpstr(cprkit_rollback_reason(ctx), ==, "health check failed");
    /* The blob was written for generation 1; we are its writer, gen 0. */
    g_assert_cmpuint(cprkit_generation(ctx), ==, 0);
    /* Rolling back a rollback would loop between the two binaries. */
    g_assert_cmpint(cprkit_rollback(ctx, "again"), ==, -ELOOP);
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_fd_missing(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    g_autofree char *expected = NULL;
    int blob_fd;

    outgoing_init(&o);
    blob_fd = hand_over(&o, NULL, true);
    close(o.ev);
    expected = g_strdup_printf("preserved fd 'irq'/0 (fd %d, eventfd) is "
                               "missing after exec",
                               o.ev);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADF);
    g_assert_cmpstr(cprkit_last_error(ctx), ==, expected);
    g_assert_false(cprkit_is_incoming(ctx));
    /* The rescue block was read: rollback is possible. */
    g_assert_true(ctx->have_rescue);
    g_assert_cmpstr(ctx->rescue.path, ==, "/opt/old-binary");
    /* Fds that are there are close-on-exec again. */
    g_assert_true(fd_has_cloexec(o.mem));
    g_assert_true(fd_has_cloexec(blob_fd));
    o.ev = eventfd(0, EFD_CLOEXEC); /* for outgoing_clear */
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_fd_wrong_type(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();

    outgoing_init(&o);
    hand_over(&o, NULL, true);
    g_assert_cmpint(dup2(o.pipe_r, o.ev), ==, o.ev);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx),
                            "should be eventfd but is pipe"));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_fd_same_type_other_object(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    int other;

    outgoing_init(&o);
    hand_over(&o, NULL, true);
    other = make_memfd_with("other", "x");
    g_assert_cmpint(dup2(other, o.mem), ==, o.mem);
    close(other);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "another memfd"));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

/* Every eventfd shares one anonymous inode: a fresh eventfd at the
 * preserved number, or two preserved eventfds swapped, must be told apart
 * (the interrupts of the blackout would sit in an eventfd nobody reads). */
static void test_eventfd_replaced(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    int fresh;

    outgoing_init(&o);
    hand_over(&o, NULL, true);
    fresh = eventfd(4, EFD_CLOEXEC);
    g_assert_cmpint(dup2(fresh, o.ev), ==, o.ev);
    close(fresh);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "another eventfd"));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "eventfd-id"));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_eventfds_swapped(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    int ev2 = eventfd(0, EFD_CLOEXEC), tmp;

    outgoing_init(&o);
    g_assert_cmpint(cprkit_fd_save(o.ctx, "irq", 1, ev2), ==, 0);
    hand_over(&o, NULL, true);
    tmp = dup(o.ev);
    g_assert_cmpint(dup2(ev2, o.ev), ==, o.ev);
    g_assert_cmpint(dup2(tmp, ev2), ==, ev2);
    close(tmp);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "another eventfd"));
    cprkit_free(ctx);
    close(ev2);
    outgoing_clear(&o);
}

static void flip_last_byte(uint8_t *buf, size_t size)
{
    buf[size - 1] ^= 0x20;
}

static void bump_major(uint8_t *buf, size_t size)
{
    buf[8] = CPRKIT_FORMAT_MAJOR + 7;
    uint32_t crc = crc32c(0, buf, 44);
    for (int i = 0; i < 4; i++)
        buf[44 + i] = (uint8_t)(crc >> (8 * i));
}

static void test_corrupt_payload(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();

    outgoing_init(&o);
    hand_over(&o, flip_last_byte, true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "checksum mismatch"));
    g_assert_true(ctx->have_rescue);
    g_assert_false(cprkit_is_incoming(ctx));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_future_major(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();

    outgoing_init(&o);
    hand_over(&o, bump_major, true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EPROTONOSUPPORT);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "major version 8"));
    g_assert_true(ctx->have_rescue);
    g_assert_cmpstr(ctx->rescue.argv[1], ==, "--arg");
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_unsealed_refused(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();

    outgoing_init(&o);
    hand_over(&o, NULL, false);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EPERM);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "not sealed"));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

static void test_bad_env(void)
{
    cprkit_ctx *ctx = new_ctx();

    g_setenv(CPRKIT_STATE_FD_ENV, "12abc", true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EINVAL);
    g_assert_null(getenv(CPRKIT_STATE_FD_ENV));
    g_setenv(CPRKIT_STATE_FD_ENV, "-3", true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EINVAL);
    g_setenv(CPRKIT_STATE_FD_ENV, "99999999999", true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EINVAL);
    g_setenv(CPRKIT_STATE_FD_ENV, "1000", true);
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADF);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "CPRKIT_STATE_FD=1000 names no open fd");
    cprkit_free(ctx);

    /* stdin, stdout, stderr: refused, and left alone. */
    for (int fd = 0; fd <= 2; fd++) {
        char value[4];
        int flags = fcntl(fd, F_GETFD);

        ctx = new_ctx();
        snprintf(value, sizeof(value), "%d", fd);
        g_setenv(CPRKIT_STATE_FD_ENV, value, true);
        g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADF);
        g_assert_nonnull(strstr(cprkit_last_error(ctx), "not a state blob"));
        g_assert_false(cprkit_is_incoming(ctx));
        g_assert_cmpint(fcntl(fd, F_GETFD), ==, flags);
        cprkit_free(ctx);
        g_assert_cmpint(fcntl(fd, F_GETFD), >=, 0); /* still open */
    }

    /* An open fd that is not a blob: refused before anything is done to
     * it — no FD_CLOEXEC, not closed by cprkit_free(). */
    {
        int p[2];

        g_assert_cmpint(pipe(p), ==, 0);
        ctx = new_ctx();
        char value[16];
        snprintf(value, sizeof(value), "%d", p[0]);
        g_setenv(CPRKIT_STATE_FD_ENV, value, true);
        g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EPERM);
        g_assert_nonnull(strstr(cprkit_last_error(ctx), "not a sealable memfd"));
        g_assert_cmpint(fcntl(p[0], F_GETFD) & FD_CLOEXEC, ==, 0);
        cprkit_free(ctx);
        g_assert_cmpint(fcntl(p[0], F_GETFD), >=, 0);
        close(p[0]);
        close(p[1]);
    }
}

/* Entries no writer makes: stdio, the blob itself. Refused; and the fds
 * the blob listed are close-on-exec again although the load failed. */
static void test_entry_names_stdio_or_blob(void)
{
    const struct fd_identity any = {CPRKIT_FD_CHAR_DEVICE, 1, 2, 3, S_IFCHR};
    int out_flags = fcntl(STDOUT_FILENO, F_GETFD);
    struct outgoing o;
    cprkit_ctx *ctx;
    int blob;

    outgoing_init(&o);
    g_assert_cmpint(fdreg_add(o.ctx, "stdout", 0, STDOUT_FILENO, &any, true),
                    ==, 0);
    hand_over(&o, NULL, true);
    /* hand_over cleared FD_CLOEXEC of every listed fd, stdout too. */
    out_flags = fcntl(STDOUT_FILENO, F_GETFD);
    ctx = new_ctx();
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx),
                            "fd entry 'stdout' names fd 1 (standard input, "
                            "output or error): refused"));
    g_assert_cmpint(fcntl(STDOUT_FILENO, F_GETFD), ==, out_flags);
    g_assert_cmpint(fcntl(o.mem, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    g_assert_cmpint(fcntl(o.ev, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    cprkit_free(ctx);
    outgoing_clear(&o);

    /* An entry naming the number the blob arrives at. */
    outgoing_init(&o);
    blob = hand_over(&o, NULL, true);
    {
        /* Re-encode with an entry at the blob's own number, and put the
         * new blob at that number. */
        int want = blob;
        char value[16];

        g_assert_cmpint(fdreg_add(o.ctx, "sneaky", 0, want, &any, true), ==,
                        0);
        close(want);
        blob = hand_over(&o, NULL, true);
        if (blob != want) {
            g_assert_cmpint(dup2(blob, want), ==, want);
            close(blob);
            snprintf(value, sizeof(value), "%d", want);
            g_setenv(CPRKIT_STATE_FD_ENV, value, true);
        }
    }
    ctx = new_ctx();
    g_assert_cmpint(cprkit_load_incoming(ctx), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx),
                            "fd entry 'sneaky' names fd"));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "the state blob itself"));
    cprkit_free(ctx);
    outgoing_clear(&o);
}

/* A blob of more than 64 KiB is mapped, not read, and its payload is
 * rearranged in the private mapping: the load sees everything, the memfd
 * is unchanged. */
static void test_large_blob_mapped(void)
{
    struct outgoing o;
    cprkit_ctx *ctx = new_ctx();
    g_autofree uint8_t *big = g_malloc(200000);
    g_autofree uint8_t *before = NULL, *after = NULL;
    size_t before_size, after_size;
    const void *data;
    size_t size;
    int blob_fd;

    for (size_t i = 0; i < 200000; i++)
        big[i] = (uint8_t)(i * 31);
    outgoing_init(&o);
    g_assert_cmpint(cprkit_section_put(o.ctx, "device-model", big, 200000), ==,
                    0);
    blob_fd = hand_over(&o, NULL, true);
    g_assert_cmpint(blob_read_fd(o.ctx, blob_fd, &before, &before_size), ==, 0);
    g_assert_cmpuint(before_size, >, 64 << 10);

    g_assert_cmpint(cprkit_load_incoming(ctx), ==, 1);
    g_assert_cmpint(cprkit_section_get(ctx, "device-model", &data, &size), ==,
                    0);
    g_assert_cmpmem(data, size, big, 200000);
    g_assert_cmpint(cprkit_section_get(ctx, "app", &data, &size), ==, 0);
    g_assert_cmpmem(data, size, "v1 state", 8);
    g_assert_cmpint(cprkit_fd_find(ctx, "ram", 0, CPRKIT_FD_MEMFD), ==, o.mem);
    g_assert_cmpint(cprkit_fd_find(ctx, "pipe", 1, CPRKIT_FD_PIPE), ==,
                    o.pipe_w);
    g_assert_cmpuint(cprkit_generation(ctx), ==, 1);
    g_assert_true(fd_has_cloexec(o.ev));
    g_assert_cmpint(blob_read_fd(o.ctx, blob_fd, &after, &after_size), ==, 0);
    g_assert_cmpmem(after, after_size, before, before_size);
    cprkit_free(ctx);
    outgoing_clear(&o);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/incoming/no-state", test_no_state);
    g_test_add_func("/incoming/sections-persist-until-removed",
                    test_sections_persist_until_removed);
    g_test_add_func("/incoming/load-validate-commit", test_load_validate_commit);
    g_test_add_func("/incoming/rollback-marker", test_rollback_marker);
    g_test_add_func("/incoming/fd-missing", test_fd_missing);
    g_test_add_func("/incoming/fd-wrong-type", test_fd_wrong_type);
    g_test_add_func("/incoming/fd-other-object", test_fd_same_type_other_object);
    g_test_add_func("/incoming/eventfd-replaced", test_eventfd_replaced);
    g_test_add_func("/incoming/eventfds-swapped", test_eventfds_swapped);
    g_test_add_func("/incoming/corrupt-payload", test_corrupt_payload);
    g_test_add_func("/incoming/future-major", test_future_major);
    g_test_add_func("/incoming/unsealed-refused", test_unsealed_refused);
    g_test_add_func("/incoming/bad-env", test_bad_env);
    g_test_add_func("/incoming/entry-stdio-or-blob",
                    test_entry_names_stdio_or_blob);
    g_test_add_func("/incoming/large-blob-mapped", test_large_blob_mapped);
    return g_test_run();
}
