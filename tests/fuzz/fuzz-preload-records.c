/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the preload shim's record decoders: the
 * "cprkit-preload.pb" message (preload_items_decode) and the legacy text
 * section (preload_items_parse), both read from a state blob the new
 * binary did not write.
 *
 * What decodes must encode again to bytes that decode to the same items,
 * and hold only NUL-terminated PCI addresses; anything else aborts.
 */
#include <stdlib.h>
#include <string.h>

#include "preload-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_items(const struct preload_item *items, int n)
{
    for (int i = 0; i < n; i++)
        if (strnlen(items[i].bdf, sizeof(items[i].bdf)) >= sizeof(items[i].bdf))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct preload_item items[PRELOAD_MAX_ITEMS], again[PRELOAD_MAX_ITEMS];
    char err[160];
    uint8_t *buf;
    size_t buf_size;
    int n, m;

    n = preload_items_decode(data, size, items, PRELOAD_MAX_ITEMS, err,
                             sizeof(err));
    if (n > PRELOAD_MAX_ITEMS)
        abort();
    if (n >= 0) {
        check_items(items, n);
        if (preload_items_encode(items, (size_t)n, &buf, &buf_size) < 0)
            abort();
        m = preload_items_decode(buf, buf_size, again, PRELOAD_MAX_ITEMS, err,
                                 sizeof(err));
        if (m != n)
            abort();
        for (int i = 0; i < n; i++)
            if (preload_items_find(again, (size_t)m, &items[i]) < 0)
                abort();
        free(buf);
    }
    n = preload_items_parse((const char *)data, size, items, PRELOAD_MAX_ITEMS);
    if (n > PRELOAD_MAX_ITEMS)
        abort();
    check_items(items, n);
    return 0;
}
