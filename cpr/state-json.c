/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state blob as JSON, for `cpr-exec inspect` and the control
 * endpoint's "inspect" request: like CRIU's crit, every field of the
 * payload with names instead of numbers, plus the frame around it.
 */
#include <stdio.h>
#include <string.h>

#include "control-internal.h"

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

static void add_fd_ref(JsonBuilder *b, const char *member,
                       const Cprkit__FdRef *ref)
{
    json_builder_set_member_name(b, member);
    if (!ref) {
        json_builder_add_null_value(b);
        return;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, ref->name ? ref->name : "");
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, ref->id);
    json_builder_end_object(b);
}

static void add_int(JsonBuilder *b, const char *member, gint64 v)
{
    json_builder_set_member_name(b, member);
    json_builder_add_int_value(b, v);
}

/* uint64 values above INT64_MAX would turn negative in a JSON int: such
 * values (identities, addresses) are written as hex strings when large. */
static void add_u64(JsonBuilder *b, const char *member, uint64_t v)
{
    json_builder_set_member_name(b, member);
    if (v > (uint64_t)G_MAXINT64) {
        char hex[32];

        snprintf(hex, sizeof(hex), "0x%" PRIx64, v);
        json_builder_add_string_value(b, hex);
    } else {
        json_builder_add_int_value(b, (gint64)v);
    }
}

static void add_hex(JsonBuilder *b, const char *member, uint64_t v)
{
    char hex[32];

    snprintf(hex, sizeof(hex), "0x%" PRIx64, v);
    json_builder_set_member_name(b, member);
    json_builder_add_string_value(b, hex);
}

static void add_str(JsonBuilder *b, const char *member, const char *s)
{
    json_builder_set_member_name(b, member);
    json_builder_add_string_value(b, s ? s : "");
}

static void add_fds(JsonBuilder *b, const Cprkit__State *s)
{
    json_builder_set_member_name(b, "fds");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_fds; i++) {
        const Cprkit__FdEntry *e = s->fds[i];
        const Cprkit__FdIdentity *id = e->identity;

        json_builder_begin_object(b);
        add_str(b, "name", e->name);
        add_int(b, "id", e->id);
        add_int(b, "fd", e->fd);
        if (id) {
            add_str(b, "type",
                    id->has_type && (int)id->type <= (int)CPRKIT_FD_OTHER
                        ? cprkit_fd_type_name((enum cprkit_fd_type)id->type)
                        : "other");
            add_u64(b, "st_dev", id->st_dev);
            add_u64(b, "st_ino", id->st_ino);
            add_u64(b, "st_rdev", id->st_rdev);
            add_hex(b, "st_mode_type", id->st_mode_type);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void add_sections(JsonBuilder *b, const Cprkit__State *s)
{
    json_builder_set_member_name(b, "sections");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_sections; i++) {
        const Cprkit__AppSection *m = s->sections[i];
        g_autofree char *b64 = g_base64_encode(m->data.data, m->data.len);

        json_builder_begin_object(b);
        add_str(b, "name", m->name);
        add_int(b, "size", (gint64)m->data.len);
        add_str(b, "data_base64", b64);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void add_timestamps(JsonBuilder *b, const Cprkit__State *s)
{
    json_builder_set_member_name(b, "timestamps");
    json_builder_begin_object(b);
    for (size_t i = 0; i < s->n_timestamps; i++) {
        const Cprkit__Timestamp *t = s->timestamps[i];

        if (t->phase)
            add_u64(b, t->phase, t->monotonic_ns);
    }
    json_builder_end_object(b);
}

static void add_vfio(JsonBuilder *b, const Cprkit__State *s)
{
    json_builder_set_member_name(b, "vfio");
    json_builder_begin_object(b);

    json_builder_set_member_name(b, "containers");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_vfio_containers; i++) {
        json_builder_begin_object(b);
        add_fd_ref(b, "fd", s->vfio_containers[i]->fd);
        add_int(b, "iommu_type", s->vfio_containers[i]->iommu_type);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "groups");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_vfio_groups; i++) {
        const Cprkit__VfioGroup *g = s->vfio_groups[i];

        json_builder_begin_object(b);
        add_fd_ref(b, "fd", g->fd);
        add_int(b, "group_number", g->group_number);
        add_fd_ref(b, "container", g->container);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_vfio_devices; i++) {
        const Cprkit__VfioDevice *d = s->vfio_devices[i];

        json_builder_begin_object(b);
        add_fd_ref(b, "fd", d->fd);
        add_str(b, "bdf", d->bdf);
        add_int(b, "group_number", d->group_number);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "dma_mappings");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_dma_mappings; i++) {
        const Cprkit__DmaMapping *m = s->dma_mappings[i];

        json_builder_begin_object(b);
        add_fd_ref(b, "container", m->container);
        add_hex(b, "iova", m->iova);
        add_hex(b, "size", m->size);
        add_int(b, "prot", m->prot);
        add_fd_ref(b, "backing", m->backing);
        add_hex(b, "backing_offset", m->backing_offset);
        json_builder_set_member_name(b, "vaddr_suspended");
        json_builder_add_boolean_value(b, m->vaddr_suspended);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "irqs");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_irqs; i++) {
        const Cprkit__IrqIndex *q = s->irqs[i];

        json_builder_begin_object(b);
        add_fd_ref(b, "device", q->device);
        add_str(b, "kind", irq_kind_name(q->kind));
        add_int(b, "count", q->count);
        json_builder_set_member_name(b, "vectors");
        json_builder_begin_array(b);
        for (size_t v = 0; v < q->n_vectors; v++) {
            json_builder_begin_object(b);
            add_int(b, "vector", q->vectors[v]->vector);
            add_fd_ref(b, "trigger", q->vectors[v]->trigger);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        if (q->intx_unmask)
            add_fd_ref(b, "intx_unmask", q->intx_unmask);
        json_builder_set_member_name(b, "masked");
        json_builder_add_boolean_value(b, q->masked);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "ram_blocks");
    json_builder_begin_array(b);
    for (size_t i = 0; i < s->n_ram_blocks; i++) {
        const Cprkit__RamBlock *r = s->ram_blocks[i];

        json_builder_begin_object(b);
        add_str(b, "name", r->name);
        add_fd_ref(b, "fd", r->fd);
        add_hex(b, "size", r->size);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);

    json_builder_end_object(b);
}

