/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A blob through both decoders, for tests/test-blob and the fuzz target:
 * blob_decode() + state_load() (protobuf-c for all of the payload) and
 * blob_unpack_for_load() + state_load_decoded() (the fd entries read by
 * cpr/fd-wire.c). They must give the same verdict, the same error message
 * and the same loaded context; decode_both() aborts otherwise.
 */
#pragma once

#include <stdio.h>
#include <string.h>

#include "cprkit-internal.h"

/* Everything a load puts in a context, as text. The participants' records
 * show in the State a build makes of it (packed, its CRC), without the
 * fields a build takes from the clock and the process. */
static inline char *decode_both_summary(cprkit_ctx *ctx)
{
    GString *s = g_string_new(NULL);
    Cprkit__State *state;

    g_string_append_printf(s, "generation %" PRIu64 "\n", ctx->generation);
    for (guint i = 0; i < ctx->fds->len; i++) {
        const struct fd_entry *e = g_ptr_array_index(ctx->fds, i);
        const struct fd_identity *id = &e->identity;

        g_string_append_printf(s,
                               "fd '%s'/%d %d type %d %" PRIu64 " %" PRIu64
                               " %" PRIu64 " %u anon %d %" PRIu64 "%s\n",
                               e->name, e->id, e->fd, (int)id->type, id->dev,
                               id->ino, id->rdev, id->mode_type,
                               id->has_anon_id, id->anon_id,
                               e->claimed ? " claimed" : "");
    }
    for (guint i = 0; i < ctx->sections->len; i++) {
        const struct app_section *sec = g_ptr_array_index(ctx->sections, i);

        g_string_append_printf(s, "section '%s' %zu %08x\n", sec->name,
                               sec->size, crc32c(0, sec->data, sec->size));
    }
    for (guint i = 0; i < ctx->timestamps->len; i++) {
        const struct phase_timestamp *t = g_ptr_array_index(ctx->timestamps, i);

        g_string_append_printf(s, "timestamp %s %" PRIu64 "\n", t->phase,
                               t->monotonic_ns);
    }
    if (state_build_without_fds(ctx, 0, &state) == 0) {
        size_t size;
        uint8_t *packed;

        state->created_realtime_ns = 0;
        state->writer_pid = 0;
        size = cprkit__state__get_packed_size(state);
        packed = g_malloc(size ? size : 1);
        cprkit__state__pack(state, packed);
        g_string_append_printf(s, "built %zu %08x\n", size,
                               crc32c(0, packed, size));
        g_free(packed);
        state_build_free(state);
    } else {
        g_string_append_printf(s, "build: %s\n", cprkit_last_error(ctx));
    }
    return g_string_free(s, false);
}

static inline void decode_both_mismatch(const char *what, const char *a,
                                        const char *b)
{
    fprintf(stderr, "decoders disagree on %s:\n--- protobuf-c\n%s\n--- "
                    "fd-wire\n%s\n",
                    what, a, b);
    abort();
}

/* Both decoders on a copy of blob each; the common verdict (0 or the
 * negative errno). The frame and the rescue block are read by the same
 * code on both paths: only a blob that gets past them is decoded twice,
 * and only a loaded context is compared whole (a failed load leaves both
 * empty). Fuzzing spends most inputs on the first case. */
static inline int decode_both(const uint8_t *blob, size_t size)
{
    cprkit_ctx *ref, *fast;
    struct command_line rescue = {0};
    Cprkit__State *state = NULL;
    struct decoded_state decoded = {0};
    struct blob_frame frame;
    uint8_t *copy;
    char *a, *b;
    int r_ref, r_fast;

    if (cprkit_new(&ref) < 0)
        abort();
    r_ref = blob_parse_frame(ref, blob, size, &frame);
    if (r_ref == 0)
        r_ref = blob_parse_rescue(ref, &frame, &rescue);
    command_line_clear(&rescue);
    if (r_ref < 0) {
        cprkit_free(ref);
        return r_ref;
    }
    r_ref = blob_unpack_payload(ref, &frame, &state);
    if (r_ref == 0) {
        r_ref = state_load(ref, state);
        cprkit__state__free_unpacked(state, NULL);
    }

    if (cprkit_new(&fast) < 0)
        abort();
    copy = g_memdup2(blob, size);
    if (blob_parse_frame(fast, copy, size, &frame) < 0)
        abort();
    r_fast = blob_unpack_for_load(fast, &frame, copy, &decoded);
    if (r_fast == 0) {
        r_fast = state_load_decoded(fast, &decoded);
        decoded_state_clear(&decoded);
    }

    if (r_ref != r_fast) {
        a = g_strdup_printf("%d: %s", r_ref, cprkit_last_error(ref));
        b = g_strdup_printf("%d: %s", r_fast, cprkit_last_error(fast));
        decode_both_mismatch("the verdict", a, b);
    }
    if (strcmp(cprkit_last_error(ref), cprkit_last_error(fast)) != 0)
        decode_both_mismatch("the error", cprkit_last_error(ref),
                             cprkit_last_error(fast));
    if (r_ref == 0) {
        a = decode_both_summary(ref);
        b = decode_both_summary(fast);
        if (strcmp(a, b) != 0)
            decode_both_mismatch("the loaded context", a, b);
        g_free(a);
        g_free(b);
    }
    g_free(copy);
    cprkit_free(ref);
    cprkit_free(fast);
    return r_ref;
}

static inline void decode_both_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A raw payload in a frame with an empty rescue block and every checksum
 * right (docs/state-format.md): what reaches the payload decoders. */
static inline uint8_t *decode_both_frame(const uint8_t *payload, size_t len,
                                         size_t *ret_size)
{
    uint8_t *buf = g_malloc0(48 + 4 + len);

    memcpy(buf, "\x89" "CPRKIT\n", 8);
    decode_both_le32(buf + 8, CPRKIT_FORMAT_MAJOR);
    decode_both_le32(buf + 16, 48);
    decode_both_le32(buf + 20, 4);
    decode_both_le32(buf + 24, (uint32_t)len);
    decode_both_le32(buf + 28, (uint32_t)((uint64_t)len >> 32));
    if (len)
        memcpy(buf + 52, payload, len);
    decode_both_le32(buf + 32, crc32c(0, buf + 48, 4));
    decode_both_le32(buf + 36, crc32c(0, buf + 52, len));
    decode_both_le32(buf + 44, crc32c(0, buf, 44));
    *ret_size = 48 + 4 + len;
    return buf;
}

/* decode_both() of a raw payload, framed. */
static inline int decode_both_payload(const uint8_t *payload, size_t len)
{
    size_t size;
    uint8_t *blob = decode_both_frame(payload, len, &size);
    int r = decode_both(blob, size);

    g_free(blob);
    return r;
}
