/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state blob as JSON, for `cpr-exec inspect` and the control
 * endpoint's "inspect" request: like CRIU's crit, every field of the
 * payload with names instead of numbers, plus the frame around it.
 */
#include <stdio.h>
#include <string.h>

#include "control-internal.h"
#include "state-json.h"

json_t *json_utf8_string(const char *s)
{
    g_autofree char *valid = NULL;

    if (!s)
        return json_null();
    if (g_utf8_validate(s, -1, NULL))
        return json_string(s);
    valid = g_utf8_make_valid(s, -1);
    return json_string(valid);
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

/* Members are added in this order, which is the order they are written
 * in (jansson keeps insertion order): the same as json-glib wrote. */

static void add_int(json_t *o, const char *member, json_int_t v)
{
    json_object_set_new(o, member, json_integer(v));
}

static void add_bool(json_t *o, const char *member, bool v)
{
    json_object_set_new(o, member, json_boolean(v));
}

/* Strings the payload may lack are written as "". */
static void add_str(json_t *o, const char *member, const char *s)
{
    json_object_set_new(o, member, json_utf8_string(s ? s : ""));
}

static void add_fd_ref(json_t *o, const char *member, const Cprkit__FdRef *ref)
{
    json_t *r;

    if (!ref) {
        json_object_set_new(o, member, json_null());
        return;
    }
    r = json_object();
    add_str(r, "name", ref->name);
    add_int(r, "id", ref->id);
    json_object_set_new(o, member, r);
}

/* uint64 values above INT64_MAX would turn negative in a JSON int: such
 * values (identities, addresses) are written as hex strings when large. */
static void add_u64(json_t *o, const char *member, uint64_t v)
{
    if (v > (uint64_t)INT64_MAX) {
        char hex[32];

        snprintf(hex, sizeof(hex), "0x%" PRIx64, v);
        add_str(o, member, hex);
    } else {
        add_int(o, member, (json_int_t)v);
    }
}

static void add_hex(json_t *o, const char *member, uint64_t v)
{
    char hex[32];

    snprintf(hex, sizeof(hex), "0x%" PRIx64, v);
    add_str(o, member, hex);
}

/* Appends a new object to array a and returns it (owned by a). */
static json_t *append_object(json_t *a)
{
    json_t *o = json_object();

    json_array_append_new(a, o);
    return o;
}

/* Sets a new array or object as member of o and returns it (owned by o). */
static json_t *set_new_array(json_t *o, const char *member)
{
    json_t *a = json_array();

    json_object_set_new(o, member, a);
    return a;
}

static json_t *set_new_object(json_t *o, const char *member)
{
    json_t *m = json_object();

    json_object_set_new(o, member, m);
    return m;
}

static void add_fds(json_t *o, const Cprkit__State *s)
{
    json_t *a = set_new_array(o, "fds");

    for (size_t i = 0; i < s->n_fds; i++) {
        const Cprkit__FdEntry *e = s->fds[i];
        const Cprkit__FdIdentity *id = e->identity;
        json_t *f = append_object(a);

        add_str(f, "name", e->name);
        add_int(f, "id", e->id);
        add_int(f, "fd", e->fd);
        if (id) {
            add_str(f, "type",
                    id->has_type && (int)id->type <= (int)CPRKIT_FD_OTHER
                        ? cprkit_fd_type_name((enum cprkit_fd_type)id->type)
                        : "other");
            add_u64(f, "st_dev", id->st_dev);
            add_u64(f, "st_ino", id->st_ino);
            add_u64(f, "st_rdev", id->st_rdev);
            add_hex(f, "st_mode_type", id->st_mode_type);
        }
    }
}

static void add_sections(json_t *o, const Cprkit__State *s)
{
    json_t *a = set_new_array(o, "sections");

    for (size_t i = 0; i < s->n_sections; i++) {
        const Cprkit__AppSection *m = s->sections[i];
        g_autofree char *b64 = g_base64_encode(m->data.data, m->data.len);
        json_t *sec = append_object(a);

        add_str(sec, "name", m->name);
        add_int(sec, "size", (json_int_t)m->data.len);
        add_str(sec, "data_base64", b64);
    }
}

static void add_timestamps(json_t *o, const Cprkit__State *s)
{
    json_t *t = set_new_object(o, "timestamps");

    for (size_t i = 0; i < s->n_timestamps; i++) {
        const Cprkit__Timestamp *ts = s->timestamps[i];

        /* jansson takes only UTF-8 keys; a phase name that is not is left
         * out, like one that is missing. */
        if (ts->phase && g_utf8_validate(ts->phase, -1, NULL))
            add_u64(t, ts->phase, ts->monotonic_ns);
    }
}

static void add_vfio(json_t *o, const Cprkit__State *s)
{
    json_t *v = set_new_object(o, "vfio");
    json_t *a;

    a = set_new_array(v, "containers");
    for (size_t i = 0; i < s->n_vfio_containers; i++) {
        json_t *c = append_object(a);

        add_fd_ref(c, "fd", s->vfio_containers[i]->fd);
        add_int(c, "iommu_type", s->vfio_containers[i]->iommu_type);
    }

    a = set_new_array(v, "groups");
    for (size_t i = 0; i < s->n_vfio_groups; i++) {
        const Cprkit__VfioGroup *g = s->vfio_groups[i];
        json_t *j = append_object(a);

        add_fd_ref(j, "fd", g->fd);
        add_int(j, "group_number", g->group_number);
        add_fd_ref(j, "container", g->container);
    }

    a = set_new_array(v, "devices");
    for (size_t i = 0; i < s->n_vfio_devices; i++) {
        const Cprkit__VfioDevice *d = s->vfio_devices[i];
        json_t *j = append_object(a);

        add_fd_ref(j, "fd", d->fd);
        add_str(j, "bdf", d->bdf);
        add_int(j, "group_number", d->group_number);
    }

    a = set_new_array(v, "dma_mappings");
    for (size_t i = 0; i < s->n_dma_mappings; i++) {
        const Cprkit__DmaMapping *m = s->dma_mappings[i];
        json_t *j = append_object(a);

        add_fd_ref(j, "container", m->container);
        add_hex(j, "iova", m->iova);
        add_hex(j, "size", m->size);
        add_int(j, "prot", m->prot);
        add_fd_ref(j, "backing", m->backing);
        add_hex(j, "backing_offset", m->backing_offset);
        add_bool(j, "vaddr_suspended", m->vaddr_suspended);
    }

    a = set_new_array(v, "irqs");
    for (size_t i = 0; i < s->n_irqs; i++) {
        const Cprkit__IrqIndex *q = s->irqs[i];
        json_t *j = append_object(a);
        json_t *vectors;

        add_fd_ref(j, "device", q->device);
        add_str(j, "kind", irq_kind_name(q->kind));
        add_int(j, "count", q->count);
        vectors = set_new_array(j, "vectors");
        for (size_t n = 0; n < q->n_vectors; n++) {
            json_t *vec = append_object(vectors);

            add_int(vec, "vector", q->vectors[n]->vector);
            add_fd_ref(vec, "trigger", q->vectors[n]->trigger);
        }
        if (q->intx_unmask)
            add_fd_ref(j, "intx_unmask", q->intx_unmask);
        add_bool(j, "masked", q->masked);
    }

    a = set_new_array(v, "ram_blocks");
    for (size_t i = 0; i < s->n_ram_blocks; i++) {
        const Cprkit__RamBlock *r = s->ram_blocks[i];
        json_t *j = append_object(a);

        add_str(j, "name", r->name);
        add_fd_ref(j, "fd", r->fd);
        add_hex(j, "size", r->size);
    }
}

json_t *state_to_json(const Cprkit__State *s)
{
    json_t *o = json_object();

    add_u64(o, "generation", s->generation);
    add_u64(o, "created_realtime_ns", s->created_realtime_ns);
    add_int(o, "writer_pid", s->writer_pid);
    add_str(o, "writer_version", s->writer_version);
    add_fds(o, s);
    add_sections(o, s);
    add_timestamps(o, s);
    add_vfio(o, s);
    /* Fields a newer writer added that this build does not know. */
    add_int(o, "unknown_fields", (json_int_t)s->base.n_unknown_fields);
    return o;
}

int blob_to_json(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                 char **ret_text)
{
    json_auto_t *o = json_object();
    struct command_line rescue = {0};
    struct blob_frame frame;
    Cprkit__State *state = NULL;
    json_t *f;
    char *text;
    int r;

    r = blob_parse_frame(ctx, buf, size, &frame);
    if (r < 0)
        return r;
    f = set_new_object(o, "frame");
    add_int(f, "format_major", frame.major);
    add_int(f, "format_minor", frame.minor);
    add_int(f, "size", (json_int_t)size);
    add_int(f, "rescue_size", (json_int_t)frame.rescue_size);
    add_int(f, "payload_size", (json_int_t)frame.payload_size);

    r = blob_parse_rescue(ctx, &frame, &rescue);
    if (r < 0) {
        add_str(set_new_object(o, "rollback"), "error", cprkit_last_error(ctx));
    } else if (!rescue.path) {
        json_object_set_new(o, "rollback", json_null());
    } else {
        json_t *rb = set_new_object(o, "rollback");
        json_t *argv;

        add_str(rb, "path", rescue.path);
        argv = set_new_array(rb, "argv");
        for (char **a = rescue.argv; a && *a; a++)
            json_array_append_new(argv, json_utf8_string(*a));
    }
    command_line_clear(&rescue);

    r = blob_unpack_payload(ctx, &frame, &state);
    if (r < 0) {
        add_str(o, "payload_error", cprkit_last_error(ctx));
    } else {
        json_object_set_new(o, "state", state_to_json(state));
        cprkit__state__free_unpacked(state, NULL);
    }
    text = json_dumps(o, JSON_COMPACT);
    if (!text)
        return ctx_fail(ctx, -ENOMEM, "cannot write the blob as JSON");
    *ret_text = text;
    return 0;
}
