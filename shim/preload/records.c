/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shim's record of the program's VFIO resources, carried across exec
 * in the state blob section "cprkit-preload.pb", a PreloadRecords message
 * (preload-records.proto, docs/state-format.md): what this process has
 * (written before every exec) and what the previous binary had (read at
 * start, incoming.c claims it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "preload-internal.h"

static struct preload_item items[PRELOAD_MAX_ITEMS];
static size_t n_items;
/* Changed since the last save: the keeper must get the new record too
 * (preload_records_save_if_changed(), from the control thread). */
static bool changed;

void preload_record_add(const struct preload_item *it)
{
    if (preload_items_find(items, n_items, it) >= 0)
        return;
    if (n_items == PRELOAD_MAX_ITEMS) {
        preload_taint("more than %d VFIO resources", PRELOAD_MAX_ITEMS);
        return;
    }
    items[n_items++] = *it;
    changed = true;
}

void preload_record_remove(const struct preload_item *it)
{
    int i = preload_items_find(items, n_items, it);

    if (i >= 0) {
        items[i] = items[--n_items];
        changed = true;
    }
}

/* Every vector count of an IRQ index: disabling takes them all. */
void preload_record_remove_irqs(const char *bdf, uint64_t index)
{
    for (size_t i = 0; i < n_items; i++)
        if (items[i].kind == PRELOAD_ITEM_IRQ && items[i].a == index &&
            strcmp(items[i].bdf, bdf) == 0) {
            items[i--] = items[--n_items];
            changed = true;
        }
}

int preload_records_save(void)
{
    const void *old;
    size_t old_size;
    uint8_t *buf;
    size_t size;
    int r;

    r = preload_items_encode(items, n_items, &buf, &size);
    if (r < 0) {
        preload_log(LOG_ERR, "section %s: cannot encode the record: %s",
                    PRELOAD_SECTION, strerror(-r));
        return r;
    }
    preload_in_lib++;
    r = cprkit_section_put(preload_ctx, PRELOAD_SECTION, buf, size);
    /* A legacy section loaded from the previous shim would otherwise ride
     * along, stale, in every later blob: empty it. */
    if (r >= 0 &&
        cprkit_section_get(preload_ctx, PRELOAD_LEGACY_SECTION, &old,
                           &old_size) == 0 &&
        old_size > 0)
        r = cprkit_section_put(preload_ctx, PRELOAD_LEGACY_SECTION, "", 0);
    preload_in_lib--;
    free(buf);
    if (r >= 0)
        changed = false;
    return r;
}

/* A crash restart by the keeper gets the state of the last sync: the
 * record must be in it, as after an exec. */
void preload_records_save_if_changed(void)
{
    if (changed)
        preload_records_save();
}

static int section_get(void *data, const char *name, const void **ret,
                       size_t *ret_size)
{
    return cprkit_section_get(data, name, ret, ret_size);
}

/* Logs why it failed and writes it to ret_why (why_size bytes) for the
 * rollback reason. */
int preload_records_load(struct preload_item *ret_items, size_t max,
                         size_t *ret_n, char *ret_why, size_t why_size)
{
    int r = preload_records_read(section_get, preload_ctx, ret_items, max,
                                 ret_why, why_size);

    if (r < 0) {
        preload_log(LOG_ERR, "%s", ret_why);
        return r;
    }
    *ret_n = (size_t)r;
    return 0;
}
