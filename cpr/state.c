/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Between the context and the protobuf State message. state_build() makes a
 * message that points into the context (nothing is copied, the blob is
 * written inside the blackout); state_load() checks a decoded message and
 * fills the context from it.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cprkit-internal.h"

struct fd_entry_msgs {
    Cprkit__FdEntry entry;
    Cprkit__FdIdentity identity;
};

/* The State plus the arrays its repeated fields point into, so that
 * state_build_free() knows what to free. state must stay first. */
struct built_state {
    Cprkit__State state;
    struct fd_entry_msgs *fd_msgs;
    Cprkit__AppSection *section_msgs;
    Cprkit__Timestamp *ts_msgs;
    GPtrArray *allocs; /* anything else: the participants' records */
};

void *state_alloc(Cprkit__State *state, size_t size)
{
    struct built_state *built = (struct built_state *)state;
    void *p = g_malloc0(size);

    g_ptr_array_add(built->allocs, p);
    return p;
}

void **state_message_array(Cprkit__State *state, size_t n, size_t msg_size)
{
    void **array = state_alloc(state, sizeof(void *) * (n ? n : 1));

    for (size_t i = 0; i < n; i++)
        array[i] = state_alloc(state, msg_size);
    return array;
}

int state_fd_ref(cprkit_ctx *ctx, Cprkit__State *state, int fd,
                 const char *what, Cprkit__FdRef **ret)
{
    const struct fd_entry *e = fdreg_lookup_fd(ctx, fd);
    Cprkit__FdRef *ref;

    if (!e)
        return ctx_fail(ctx, -ENOENT, "%s (fd %d) is not a preserved fd", what,
                        fd);
    ref = state_alloc(state, sizeof(*ref));
    cprkit__fd_ref__init(ref);
    ref->name = e->name;
    ref->has_id = true;
    ref->id = e->id;
    *ret = ref;
    return 0;
}

int state_fd_resolve(cprkit_ctx *ctx, const Cprkit__FdRef *ref,
                     enum cprkit_fd_type type, const char *what, int *ret_fd)
{
    const struct fd_entry *e;

    if (!ref || !name_is_valid(ref->name))
        return ctx_fail(ctx, -EBADMSG, "%s record without a valid fd reference",
                        what);
    e = fdreg_lookup(ctx, ref->name, ref->id);
    if (!e)
        return ctx_fail(ctx, -EBADMSG,
                        "%s record names fd '%s'/%d, which the "
                        "blob does not carry",
                        what, ref->name, ref->id);
    if (type != CPRKIT_FD_ANY && e->identity.type != type)
        return ctx_fail(ctx, -EBADMSG, "%s record names fd '%s'/%d, a %s", what,
                        ref->name, ref->id,
                        cprkit_fd_type_name(e->identity.type));
    *ret_fd = e->fd;
    return 0;
}

