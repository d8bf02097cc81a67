/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state blob as a tree of named values (cprkit_blob_visit()), for
 * tools such as `cpr-exec inspect` and the control endpoint: like CRIU's
 * crit, every field of the payload with its name, plus the frame around
 * it. The schema is known here, next to the decoder; the caller chooses
 * the output format (the control library writes JSON), so this library
 * needs no JSON code, and a tool built separately never reads the
 * library's structures.
 */
#include <stdio.h>

#include "cprkit-internal.h"

struct walk {
    const struct cprkit_blob_visitor *v;
    void *userdata;
};

static void begin_object(struct walk *w, const char *name)
{
    w->v->begin_object(w->userdata, name);
}

static void begin_array(struct walk *w, const char *name)
{
    w->v->begin_array(w->userdata, name);
}

static void end(struct walk *w)
{
    w->v->end(w->userdata);
}

static void add_int(struct walk *w, const char *name, int64_t value)
{
    w->v->integer(w->userdata, name, value);
}

static void add_bool(struct walk *w, const char *name, bool value)
{
    w->v->boolean(w->userdata, name, value);
}

/* Strings the payload may lack are passed as "". */
static void add_str(struct walk *w, const char *name, const char *s)
{
    w->v->string(w->userdata, name, s ? s : "");
}

static void add_null(struct walk *w, const char *name)
{
    w->v->string(w->userdata, name, NULL);
}

static void add_hex(struct walk *w, const char *name, uint64_t value)
{
    char hex[32];

    snprintf(hex, sizeof(hex), "0x%" PRIx64, value);
    w->v->string(w->userdata, name, hex);
}

/* uint64 values above INT64_MAX would turn negative as an int64: such
 * values (identities) are passed as hex strings. */
static void add_u64(struct walk *w, const char *name, uint64_t value)
{
    if (value > (uint64_t)INT64_MAX)
        add_hex(w, name, value);
    else
        add_int(w, name, (int64_t)value);
}

static const char *irq_kind_name(Cprkit__IrqKind kind)
{
    switch (kind) {
    case CPRKIT__IRQ_KIND__IRQ_KIND_INTX:
        return "intx";
    case CPRKIT__IRQ_KIND__IRQ_KIND_MSI:
        return "msi";
    case CPRKIT__IRQ_KIND__IRQ_KIND_MSIX:
        return "msix";
    default:
        return "unspecified";
    }
}

static void add_fd_ref(struct walk *w, const char *name,
                       const Cprkit__FdRef *ref)
{
    if (!ref) {
        add_null(w, name);
        return;
    }
    begin_object(w, name);
    add_str(w, "name", ref->name);
    add_int(w, "id", ref->id);
    end(w);
}

static void walk_fds(struct walk *w, const Cprkit__State *s)
{
    begin_array(w, "fds");
    for (size_t i = 0; i < s->n_fds; i++) {
        const Cprkit__FdEntry *e = s->fds[i];
        const Cprkit__FdIdentity *id = e->identity;

        begin_object(w, NULL);
        add_str(w, "name", e->name);
        add_int(w, "id", e->id);
        add_int(w, "fd", e->fd);
        if (id) {
            add_str(w, "type",
                    id->has_type && (int)id->type <= (int)CPRKIT_FD_OTHER
                        ? cprkit_fd_type_name((enum cprkit_fd_type)id->type)
                        : "other");
            add_u64(w, "st_dev", id->st_dev);
            add_u64(w, "st_ino", id->st_ino);
            add_u64(w, "st_rdev", id->st_rdev);
            add_hex(w, "st_mode_type", id->st_mode_type);
            /* Only eventfds have one (since 0.4). */
            if (id->has_anon_id)
                add_u64(w, "eventfd_id", id->anon_id);
        }
        end(w);
    }
    end(w);
}

static void walk_sections(struct walk *w, const Cprkit__State *s)
{
    begin_array(w, "sections");
    for (size_t i = 0; i < s->n_sections; i++) {
        const Cprkit__AppSection *m = s->sections[i];
        g_autofree char *b64 = g_base64_encode(m->data.data, m->data.len);

        begin_object(w, NULL);
        add_str(w, "name", m->name);
        add_int(w, "size", (int64_t)m->data.len);
        add_str(w, "data_base64", b64);
        end(w);
    }
    end(w);
}

static void walk_timestamps(struct walk *w, const Cprkit__State *s)
{
    begin_object(w, "timestamps");
    for (size_t i = 0; i < s->n_timestamps; i++) {
        const Cprkit__Timestamp *ts = s->timestamps[i];

        /* A timestamp without a phase has no name to go under. */
        if (ts->phase)
            add_u64(w, ts->phase, ts->monotonic_ns);
    }
    end(w);
}

