/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The named fd registry: fds to preserve across exec, keyed by (name, id)
 * as in QEMU's CPR and systemd's fd store. On the incoming side the same
 * registry holds what the previous binary preserved, and "find" claims it.
 */
#include <stdio.h>
#include <string.h>

#include "cprkit-internal.h"

/* An entry loaded from a blob goes with the registry's arena. */
void fd_entry_free(struct fd_entry *e)
{
    if (!e || e->in_arena)
        return;
    free(e->name);
    free(e);
}

/* The index makes loading a blob with tens of thousands of entries
 * linear: a linear lookup per entry was quadratic (seconds at 32k). Keyed,
 * so that crafted names cannot all land in one bucket either (with
 * g_str_hash, 40 000 colliding names took 18.7 s). */
guint fd_entry_hash(gconstpointer entry)
{
    const struct fd_entry *e = entry;

    return keyed_hash(e->name, strlen(e->name), (uint64_t)(uint32_t)e->id);
}

struct fd_entry *fdreg_lookup(cprkit_ctx *ctx, const char *name, int id)
{
    struct fd_entry key = {.name = (char *)name, .id = id};

    return fd_index_lookup(&ctx->fd_index, fd_entry_hash(&key), name, id);
}

/* The entry holding this fd number, or NULL. Linear: used by the
 * participants outside the blackout and to resolve references. */
const struct fd_entry *fdreg_lookup_fd(cprkit_ctx *ctx, int fd)
{
    for (guint i = 0; i < ctx->fds->len; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);

        if (e->fd == fd)
            return e;
    }
    return NULL;
}

/* The registered memfd or regular file with this identity: what memory
 * shared with a device must come from for the new binary to map it again
 * (the backing of a DMA mapping). */
const struct fd_entry *fdreg_lookup_backing(cprkit_ctx *ctx, uint64_t dev,
                                            uint64_t ino)
{
    for (guint i = 0; i < ctx->fds->len; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);

        if ((e->identity.type == CPRKIT_FD_MEMFD ||
             e->identity.type == CPRKIT_FD_REGULAR_FILE) &&
            e->identity.dev == dev && e->identity.ino == ino)
            return e;
    }
    return NULL;
}

void fdreg_clear(cprkit_ctx *ctx)
{
    fd_index_clear(&ctx->fd_index);
    g_ptr_array_set_size(ctx->fds, 0);
    arena_clear(&ctx->fd_arena);
}

int fdreg_adopt(cprkit_ctx *ctx, struct arena *arena, size_t n)
{
    arena_move(&ctx->fd_arena, arena);
    /* Sized once: adding the n entries then moves nothing. GPtrArray
     * takes its room only when created. */
    if (ctx->fds->len == 0 && n <= G_MAXUINT) {
        g_ptr_array_unref(ctx->fds);
        ctx->fds = g_ptr_array_new_full((guint)n,
                                        (GDestroyNotify)fd_entry_free);
    }
    return fd_index_reserve(&ctx->fd_index, n);
}

int fdreg_insert_loaded(cprkit_ctx *ctx, struct fd_entry *e)
{
    int r;

    e->in_arena = true;
    e->hash = fd_entry_hash(e);
    r = fd_index_add(&ctx->fd_index, e);
    if (r < 0)
        return r;
    g_ptr_array_add(ctx->fds, e);
    ctx_state_changed(ctx);
    return 0;
}

/* Adds or replaces (name, id). The caller has validated name and fd. */
int fdreg_add(cprkit_ctx *ctx, const char *name, int id, int fd,
              const struct fd_identity *identity, bool claimed)
{
    struct fd_entry *e = fdreg_lookup(ctx, name, id);

    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        e->name = strdup(name);
        if (!e->name) {
            free(e);
            return -ENOMEM;
        }
        e->id = id;
        e->hash = fd_entry_hash(e);
        if (fd_index_add(&ctx->fd_index, e) < 0) {
            fd_entry_free(e);
            return -ENOMEM;
        }
        g_ptr_array_add(ctx->fds, e);
    }
    e->fd = fd;
    e->identity = *identity;
    e->claimed = claimed;
    ctx_state_changed(ctx);
    return 0;
}

