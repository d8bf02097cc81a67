/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bump allocator (cpr/arena.c): alignment, chunks, strings, overflow,
 * and protobuf-c unpacking into it. */
#include <stdalign.h>
#include <stddef.h>

#include "cprkit-internal.h"

static void test_alloc(void)
{
    struct arena a = {0};
    uint8_t *p[2000];
    size_t sizes[2000];

    /* Sizes from 0 to a few chunks, each aligned as malloc's, filled with
     * a pattern of its own that no later allocation overwrites. */
    for (size_t i = 0; i < G_N_ELEMENTS(p); i++) {
        sizes[i] = i % 97 == 0 ? 70000 + i : (i * 7) % 300;
        p[i] = arena_alloc(&a, sizes[i]);
        g_assert_nonnull(p[i]);
        g_assert_cmpuint((uintptr_t)p[i] % alignof(max_align_t), ==, 0);
        memset(p[i], (int)(i & 0xff), sizes[i]);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(p); i++)
        for (size_t j = 0; j < sizes[i]; j++)
            g_assert_cmpuint(p[i][j], ==, i & 0xff);
    arena_clear(&a);
    g_assert_null(a.chunks);
    /* Cleared, it is an empty arena again. */
    g_assert_nonnull(arena_alloc(&a, 10));
    arena_clear(&a);
    arena_clear(&a);
}

/* A request larger than a chunk gets one of its own; the chunk being cut
 * goes on being cut. */
static void test_large_keeps_current_chunk(void)
{
    struct arena a = {0};
    uint8_t *small = arena_alloc(&a, 16);
    uint8_t *big = arena_alloc(&a, 1 << 20);
    uint8_t *next = arena_alloc(&a, 16);

    g_assert_nonnull(big);
    memset(big, 1, 1 << 20);
    g_assert_true(next == small + 16);
    arena_clear(&a);
}

static void test_strndup(void)
{
    struct arena a = {0};
    char *s;

    s = arena_strndup(&a, "hello world", 5);
    g_assert_cmpstr(s, ==, "hello");
    /* Up to the first NUL, as strndup() and as protobuf-c's string. */
    s = arena_strndup(&a, "ab\0cd", 5);
    g_assert_cmpstr(s, ==, "ab");
    s = arena_strndup(&a, "", 0);
    g_assert_cmpstr(s, ==, "");
    /* Strings are not padded to an alignment. */
    g_assert_true(arena_strndup(&a, "x", 1) == s + 1);
    arena_clear(&a);
}

static void test_overflow(void)
{
    struct arena a = {0};

    g_assert_null(arena_alloc_array(&a, SIZE_MAX / 2, 3));
    g_assert_null(arena_alloc(&a, SIZE_MAX - 8));
    g_assert_null(arena_alloc(&a, SIZE_MAX));
    g_assert_nonnull(arena_alloc_array(&a, 0, 8));
    arena_clear(&a);
}

static void test_move(void)
{
    struct arena a = {0}, b = {0};
    char *s = arena_strndup(&a, "kept", 4);

    g_assert_nonnull(arena_alloc(&b, 100));
    arena_move(&b, &a); /* b's own memory goes, a's is b's now */
    g_assert_null(a.chunks);
    g_assert_cmpstr(s, ==, "kept");
    arena_clear(&a);
    g_assert_cmpstr(s, ==, "kept");
    arena_clear(&b);
}

/* protobuf-c unpacks into the arena what it unpacks with malloc, and a
 * failed unpack leaves nothing that the arena does not free. */
static void test_protobuf_allocator(void)
{
    Cprkit__State state = CPRKIT__STATE__INIT, *with_malloc, *with_arena;
    Cprkit__FdEntry entries[3], *ptrs[3];
    Cprkit__AppSection section = CPRKIT__APP_SECTION__INIT, *sections[1];
    struct arena a = {0};
    ProtobufCAllocator allocator = arena_protobuf_allocator(&a);
    uint8_t packed[512], again[512];
    size_t size;

    for (int i = 0; i < 3; i++) {
        cprkit__fd_entry__init(&entries[i]);
        entries[i].name = (char *)(i == 1 ? "one" : "other");
        entries[i].has_id = entries[i].has_fd = true;
        entries[i].id = i;
        entries[i].fd = 10 + i;
        ptrs[i] = &entries[i];
    }
    section.name = "model";
    section.has_data = true;
    section.data.data = (uint8_t *)"abc";
    section.data.len = 3;
    sections[0] = &section;
    state.n_fds = 3;
    state.fds = ptrs;
    state.n_sections = 1;
    state.sections = sections;
    state.has_generation = true;
    state.generation = 4;
    size = cprkit__state__get_packed_size(&state);
    g_assert_cmpuint(size, <=, sizeof(packed));
    cprkit__state__pack(&state, packed);

    with_malloc = cprkit__state__unpack(NULL, size, packed);
    with_arena = cprkit__state__unpack(&allocator, size, packed);
    g_assert_nonnull(with_arena);
    g_assert_cmpuint(cprkit__state__pack(with_arena, again), ==, size);
    g_assert_cmpmem(again, size, packed, size);
    g_assert_cmpstr(with_arena->fds[1]->name, ==, "one");
    cprkit__state__free_unpacked(with_malloc, NULL);
    /* Its frees do nothing: the arena goes at once. */
    cprkit__state__free_unpacked(with_arena, &allocator);
    g_assert_null(cprkit__state__unpack(&allocator, size - 1, packed));
    arena_clear(&a);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/arena/alloc", test_alloc);
    g_test_add_func("/arena/large-keeps-current-chunk",
                    test_large_keeps_current_chunk);
    g_test_add_func("/arena/strndup", test_strndup);
    g_test_add_func("/arena/overflow", test_overflow);
    g_test_add_func("/arena/move", test_move);
    g_test_add_func("/arena/protobuf-allocator", test_protobuf_allocator);
    return g_test_run();
}
