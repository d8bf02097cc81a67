/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shim's record of the program's VFIO resources, carried across exec
 * in the state blob section "cprkit-preload": what this process has
 * (written before every exec) and what the previous binary had (read at
 * start, incoming.c claims it).
 *
 * The section is a private text format (preload_items_format/parse in
 * preload-util.c, read with sscanf). It is kept as is here: issue 10
 * replaces it with fields of the versioned blob in a later slice, since
 * state that crosses versions must not depend on a private format. Until
 * then, what is written must not change.
 */
#include <errno.h>
#include <string.h>

#include "preload-internal.h"

#define SECTION_NAME "cprkit-preload"

static struct preload_item items[PRELOAD_MAX_ITEMS];
static size_t n_items;

void preload_record_add(const struct preload_item *it)
{
    if (preload_items_find(items, n_items, it) >= 0)
        return;
    if (n_items == PRELOAD_MAX_ITEMS) {
        preload_taint("more than %d VFIO resources", PRELOAD_MAX_ITEMS);
        return;
    }
    items[n_items++] = *it;
}

void preload_record_remove(const struct preload_item *it)
{
    int i = preload_items_find(items, n_items, it);

    if (i >= 0)
        items[i] = items[--n_items];
}

/* Every vector count of an IRQ index: disabling takes them all. */
void preload_record_remove_irqs(const char *bdf, uint64_t index)
{
    for (size_t i = 0; i < n_items; i++)
        if (items[i].kind == PRELOAD_ITEM_IRQ && items[i].a == index &&
            strcmp(items[i].bdf, bdf) == 0)
            items[i--] = items[--n_items];
}

int preload_records_save(void)
{
    char buf[PRELOAD_MAX_ITEMS * 96];
    int len = preload_items_format(items, n_items, buf, sizeof(buf));

    if (len < 0)
        return len;
    preload_in_lib++;
    len = cprkit_section_put(preload_ctx, SECTION_NAME, buf, (size_t)len);
    preload_in_lib--;
    return len;
}

/* No section (an update with nothing recorded) is an empty record. Logs
 * why it failed. */
int preload_records_load(struct preload_item *ret_items, size_t max,
                         size_t *ret_n)
{
    const void *data;
    size_t size;
    int r;

    r = cprkit_section_get(preload_ctx, SECTION_NAME, &data, &size);
    if (r == -ENOENT) {
        *ret_n = 0;
        return 0;
    }
    if (r >= 0)
        r = preload_items_parse(data, size, ret_items, max);
    if (r < 0) {
        preload_log(LOG_ERR, "section %s: %s", SECTION_NAME, strerror(-r));
        return r;
    }
    *ret_n = (size_t)r;
    return 0;
}
