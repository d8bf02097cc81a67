/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * State.fds (field 2 of the payload) on the wire, without protobuf-c's
 * generic code. An update writes and reads every preserved fd inside the
 * blackout, and a VMM may preserve tens of thousands. protobuf-c builds
 * each entry as two messages (FdEntry, FdIdentity), walks them twice to
 * size and to pack the payload, and unpacks each into three allocations,
 * all field by field through its descriptors: a few hundred nanoseconds
 * and some 250 bytes of fresh memory per entry (docs/performance.md). Here
 * the entries go from the registry to bytes and from bytes to registry
 * entries directly; every other field of State stays protobuf-c's.
 *
 * The contract, checked by tests/test-blob and the fuzz target:
 *  - fd_wire_state_write() writes byte for byte what protobuf-c writes for
 *    the State that state_build() makes (the fds as FdEntry messages);
 *  - fd_wire_state_split() accepts and refuses what
 *    protobuf_c_message_unpack() (protobuf-c 1.4) accepts and refuses, and
 *    its entries are what state_load() makes of protobuf-c's messages.
 * A field added to FdEntry or FdIdentity must be added here too; the test
 * of their field counts fails until it is.
 */
#include <limits.h>
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

/* --- reading -------------------------------------------------------------
 * Each step reads as protobuf-c 1.4's protobuf_c_message_unpack() does,
 * limits included; the comments name its functions. */

struct reader {
    const uint8_t *p, *end;
};

struct field {
    uint32_t tag;
    unsigned wire_type;
    const uint8_t *start; /* the key */
    const uint8_t *value; /* after the key, and after the length if any */
    const uint8_t *end;
};

/* parse_tag_and_wiretype(): at most 5 bytes; only a 1-byte tag 0 is
 * refused (a longer one reads as the unknown field 0). The 1-byte key of
 * every known field is read inline, the rest here. */
static size_t read_long_key(const uint8_t *p, size_t len, uint32_t *ret_tag)
{
    size_t max = len > 5 ? 5 : len;
    uint32_t tag = (p[0] & 0x7fu) >> 3;
    unsigned shift = 4;

    for (size_t i = 1; i < max; i++) {
        if (p[i] & 0x80) {
            tag |= (uint32_t)(p[i] & 0x7f) << shift;
            shift += 7;
        } else {
            tag |= (uint32_t)p[i] << shift;
            *ret_tag = tag;
            return i + 1;
        }
    }
    return 0;
}

static inline size_t read_key(const uint8_t *p, size_t len, uint32_t *ret_tag,
                              unsigned *ret_wire_type)
{
    if ((p[0] & 0xf8) == 0)
        return 0;
    *ret_wire_type = p[0] & 7u;
    if (!(p[0] & 0x80)) {
        *ret_tag = p[0] >> 3;
        return 1;
    }
    return read_long_key(p, len, ret_tag);
}

/* The scan of a varint field: at most 10 bytes. */
static size_t scan_varint(const uint8_t *p, size_t len)
{
    size_t max = len > 10 ? 10 : len;

    for (size_t i = 0; i < max; i++)
        if (!(p[i] & 0x80))
            return i + 1;
    return 0;
}

/* parse_uint64(); parse_uint32() and parse_int32() are its low 32 bits. */
static uint64_t varint_value(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    return v;
}

/* scan_length_prefixed_data(): a length of at most 5 bytes, at most
 * INT_MAX, within the data. Returns the size of the length. */
static inline size_t scan_length(const uint8_t *p, size_t len,
                                 size_t *ret_value)
{
    size_t max = len < 5 ? len : 5, value = 0, i;
    unsigned shift = 0;

    if (len > 0 && !(p[0] & 0x80)) { /* the usual 1-byte length */
        if (1 + (size_t)p[0] > len)
            return 0;
        *ret_value = p[0];
        return 1;
    }

    for (i = 0; i < max; i++) {
        value |= ((size_t)p[i] & 0x7f) << shift;
        shift += 7;
        if (!(p[i] & 0x80))
            break;
    }
    if (i == max || value > INT_MAX || i + 1 + value > len)
        return 0;
    *ret_value = value;
    return i + 1;
}

/* The next field of a message; false where protobuf-c's scan fails.
 * Inlined into each loop: as a call, it took a fifth of the decode. */
__attribute__((always_inline)) static inline bool
next_field(struct reader *r, struct field *f)
{
    size_t rem = (size_t)(r->end - r->p), n, value_len;

    f->start = r->p;
    n = read_key(r->p, rem, &f->tag, &f->wire_type);
    if (n == 0)
        return false;
    r->p += n;
    rem -= n;
    f->value = r->p;
    switch (f->wire_type) {
    case WIRE_VARINT:
        n = scan_varint(r->p, rem);
        if (n == 0)
            return false;
        break;
    case WIRE_64BIT:
        if (rem < 8)
            return false;
        n = 8;
        break;
    case WIRE_LEN:
        n = scan_length(r->p, rem, &value_len);
        if (n == 0)
            return false;
        f->value = r->p + n;
        n += value_len;
        break;
    case WIRE_32BIT:
        if (rem < 4)
            return false;
        n = 4;
        break;
    default:
        return false;
    }
    r->p += n;
    f->end = r->p;
    return true;
}

static uint64_t field_varint(const struct field *f)
{
    return varint_value(f->value, (size_t)(f->end - f->value));
}

/* What an entry says besides its values: which fields it has. */
struct entry_has {
    bool fd, identity, type;
    int32_t type_value;
};

