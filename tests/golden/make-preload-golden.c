/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the golden "cprkit-preload.pb" section (the preload shim's
 * record, shim/preload/preload-records.proto) of the current format
 * version to stdout. It was run once and its output committed as
 * tests/data/preload-records-v<N>.golden; test-preload-util decodes the
 * committed bytes, so later shims must keep reading them. Do not
 * regenerate an existing golden file: add a new one for a new version.
 *
 * The items are golden_items (tests/preload/preload-golden.h), one or
 * more of every kind, with values that need multi-byte varints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload-golden.h"
#include "preload-util.h"

int main(void)
{
    uint8_t *buf;
    size_t size;
    int r;

    r = preload_items_encode(golden_items, GOLDEN_N_ITEMS, &buf, &size);
    if (r < 0) {
        fprintf(stderr, "make-preload-golden: %s\n", strerror(-r));
        return 1;
    }
    if (fwrite(buf, 1, size, stdout) != size || fflush(stdout) != 0) {
        perror("make-preload-golden: write");
        free(buf);
        return 1;
    }
    free(buf);
    return 0;
}