CPRKIT_EXPORT int cprkit_fd_save(cprkit_ctx *ctx, const char *name, int id,
                                 int fd)
{
    struct fd_identity identity;
    int r;

    if (!name_is_valid(name))
        return ctx_fail(ctx, -EINVAL, "invalid fd name (empty, too long or "
                                      "with control characters)");
    if (fd < 0)
        return ctx_fail(ctx, -EBADF, "cannot save fd %d as '%s'/%d: not an fd",
                        fd, name, id);
    r = fd_identify(fd, &identity);
    if (r < 0)
        return ctx_fail(ctx, r, "cannot save fd %d as '%s'/%d: %s", fd, name,
                        id, strerror(-r));
    r = fdreg_add(ctx, name, id, fd, &identity, true);
    if (r < 0)
        return ctx_fail(ctx, r, "cannot save '%s'/%d: out of memory", name, id);
    ctx_log(ctx, LOG_DEBUG, "saved fd %d as '%s'/%d (%s)", fd, name, id,
            cprkit_fd_type_name(identity.type));
    return 0;
}

CPRKIT_EXPORT int cprkit_fd_find(cprkit_ctx *ctx, const char *name, int id,
                                 enum cprkit_fd_type expected_type)
{
    struct fd_entry *e;

    if (!name_is_valid(name))
        return ctx_fail(ctx, -EINVAL, "invalid fd name");
    e = fdreg_lookup(ctx, name, id);
    if (!e)
        return ctx_fail(ctx, -ENOENT, "no preserved fd '%s'/%d", name, id);
    if (expected_type != CPRKIT_FD_ANY && e->identity.type != expected_type)
        return ctx_fail(ctx, -EMEDIUMTYPE,
                        "preserved fd '%s'/%d has type %s, expected %s", name, id,
                        cprkit_fd_type_name(e->identity.type),
                        cprkit_fd_type_name(expected_type));
    e->claimed = true;
    return e->fd;
}

CPRKIT_EXPORT int cprkit_fd_remove(cprkit_ctx *ctx, const char *name, int id)
{
    struct fd_entry *e = name_is_valid(name) ? fdreg_lookup(ctx, name, id)
                                             : NULL;

    if (!e)
        return ctx_fail(ctx, -ENOENT, "no preserved fd '%s'/%d",
                        name ? name : "(null)", id);
    fd_index_remove(&ctx->fd_index, e);
    g_ptr_array_remove(ctx->fds, e);
    ctx_state_changed(ctx);
    return 0;
}

CPRKIT_EXPORT size_t cprkit_fd_count(const cprkit_ctx *ctx)
{
    return ctx->fds->len;
}

CPRKIT_EXPORT void cprkit_fd_foreach(const cprkit_ctx *ctx, cprkit_fd_fn fn,
                                     void *userdata)
{
    for (guint i = 0; i < ctx->fds->len; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);

        fn(userdata, e->name, e->id, e->fd, e->identity.type);
    }
}

/* Before exec: every registered fd must still be open and be what was
 * saved. Catches an application that closed or dup2()ed over a preserved
 * fd, which would otherwise hand the new binary the wrong object. */
int fdreg_check_unchanged(cprkit_ctx *ctx)
{
    for (guint i = 0; i < ctx->fds->len; i++) {
        struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
        struct fd_identity now;
        int r = fd_identify(e->fd, &now);

        if (r < 0)
            return ctx_fail(ctx, -EBADF,
                            "preserved fd '%s'/%d (fd %d) is no longer open",
                            e->name, e->id, e->fd);
        if (!fd_identity_equal(&now, &e->identity)) {
            char was[64], is[64];

            return ctx_fail(ctx, -ESTALE,
                            "preserved fd '%s'/%d (fd %d) changed: it was "
                            "%s, now %s",
                            e->name, e->id, e->fd,
                            fd_identity_describe(&e->identity, was,
                                                 sizeof(was)),
                            fd_identity_describe(&now, is, sizeof(is)));
        }
    }
    return 0;
}

/* Sets or clears FD_CLOEXEC on every registered fd. Setting is
 * best-effort over all fds (it is the recovery path); clearing stops at the
 * first failure and undoes what it did. */
int fdreg_set_cloexec_all(cprkit_ctx *ctx, bool cloexec)
{
    int first_error = 0;

    for (guint i = 0; i < ctx->fds->len; i++) {
        struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
        int r = fd_set_cloexec(e->fd, cloexec);

        if (r < 0 && !cloexec) {
            for (guint j = 0; j < i; j++) {
                struct fd_entry *done = g_ptr_array_index(ctx->fds, j);
                fd_set_cloexec(done->fd, true);
            }
            return ctx_fail(ctx, r, "cannot clear FD_CLOEXEC on '%s'/%d: %s",
                            e->name, e->id, strerror(-r));
        }
        if (r < 0 && first_error == 0)
            first_error = r;
    }
    return first_error;
}
