/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A bump allocator: objects are cut from large chunks and all freed at
 * once. For what a blob load makes by the ten thousand and drops together
 * (protobuf-c's messages and strings, the registry's entries and names):
 * one malloc per chunk instead of one malloc and one free per object.
 * Chunks double from ARENA_FIRST_CHUNK up to ARENA_MAX_CHUNK; a larger
 * request gets a chunk of its own size. Not thread-safe, like the context.
 */
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include "cprkit-internal.h"

#define ARENA_FIRST_CHUNK 4096u
#define ARENA_MAX_CHUNK (1u << 20)

struct arena_chunk {
    struct arena_chunk *next;
    size_t size; /* of data[] */
    size_t used;
    alignas(max_align_t) uint8_t data[];
};

/* Room for size bytes at alignment align, or NULL (out of memory, or a
 * size that overflows). */
static void *arena_take(struct arena *a, size_t size, size_t align)
{
    struct arena_chunk *c = a->chunks;
    size_t at, chunk_size = a->next_size ? a->next_size : ARENA_FIRST_CHUNK;

    if (c) {
        at = (c->used + align - 1) & ~(align - 1);
        if (at <= c->size && c->size - at >= size) {
            c->used = at + size;
            return c->data + at;
        }
    }
    if (size > SIZE_MAX - sizeof(*c))
        return NULL;
    /* Larger than a chunk: a chunk of its own, behind the current one,
     * which stays the one to cut from. */
    if (size > chunk_size) {
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->size = c->used = size;
        if (a->chunks) {
            c->next = a->chunks->next;
            a->chunks->next = c;
        } else {
            c->next = NULL;
            a->chunks = c;
        }
        return c->data;
    }
    c = malloc(sizeof(*c) + chunk_size);
    if (!c)
        return NULL;
    if (chunk_size < ARENA_MAX_CHUNK)
        a->next_size = chunk_size * 2;
    c->size = chunk_size;
    c->used = size;
    c->next = a->chunks;
    a->chunks = c;
    return c->data;
}

void *arena_alloc(struct arena *a, size_t size)
{
    return arena_take(a, size ? size : 1, alignof(max_align_t));
}

void *arena_alloc_array(struct arena *a, size_t n, size_t size)
{
    size_t total;

    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    return arena_alloc(a, total);
}

/* As strndup(): at most len bytes of s, up to its first NUL. */
char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    const char *nul = memchr(s, '\0', len);
    char *copy;

    if (nul)
        len = (size_t)(nul - s);
    if (len == SIZE_MAX)
        return NULL;
    copy = arena_take(a, len + 1, 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

void arena_clear(struct arena *a)
{
    struct arena_chunk *c = a->chunks;

    while (c) {
        struct arena_chunk *next = c->next;

        free(c);
        c = next;
    }
    *a = (struct arena){0};
}

/* Hands the arena's memory over to *to (emptied first), leaving *from
 * empty. */
void arena_move(struct arena *to, struct arena *from)
{
    arena_clear(to);
    *to = *from;
    *from = (struct arena){0};
}

static void *protobuf_alloc(void *data, size_t size)
{
    return arena_alloc(data, size);
}

/* Everything goes when the arena does. */
static void protobuf_free(void *data, void *pointer)
{
}

ProtobufCAllocator arena_protobuf_allocator(struct arena *a)
{
    return (ProtobufCAllocator){
        .alloc = protobuf_alloc,
        .free = protobuf_free,
        .allocator_data = a,
    };
}