JsonNode *state_to_json(const Cprkit__State *s)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    add_u64(b, "generation", s->generation);
    add_u64(b, "created_realtime_ns", s->created_realtime_ns);
    add_int(b, "writer_pid", s->writer_pid);
    add_str(b, "writer_version", s->writer_version);
    add_fds(b, s);
    add_sections(b, s);
    add_timestamps(b, s);
    add_vfio(b, s);
    /* Fields a newer writer added that this build does not know. */
    add_int(b, "unknown_fields", s->base.n_unknown_fields);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

int blob_to_json(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                 JsonNode **ret)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    struct command_line rescue = {0};
    struct blob_frame frame;
    Cprkit__State *state = NULL;
    int r;

    r = blob_parse_frame(ctx, buf, size, &frame);
    if (r < 0)
        return r;
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "frame");
    json_builder_begin_object(b);
    add_int(b, "format_major", frame.major);
    add_int(b, "format_minor", frame.minor);
    add_int(b, "size", (gint64)size);
    add_int(b, "rescue_size", (gint64)frame.rescue_size);
    add_int(b, "payload_size", (gint64)frame.payload_size);
    json_builder_end_object(b);

    json_builder_set_member_name(b, "rollback");
    r = blob_parse_rescue(ctx, &frame, &rescue);
    if (r < 0) {
        json_builder_begin_object(b);
        add_str(b, "error", cprkit_last_error(ctx));
        json_builder_end_object(b);
    } else if (!rescue.path) {
        json_builder_add_null_value(b);
    } else {
        json_builder_begin_object(b);
        add_str(b, "path", rescue.path);
        json_builder_set_member_name(b, "argv");
        json_builder_begin_array(b);
        for (char **a = rescue.argv; a && *a; a++)
            json_builder_add_string_value(b, *a);
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    command_line_clear(&rescue);

    r = blob_unpack_payload(ctx, &frame, &state);
    if (r < 0) {
        add_str(b, "payload_error", cprkit_last_error(ctx));
    } else {
        json_builder_set_member_name(b, "state");
        json_builder_add_value(b, state_to_json(state));
        cprkit__state__free_unpacked(state, NULL);
    }
    json_builder_end_object(b);
    *ret = json_builder_get_root(b);
    return 0;
}

char *json_to_string_line(JsonNode *node, bool pretty)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();

    json_generator_set_pretty(gen, pretty);
    json_generator_set_root(gen, node);
    return json_generator_to_data(gen, NULL);
}