/* An FdIdentity into id. Every known field is a varint
 * (parse_required_member() refuses another wire type); unknown fields are
 * skipped (protobuf-c keeps them aside, nobody reads them). A second
 * FdIdentity in one entry is merged into the first (merge_messages()):
 * reading it into the same place does that, the fields are all scalars. */
static bool read_identity(const uint8_t *p, const uint8_t *end,
                          struct fd_identity *id, struct entry_has *has)
{
    struct reader r = {p, end};
    struct field f;

    while (r.p < r.end) {
        if (!next_field(&r, &f))
            return false;
        if (f.tag < 1 || f.tag > 6)
            continue;
        if (f.wire_type != WIRE_VARINT)
            return false;
        switch (f.tag) {
        case 1:
            has->type = true;
            has->type_value = (int32_t)(uint32_t)field_varint(&f);
            break;
        case 2:
            id->dev = field_varint(&f);
            break;
        case 3:
            id->ino = field_varint(&f);
            break;
        case 4:
            id->rdev = field_varint(&f);
            break;
        case 5:
            id->mode_type = (uint32_t)field_varint(&f);
            break;
        case 6:
            id->has_anon_id = true;
            id->anon_id = field_varint(&f);
            break;
        }
    }
    return true;
}

/* An FdEntry into e (zeroed), as fd_entry_fill() makes it of protobuf-c's
 * message; the name is left where it is, in name/name_len (the last one
 * wins). */
static bool read_entry(const uint8_t *p, const uint8_t *end,
                       struct fd_entry *e, const uint8_t **name,
                       size_t *name_len)
{
    struct reader r = {p, end};
    struct entry_has has = {0};
    struct field f;

    while (r.p < r.end) {
        if (!next_field(&r, &f))
            return false;
        switch (f.tag) {
        case 1:
            if (f.wire_type != WIRE_LEN)
                return false;
            *name = f.value;
            *name_len = (size_t)(f.end - f.value);
            break;
        case 2:
            if (f.wire_type != WIRE_VARINT)
                return false;
            e->id = (int32_t)(uint32_t)field_varint(&f);
            break;
        case 3:
            if (f.wire_type != WIRE_VARINT)
                return false;
            has.fd = true;
            e->fd = (int32_t)(uint32_t)field_varint(&f);
            break;
        case 4:
            if (f.wire_type != WIRE_LEN ||
                !read_identity(f.value, f.end, &e->identity, &has))
                return false;
            has.identity = true;
            break;
        default:
            break;
        }
    }
    if (!has.fd)
        e->fd = -1;
    e->identity.type = fd_type_from_blob(has.identity, has.type,
                                         has.type_value);
    return true;
}

/* One entry of the payload into e, its name copied into names. */
static int parse_entry(const struct field *f, struct arena *names,
                       struct fd_entry *e)
{
    const uint8_t *name = NULL;
    size_t name_len = 0;

    *e = (struct fd_entry){0};
    if (!read_entry(f->value, f->end, e, &name, &name_len))
        return -EBADMSG;
    if (name) {
        e->name = arena_strndup(names, (const char *)name, name_len);
        if (!e->name)
            return -ENOMEM;
    }
    return 0;
}

/* The other fields, moved together toward the end of the payload, over
 * the fd entries already read: protobuf-c needs them in one buffer, and
 * a copy would double the application's sections. Pieces (runs of other
 * fields between fd entries) move right, the last one first, each onto
 * bytes already read; in a blob as cprkit writes it only the generation,
 * before the fds, moves. */
struct piece {
    uint8_t *start;
    size_t size;
};

int fd_wire_state_split(uint8_t *payload, size_t size, struct decoded_state *d,
                        uint8_t **ret_rest, size_t *ret_rest_size)
{
    struct reader r = {payload, payload + size};
    struct piece *pieces;
    size_t n_fds = 0, n_pieces = 0, k = 0;
    bool in_piece = false;
    struct field f;
    uint8_t *to;

    /* 1. The structure of the top level: how many entries and pieces. */
    while (r.p < r.end) {
        if (!next_field(&r, &f))
            return -EBADMSG;
        if (f.tag == STATE_FDS) {
            /* A repeated message is length-delimited or refused. */
            if (f.wire_type != WIRE_LEN)
                return -EBADMSG;
            n_fds++;
            in_piece = false;
        } else if (!in_piece) {
            n_pieces++;
            in_piece = true;
        }
    }
    d->fds = arena_alloc_array(&d->fd_arena, n_fds, sizeof(*d->fds));
    pieces = arena_alloc_array(&d->arena, n_pieces, sizeof(*pieces));
    if (!d->fds || !pieces)
        return -ENOMEM;

    /* 2. The entries, read in place; the pieces, noted. */
    r.p = payload;
    in_piece = false;
    while (r.p < r.end) {
        int ret;

        next_field(&r, &f); /* cannot fail: it did not above */
        if (f.tag != STATE_FDS) {
            if (!in_piece) /* f.start, where it may be written */
                pieces[k++] = (struct piece){payload + (f.start - payload), 0};
            pieces[k - 1].size += (size_t)(f.end - f.start);
            in_piece = true;
            continue;
        }
        in_piece = false;
        ret = parse_entry(&f, &d->fd_arena, &d->fds[d->n_fds]);
        if (ret < 0)
            return ret;
        d->n_fds++;
    }

    /* 3. The pieces together at the end. */
    to = payload + size;
    while (k > 0) {
        k--;
        to -= pieces[k].size;
        memmove(to, pieces[k].start, pieces[k].size);
    }
    *ret_rest = to;
    *ret_rest_size = (size_t)(payload + size - to);
    return 0;
}
