/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * State.fds (field 2 of the payload) on the wire, without protobuf-c's
 * generic code. An update writes and reads every preserved fd inside the
 * blackout, and a VMM may preserve tens of thousands. protobuf-c builds
 * each entry as two messages (FdEntry, FdIdentity) and sizes them three
 * times over (once for the payload, then again for each length prefix
 * while packing), all through its descriptors: a few hundred nanoseconds
 * and some 150 bytes of fresh memory per entry (docs/performance.md).
 * Here the entries go from the registry to bytes directly; every other
 * field of State stays protobuf-c's.
 *
 * The contract, checked by tests/test-blob: fd_wire_state_write() writes
 * byte for byte what protobuf-c writes for the State that state_build()
 * makes (the fds as FdEntry messages). A field added to FdEntry or
 * FdIdentity must be added here too; the test of their field counts fails
 * until it is.
 */
#include <string.h>

#include "cprkit-internal.h"

enum {
    WIRE_VARINT = 0,
    WIRE_64BIT = 1,
    WIRE_LEN = 2,
    WIRE_32BIT = 5,
};

#define KEY(field, wire) (uint8_t)((field) << 3 | (wire))
#define STATE_GENERATION 1u
#define STATE_FDS 2u

/* --- writing ------------------------------------------------------------ */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;

    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* int32 and enum fields: a negative value is sign-extended to 64 bits (10
 * bytes), as protobuf-c's int32_pack() does. */
static uint64_t int32_wire(int32_t v)
{
    return (uint64_t)(int64_t)v;
}

/* The sizes of an entry's parts, as state_build() fills the messages:
 * name, id, fd and identity always set, anon_id when known. */
struct entry_sizes {
    size_t name;     /* strlen of the name */
    size_t identity; /* FdIdentity body */
    size_t entry;    /* FdEntry body */
    size_t field;    /* the State field: key, length, body */
};

static void entry_sizes(const struct fd_entry *e, struct entry_sizes *s)
{
    const struct fd_identity *id = &e->identity;

    s->name = strlen(e->name);
    s->identity = 1 + varint_size(int32_wire((int32_t)id->type)) + 1 +
                  varint_size(id->dev) + 1 + varint_size(id->ino) + 1 +
                  varint_size(id->rdev) + 1 + varint_size(id->mode_type);
    if (id->has_anon_id)
        s->identity += 1 + varint_size(id->anon_id);
    s->entry = 1 + varint_size(s->name) + s->name + 1 +
               varint_size(int32_wire(e->id)) + 1 +
               varint_size(int32_wire(e->fd)) + 1 +
               varint_size(s->identity) + s->identity;
    s->field = 1 + varint_size(s->entry) + s->entry;
}

static void put_entry(uint8_t *p, const struct fd_entry *e,
                      const struct entry_sizes *s)
{
    const struct fd_identity *id = &e->identity;

    *p++ = KEY(STATE_FDS, WIRE_LEN);
    p = put_varint(p, s->entry);
    *p++ = KEY(1, WIRE_LEN); /* name */
    p = put_varint(p, s->name);
    memcpy(p, e->name, s->name);
    p += s->name;
    *p++ = KEY(2, WIRE_VARINT); /* id */
    p = put_varint(p, int32_wire(e->id));
    *p++ = KEY(3, WIRE_VARINT); /* fd */
    p = put_varint(p, int32_wire(e->fd));
    *p++ = KEY(4, WIRE_LEN); /* identity */
    p = put_varint(p, s->identity);
    *p++ = KEY(1, WIRE_VARINT); /* type */
    p = put_varint(p, int32_wire((int32_t)id->type));
    *p++ = KEY(2, WIRE_VARINT); /* st_dev */
    p = put_varint(p, id->dev);
    *p++ = KEY(3, WIRE_VARINT); /* st_ino */
    p = put_varint(p, id->ino);
    *p++ = KEY(4, WIRE_VARINT); /* st_rdev */
    p = put_varint(p, id->rdev);
    *p++ = KEY(5, WIRE_VARINT); /* st_mode_type */
    p = put_varint(p, id->mode_type);
    if (id->has_anon_id) {
        *p++ = KEY(6, WIRE_VARINT);
        put_varint(p, id->anon_id);
    }
}

/* protobuf-c writes the fields in the order of their numbers, unknown
 * fields last: the generation (1), the fds (2), then what protobuf-c packs
 * of the rest, which has neither. */
static Cprkit__State state_rest(const Cprkit__State *state)
{
    Cprkit__State rest = *state;

    rest.has_generation = false;
    return rest;
}

size_t fd_wire_state_size(const Cprkit__State *state, const GPtrArray *fds)
{
    Cprkit__State rest = state_rest(state);
    size_t size = cprkit__state__get_packed_size(&rest);

    if (state->has_generation)
        size += 1 + varint_size(state->generation);
    for (guint i = 0; i < fds->len; i++) {
        struct entry_sizes s;

        entry_sizes(g_ptr_array_index(fds, i), &s);
        size += s.field;
    }
    return size;
}

/* The payload goes to the sink in pieces, through a staging buffer: a
 * blob written into a memfd this way needs no buffer of its own size
 * (1.3 MiB of fresh pages at 32 000 fds, inside the blackout), and its
 * size is known only at the end. What does not fit the staging buffer (a
 * large application section) gets a buffer of its own. */
#define STAGING_SIZE (64u << 10)

struct writer {
    fd_wire_sink_fn sink;
    void *userdata;
    uint8_t *buf;
    size_t used;
    int error;
};

static void flush(struct writer *w)
{
    if (w->used > 0 && w->error == 0)
        w->error = w->sink(w->userdata, w->buf, w->used);
    w->used = 0;
}

/* Room for n bytes: in the staging buffer, or in *own (to hand to give()). */
static uint8_t *take(struct writer *w, size_t n, uint8_t **own)
{
    *own = NULL;
    if (n <= STAGING_SIZE) {
        uint8_t *p;

        if (STAGING_SIZE - w->used < n)
            flush(w);
        p = w->buf + w->used;
        w->used += n;
        return p;
    }
    flush(w);
    *own = malloc(n);
    if (!*own && w->error == 0)
        w->error = -ENOMEM;
    return *own;
}

static void give(struct writer *w, uint8_t *own, size_t n)
{
    if (own && w->error == 0)
        w->error = w->sink(w->userdata, own, n);
    free(own);
}

int fd_wire_state_write(const Cprkit__State *state, const GPtrArray *fds,
                        fd_wire_sink_fn sink, void *userdata)
{
    struct writer w = {sink, userdata, malloc(STAGING_SIZE), 0, 0};
    Cprkit__State rest = state_rest(state);
    uint8_t *p, *own;
    size_t n;

    if (!w.buf)
        return -ENOMEM;
    if (state->has_generation) {
        p = take(&w, 1 + varint_size(state->generation), &own);
        *p++ = KEY(STATE_GENERATION, WIRE_VARINT);
        put_varint(p, state->generation);
    }
    for (guint i = 0; i < fds->len && w.error == 0; i++) {
        const struct fd_entry *e = g_ptr_array_index(fds, i);
        struct entry_sizes s;

        entry_sizes(e, &s);
        p = take(&w, s.field, &own);
        if (p)
            put_entry(p, e, &s);
        give(&w, own, s.field);
    }
    n = cprkit__state__get_packed_size(&rest);
    p = w.error == 0 ? take(&w, n, &own) : NULL;
    if (p) {
        cprkit__state__pack(&rest, p);
        give(&w, own, n);
    }
    flush(&w);
    free(w.buf);
    return w.error;
}