static int build(cprkit_ctx *ctx, uint64_t generation, bool with_fds,
                 Cprkit__State **ret)
{
    struct built_state *built = g_new0(struct built_state, 1);
    Cprkit__State *state = &built->state;
    struct fd_entry_msgs *fd_msgs;
    int r;
    Cprkit__AppSection *section_msgs;
    Cprkit__Timestamp *ts_msgs;
    struct timespec now;

    cprkit__state__init(state);
    built->allocs = g_ptr_array_new_with_free_func(g_free);
    state->has_generation = true;
    state->generation = generation;

    state->n_fds = with_fds ? ctx->fds->len : 0;
    state->fds = g_new0(Cprkit__FdEntry *, state->n_fds + 1);
    fd_msgs = built->fd_msgs = g_new0(struct fd_entry_msgs, state->n_fds);
    for (size_t i = 0; i < state->n_fds; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
        Cprkit__FdEntry *m = &fd_msgs[i].entry;
        Cprkit__FdIdentity *id = &fd_msgs[i].identity;

        cprkit__fd_identity__init(id);
        id->has_type = id->has_st_dev = id->has_st_ino = id->has_st_rdev =
            id->has_st_mode_type = true;
        id->type = (Cprkit__FdType)e->identity.type;
        id->st_dev = e->identity.dev;
        id->st_ino = e->identity.ino;
        id->st_rdev = e->identity.rdev;
        id->st_mode_type = e->identity.mode_type;
        id->has_anon_id = e->identity.has_anon_id;
        id->anon_id = e->identity.anon_id;

        cprkit__fd_entry__init(m);
        m->name = e->name;
        m->has_id = m->has_fd = true;
        m->id = e->id;
        m->fd = e->fd;
        m->identity = id;
        state->fds[i] = m;
    }

    state->n_sections = ctx->sections->len;
    state->sections = g_new0(Cprkit__AppSection *, state->n_sections + 1);
    section_msgs = built->section_msgs =
        g_new0(Cprkit__AppSection, state->n_sections);
    for (size_t i = 0; i < state->n_sections; i++) {
        const struct app_section *s = g_ptr_array_index(ctx->sections, i);
        Cprkit__AppSection *m = &section_msgs[i];

        cprkit__app_section__init(m);
        m->name = s->name;
        m->has_data = true;
        m->data.data = s->data;
        m->data.len = s->size;
        state->sections[i] = m;
    }

    state->n_timestamps = ctx->update_timestamps->len;
    state->timestamps = g_new0(Cprkit__Timestamp *, state->n_timestamps + 1);
    ts_msgs = built->ts_msgs = g_new0(Cprkit__Timestamp, state->n_timestamps);
    for (size_t i = 0; i < state->n_timestamps; i++) {
        const struct phase_timestamp *t =
            g_ptr_array_index(ctx->update_timestamps, i);
        Cprkit__Timestamp *m = &ts_msgs[i];

        cprkit__timestamp__init(m);
        m->phase = t->phase;
        m->has_monotonic_ns = true;
        m->monotonic_ns = t->monotonic_ns;
        state->timestamps[i] = m;
    }

    clock_gettime(CLOCK_REALTIME, &now);
    state->has_created_realtime_ns = true;
    state->created_realtime_ns =
        (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    state->has_writer_pid = true;
    state->writer_pid = (uint32_t)getpid();
    state->writer_version = (char *)PROJECT_VERSION;

    /* The participants' own fields (see cprkit-state.proto). */
    r = participants_save(ctx, state);
    if (r < 0) {
        state_build_free(state);
        return r;
    }
    *ret = state;
    return 0;
}

int state_build(cprkit_ctx *ctx, uint64_t generation, Cprkit__State **ret)
{
    return build(ctx, generation, true, ret);
}

/* What an update writes: the fd entries are tens of thousands of messages
 * for a large VMM, fd-wire.c writes them from the registry instead. */
int state_build_without_fds(cprkit_ctx *ctx, uint64_t generation,
                            Cprkit__State **ret)
{
    return build(ctx, generation, false, ret);
}

/* Frees what state_build() allocated; the strings and bytes belong to the
 * context. */
void state_build_free(Cprkit__State *state)
{
    struct built_state *built = (struct built_state *)state;

    if (!built)
        return;
    g_free(built->fd_msgs);
    g_free(built->section_msgs);
    g_free(built->ts_msgs);
    g_ptr_array_unref(built->allocs);
    g_free(state->fds);
    g_free(state->sections);
    g_free(state->timestamps);
    g_free(built);
}

/* Blobs may come from newer writers: an fd type we do not know is
 * "other" here, and still checked by its st_dev/st_ino. */
enum cprkit_fd_type fd_type_from_blob(bool has_identity, bool has_type,
                                      int32_t type)
{
    if (has_identity && has_type && type <= (int32_t)CPRKIT_FD_OTHER)
        return (enum cprkit_fd_type)type;
    return CPRKIT_FD_OTHER;
}

void fd_entry_fill(struct fd_entry *e, const Cprkit__FdEntry *m)
{
    const Cprkit__FdIdentity *id = m->identity;

    e->id = m->id;
    e->fd = m->has_fd ? m->fd : -1;
    e->identity = (struct fd_identity){0};
    if (id) {
        e->identity.dev = id->st_dev;
        e->identity.ino = id->st_ino;
        e->identity.rdev = id->st_rdev;
        e->identity.mode_type = id->st_mode_type;
        e->identity.has_anon_id = id->has_anon_id;
        e->identity.anon_id = id->anon_id;
    }
    e->identity.type = fd_type_from_blob(id != NULL, id && id->has_type,
                                         id ? (int32_t)id->type : 0);
}

static int load_fd_entry(cprkit_ctx *ctx, struct fd_entry *e, size_t index)
{
    int r;

    if (!name_is_valid(e->name))
        return ctx_fail(ctx, -EBADMSG, "fd entry %zu has no valid name", index);
    if (e->fd < 0)
        return ctx_fail(ctx, -EBADMSG, "fd entry '%s' has no fd number",
                        e->name);
    /* cprkit_fd_save() never records these: an entry naming one would
     * hand the application (and CLOEXEC) the process's own stdio. */
    if (e->fd <= STDERR_FILENO)
        return ctx_fail(ctx, -EBADMSG,
                        "fd entry '%s' names fd %d (standard input, output "
                        "or error): refused",
                        e->name, e->fd);
    if (ctx->blob_fd >= 0 && e->fd == ctx->blob_fd)
        return ctx_fail(ctx, -EBADMSG,
                        "fd entry '%s' names fd %d, the state blob itself",
                        e->name, e->fd);
    /* Claimed only once the application finds it again. */
    e->claimed = false;
    r = fdreg_insert_loaded(ctx, e);
    if (r == -EEXIST)
        return ctx_fail(ctx, -EBADMSG, "fd '%s'/%d appears twice in the blob",
                        e->name, e->id);
    if (r < 0)
        return ctx_fail(ctx, r, "loading fd '%s'/%d: out of memory", e->name,
                        e->id);
    return 0;
}

/* The registry, sections, timestamps and participants from a State whose
 * fd entries are fds (n_fds of them, in fd_arena, which the registry
 * takes over). */
static int load(cprkit_ctx *ctx, const Cprkit__State *state,
                struct arena *fd_arena, struct fd_entry *fds, size_t n_fds)
{
    int r;

    fdreg_clear(ctx);
    sections_clear(ctx);
    g_ptr_array_set_size(ctx->timestamps, 0);

    r = fdreg_adopt(ctx, fd_arena, n_fds);
    if (r < 0) {
        r = ctx_fail(ctx, r, "loading %zu fds: out of memory", n_fds);
        goto fail;
    }
    for (size_t i = 0; i < n_fds; i++) {
        r = load_fd_entry(ctx, &fds[i], i);
        if (r < 0)
            goto fail;
    }
    for (size_t i = 0; i < state->n_sections; i++) {
        const Cprkit__AppSection *m = state->sections[i];

        if (!name_is_valid(m->name)) {
            r = ctx_fail(ctx, -EBADMSG, "section %zu has no valid name", i);
            goto fail;
        }
        if (section_lookup(ctx, m->name)) {
            r = ctx_fail(ctx, -EBADMSG, "section '%s' appears twice", m->name);
            goto fail;
        }
        r = cprkit_section_put(ctx, m->name, m->data.data, m->data.len);
        if (r < 0)
            goto fail;
    }
    /* Timestamps are informational: skip malformed ones, and keep the
     * first STATE_MAX_TIMESTAMPS (a writer records a handful of phases;
     * each set is a linear search, so a crafted blob of thousands would
     * make the load quadratic). */
    for (size_t i = 0; i < state->n_timestamps &&
                       ctx->timestamps->len < STATE_MAX_TIMESTAMPS;
         i++) {
        const Cprkit__Timestamp *m = state->timestamps[i];

        if (name_is_valid(m->phase) && m->has_monotonic_ns)
            timestamps_set(ctx->timestamps, m->phase, m->monotonic_ns);
    }
    r = participants_load(ctx, state);
    if (r < 0)
        goto fail;
    ctx->generation = state->generation;
    ctx_clear_error(ctx);
    return 0;

fail:
    participants_reset(ctx);
    fdreg_clear(ctx);
    sections_clear(ctx);
    g_ptr_array_set_size(ctx->timestamps, 0);
    return r;
}

int state_load(cprkit_ctx *ctx, const Cprkit__State *state)
{
    struct arena fd_arena = {0};
    struct fd_entry *fds;

    fds = arena_alloc_array(&fd_arena, state->n_fds, sizeof(*fds));
    if (!fds)
        return ctx_fail(ctx, -ENOMEM, "loading the state: out of memory");
    for (size_t i = 0; i < state->n_fds; i++) {
        const Cprkit__FdEntry *m = state->fds[i];

        fds[i] = (struct fd_entry){0};
        if (m->name) {
            fds[i].name = arena_strndup(&fd_arena, m->name, strlen(m->name));
            if (!fds[i].name) {
                arena_clear(&fd_arena);
                return ctx_fail(ctx, -ENOMEM,
                                "loading the state: out of memory");
            }
        }
        fd_entry_fill(&fds[i], m);
    }
    return load(ctx, state, &fd_arena, fds, state->n_fds);
}

int state_load_decoded(cprkit_ctx *ctx, struct decoded_state *d)
{
    return load(ctx, d->state, &d->fd_arena, d->fds, d->n_fds);
}