static void walk_vfio(struct walk *w, const Cprkit__State *s)
{
    begin_object(w, "vfio");

    begin_array(w, "containers");
    for (size_t i = 0; i < s->n_vfio_containers; i++) {
        begin_object(w, NULL);
        add_fd_ref(w, "fd", s->vfio_containers[i]->fd);
        add_int(w, "iommu_type", s->vfio_containers[i]->iommu_type);
        end(w);
    }
    end(w);

    begin_array(w, "groups");
    for (size_t i = 0; i < s->n_vfio_groups; i++) {
        const Cprkit__VfioGroup *g = s->vfio_groups[i];

        begin_object(w, NULL);
        add_fd_ref(w, "fd", g->fd);
        add_int(w, "group_number", g->group_number);
        add_fd_ref(w, "container", g->container);
        end(w);
    }
    end(w);

    begin_array(w, "devices");
    for (size_t i = 0; i < s->n_vfio_devices; i++) {
        const Cprkit__VfioDevice *d = s->vfio_devices[i];

        begin_object(w, NULL);
        add_fd_ref(w, "fd", d->fd);
        add_str(w, "bdf", d->bdf);
        if (d->has_cdev && d->cdev)
            add_bool(w, "cdev", true); /* bound to an iommufd, no group */
        else
            add_int(w, "group_number", d->group_number);
        end(w);
    }
    end(w);

    begin_array(w, "dma_mappings");
    for (size_t i = 0; i < s->n_dma_mappings; i++) {
        const Cprkit__DmaMapping *m = s->dma_mappings[i];

        begin_object(w, NULL);
        add_fd_ref(w, "container", m->container);
        add_hex(w, "iova", m->iova);
        add_hex(w, "size", m->size);
        add_int(w, "prot", m->prot);
        add_fd_ref(w, "backing", m->backing);
        add_hex(w, "backing_offset", m->backing_offset);
        add_bool(w, "vaddr_suspended", m->vaddr_suspended);
        end(w);
    }
    end(w);

    begin_array(w, "irqs");
    for (size_t i = 0; i < s->n_irqs; i++) {
        const Cprkit__IrqIndex *q = s->irqs[i];

        begin_object(w, NULL);
        add_fd_ref(w, "device", q->device);
        add_str(w, "kind", irq_kind_name(q->kind));
        add_int(w, "count", q->count);
        begin_array(w, "vectors");
        for (size_t n = 0; n < q->n_vectors; n++) {
            begin_object(w, NULL);
            add_int(w, "vector", q->vectors[n]->vector);
            add_fd_ref(w, "trigger", q->vectors[n]->trigger);
            end(w);
        }
        end(w);
        if (q->intx_unmask)
            add_fd_ref(w, "intx_unmask", q->intx_unmask);
        add_bool(w, "masked", q->masked);
        end(w);
    }
    end(w);

    begin_array(w, "ram_blocks");
    for (size_t i = 0; i < s->n_ram_blocks; i++) {
        const Cprkit__RamBlock *r = s->ram_blocks[i];

        begin_object(w, NULL);
        add_str(w, "name", r->name);
        add_fd_ref(w, "fd", r->fd);
        add_hex(w, "size", r->size);
        end(w);
    }
    end(w);

    end(w);
}

/* The iommufd participant's records (tags 32..35), only when there are
 * any: a type1 program's inspect output stays as it was. */
static void walk_iommufd(struct walk *w, const Cprkit__State *s)
{
    if (!s->n_iommufds && !s->n_iommufd_ioases && !s->n_iommufd_devices &&
        !s->n_iommufd_mappings)
        return;
    begin_object(w, "iommufd");

    begin_array(w, "iommufds");
    for (size_t i = 0; i < s->n_iommufds; i++) {
        begin_object(w, NULL);
        add_fd_ref(w, "fd", s->iommufds[i]->fd);
        end(w);
    }
    end(w);

    begin_array(w, "ioases");
    for (size_t i = 0; i < s->n_iommufd_ioases; i++) {
        const Cprkit__IommufdIoas *a = s->iommufd_ioases[i];

        begin_object(w, NULL);
        add_fd_ref(w, "iommufd", a->iommufd);
        add_int(w, "id", a->id);
        add_int(w, "ioas_id", a->ioas_id);
        end(w);
    }
    end(w);

    begin_array(w, "devices");
    for (size_t i = 0; i < s->n_iommufd_devices; i++) {
        const Cprkit__IommufdDevice *d = s->iommufd_devices[i];

        begin_object(w, NULL);
        add_fd_ref(w, "device", d->device);
        add_fd_ref(w, "iommufd", d->iommufd);
        add_int(w, "devid", d->devid);
        add_int(w, "pt_id", d->pt_id);
        add_int(w, "ioas_id", d->ioas_id);
        end(w);
    }
    end(w);

    begin_array(w, "mappings");
    for (size_t i = 0; i < s->n_iommufd_mappings; i++) {
        const Cprkit__IommufdMapping *m = s->iommufd_mappings[i];

        begin_object(w, NULL);
        add_fd_ref(w, "iommufd", m->iommufd);
        add_int(w, "ioas_id", m->ioas_id);
        add_hex(w, "iova", m->iova);
        add_hex(w, "length", m->length);
        add_int(w, "prot", m->prot);
        add_u64(w, "file_dev", m->file_dev);
        add_u64(w, "file_ino", m->file_ino);
        add_hex(w, "file_offset", m->file_offset);
        end(w);
    }
    end(w);

    end(w);
}

