/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the state blob decoder.
 *
 * Random bytes almost never get past three CRCs, so the first input byte
 * picks a mode: odd = the input is a whole blob (frame checks); even = the
 * rest of the input is a payload, wrapped in a valid frame with correct
 * checksums, to reach the protobuf decoder and the state loader.
 *
 * Each input also goes through both decoders, protobuf-c's and the one
 * that reads the fd entries itself (cpr/fd-wire.c): a difference in
 * verdict, error or loaded context aborts (tests/decode-both.h). In the
 * even mode that is the payload's own bytes, in a frame, before protobuf-c
 * packs what it read of them.
 *
 * Build and long run: docs/testing.md ("Fuzzing").
 */
#include "cprkit-internal.h"
#include "../decode-both.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode_and_load(cprkit_ctx *ctx, const uint8_t *blob, size_t size)
{
    struct command_line rescue = {0};
    Cprkit__State *state = NULL;
    cprkit_ctx *loaded;
    uint8_t *again;
    size_t again_size;

    if (blob_decode(ctx, blob, size, &rescue, &state) < 0)
        return;
    if (cprkit_new(&loaded) == 0) {
        if (state_load(loaded, state) == 0) {
            /* Whatever loaded must encode again. */
            Cprkit__State *built;

            if (state_build(loaded, loaded->generation, &built) == 0) {
                if (blob_encode(loaded, built, &rescue, &again, &again_size) == 0)
                    free(again);
                state_build_free(built);
            }
        }
        cprkit_free(loaded);
    }
    cprkit__state__free_unpacked(state, NULL);
    command_line_clear(&rescue);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cprkit_ctx *ctx;

    if (!ctx && cprkit_new(&ctx) < 0)
        return 0;
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        decode_both(data, size);
        decode_and_load(ctx, data, size);
    } else {
        /* Wrap the payload: decode what the frame would accept. */
        char *argv[] = {"fuzz", NULL};
        struct command_line rescue = {"/fuzz", argv};
        Cprkit__State *state;
        uint8_t *blob;
        size_t blob_size;

        decode_both_payload(data + 1, size - 1);
        state = cprkit__state__unpack(NULL, size - 1, data + 1);
        if (!state)
            return 0;
        if (blob_encode(ctx, state, &rescue, &blob, &blob_size) == 0) {
            decode_and_load(ctx, blob, blob_size);
            free(blob);
        }
        cprkit__state__free_unpacked(state, NULL);
    }
    return 0;
}