static void walk_state(struct walk *w, const Cprkit__State *s)
{
    begin_object(w, "state");
    add_u64(w, "generation", s->generation);
    add_u64(w, "created_realtime_ns", s->created_realtime_ns);
    add_int(w, "writer_pid", s->writer_pid);
    add_str(w, "writer_version", s->writer_version);
    walk_fds(w, s);
    walk_sections(w, s);
    walk_timestamps(w, s);
    walk_vfio(w, s);
    walk_iommufd(w, s);
    /* Fields a newer writer added that this build does not know. */
    add_int(w, "unknown_fields", (int64_t)s->base.n_unknown_fields);
    end(w);
}

CPRKIT_EXPORT int cprkit_blob_visit(cprkit_ctx *ctx, const void *buf,
                                    size_t size,
                                    const struct cprkit_blob_visitor *v,
                                    void *userdata)
{
    struct walk w = {v, userdata};
    struct command_line rescue = {0};
    struct blob_frame frame;
    Cprkit__State *state = NULL;
    int r;

    if (!v || v->size < sizeof(*v))
        return ctx_fail(ctx, -EINVAL,
                        "cprkit_blob_visit: visitor size not set");
    r = blob_parse_frame(ctx, buf, size, &frame);
    if (r < 0)
        return r;
    begin_object(&w, "frame");
    add_int(&w, "format_major", frame.major);
    add_int(&w, "format_minor", frame.minor);
    add_int(&w, "size", (int64_t)size);
    add_int(&w, "rescue_size", (int64_t)frame.rescue_size);
    add_int(&w, "payload_size", (int64_t)frame.payload_size);
    end(&w);

    r = blob_parse_rescue(ctx, &frame, &rescue);
    if (r < 0) {
        begin_object(&w, "rollback");
        add_str(&w, "error", cprkit_last_error(ctx));
        end(&w);
    } else if (!rescue.path) {
        add_null(&w, "rollback");
    } else {
        begin_object(&w, "rollback");
        add_str(&w, "path", rescue.path);
        begin_array(&w, "argv");
        for (char **a = rescue.argv; a && *a; a++)
            add_str(&w, NULL, *a);
        end(&w);
        end(&w);
    }
    command_line_clear(&rescue);

    r = blob_unpack_payload(ctx, &frame, &state);
    if (r < 0) {
        add_str(&w, "payload_error", cprkit_last_error(ctx));
    } else {
        walk_state(&w, state);
        cprkit__state__free_unpacked(state, NULL);
    }
    return 0;
}

CPRKIT_EXPORT int cprkit_state_encode(cprkit_ctx *ctx, uint8_t **ret_buf,
                                      size_t *ret_size)
{
    struct command_line self = {0};
    Cprkit__State *state = NULL;
    GPtrArray *next_update = ctx->update_timestamps;
    int r;

    /* The next update's timestamps exist only while it runs (cprkit_exec()
     * records them); between updates, show the last update's, what
     * cprkit_timestamp() returns, rather than none. */
    if (next_update->len == 0)
        ctx->update_timestamps = ctx->timestamps;
    r = state_build_without_fds(ctx, ctx->generation + 1, &state);
    ctx->update_timestamps = next_update;
    if (r < 0)
        return r;
    /* The rescue block as an update would write it; if this binary cannot
     * be a rollback target (deleted on disk), the blob has none. */
    if (command_line_of_self(ctx, &self) < 0)
        ctx_clear_error(ctx);
    r = blob_encode_with_registry(ctx, state, &self, ret_buf, ret_size);
    command_line_clear(&self);
    state_build_free(state);
    return r;
}
