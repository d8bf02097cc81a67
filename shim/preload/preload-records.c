/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The shim's record as a PreloadRecords message (preload-records.proto),
 * the "cprkit-preload.pb" section. Pure: no global state, so that the host
 * tests and the fuzz target reach it.
 *
 * struct preload_item keeps its generic a/b/c; the message names them per
 * kind, so that the schema says what it carries.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload-records.pb-c.h"
#include "preload-util.h"

typedef CprkitPreload__PreloadItem PbItem;
typedef CprkitPreload__PreloadRecords PbRecords;
#define KIND(k) CPRKIT_PRELOAD__PRELOAD_ITEM_KIND__PRELOAD_ITEM_KIND_##k

int preload_items_encode(const struct preload_item *items, size_t n,
                         uint8_t **ret_buf, size_t *ret_size)
{
    PbRecords rec = CPRKIT_PRELOAD__PRELOAD_RECORDS__INIT;
    PbItem *pb = NULL, **ptrs = NULL;
    uint8_t *buf = NULL;
    size_t size;
    int r = -ENOMEM;

    if (n > PRELOAD_MAX_ITEMS)
        return -E2BIG;
    if (n > 0) {
        pb = calloc(n, sizeof(*pb));
        ptrs = calloc(n, sizeof(*ptrs));
        if (!pb || !ptrs)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct preload_item *it = &items[i];
        PbItem *p = &pb[i];

        cprkit_preload__preload_item__init(p);
        ptrs[i] = p;
        p->has_kind = true;
        switch (it->kind) {
        case PRELOAD_ITEM_CONTAINER:
            p->kind = KIND(CONTAINER);
            p->has_container_id = true;
            p->container_id = it->a;
            break;
        case PRELOAD_ITEM_GROUP:
            p->kind = KIND(GROUP);
            p->has_group_number = p->has_container_id = true;
            p->group_number = it->a;
            p->container_id = it->b;
            break;
        case PRELOAD_ITEM_DEVICE:
            p->kind = KIND(DEVICE);
            p->bdf = (char *)it->bdf;
            break;
        case PRELOAD_ITEM_DMA:
            p->kind = KIND(DMA);
            p->has_container_id = p->has_iova = p->has_size = true;
            p->container_id = it->a;
            p->iova = it->b;
            p->size = it->c;
            break;
        case PRELOAD_ITEM_IRQ:
            p->kind = KIND(IRQ);
            p->bdf = (char *)it->bdf;
            p->has_irq_index = p->has_irq_count = true;
            p->irq_index = it->a;
            p->irq_count = it->b;
            /* Absent when 0: records of a dense set-up encode as before. */
            p->has_irq_start = it->c != 0;
            p->irq_start = it->c;
            break;
        default:
            r = -EINVAL;
            goto out;
        }
        /* The struct's buffer is NUL-terminated by its writers; a bdf the
         * decoder would refuse must not be written either. */
        if (p->bdf && strnlen(p->bdf, sizeof(it->bdf)) >= sizeof(it->bdf)) {
            r = -ENAMETOOLONG;
            goto out;
        }
    }
    rec.has_version = true;
    rec.version = PRELOAD_RECORDS_VERSION;
    rec.n_items = n;
    rec.items = ptrs;
    size = cprkit_preload__preload_records__get_packed_size(&rec);
    /* malloc(0) may return NULL: allocate at least one byte. */
    buf = malloc(size ? size : 1);
    if (!buf)
        goto out;
    if (cprkit_preload__preload_records__pack(&rec, buf) != size) {
        free(buf);
        r = -EINVAL;
        goto out;
    }
    *ret_buf = buf;
    *ret_size = size;
    r = 0;
out:
    free(pb);
    free(ptrs);
    return r;
}

static int why(char *err, size_t err_size, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int why(char *err, size_t err_size, int r, const char *fmt, ...)
{
    va_list ap;

    if (err && err_size > 0) {
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* One item of the message into the struct, or an error: every field its
 * kind names must be there (a record with a field missing is not one this
 * shim wrote), fields of other kinds are ignored. */
static int item_decode(const PbItem *p, size_t i, struct preload_item *it,
                       char *err, size_t err_size)
{
    const char *missing = NULL;

    *it = (struct preload_item){0};
    if (!p->has_kind)
        return why(err, err_size, -EBADMSG, "item %zu has no kind", i);
    switch ((int)p->kind) {
    case KIND(CONTAINER):
        it->kind = PRELOAD_ITEM_CONTAINER;
        if (!p->has_container_id)
            missing = "container_id";
        it->a = p->container_id;
        break;
    case KIND(GROUP):
        it->kind = PRELOAD_ITEM_GROUP;
        if (!p->has_group_number)
            missing = "group_number";
        else if (!p->has_container_id)
            missing = "container_id";
        it->a = p->group_number;
        it->b = p->container_id;
        break;
    case KIND(DEVICE):
        it->kind = PRELOAD_ITEM_DEVICE;
        if (!p->bdf)
            missing = "bdf";
        break;
    case KIND(DMA):
        it->kind = PRELOAD_ITEM_DMA;
        if (!p->has_container_id)
            missing = "container_id";
        else if (!p->has_iova)
            missing = "iova";
        else if (!p->has_size)
            missing = "size";
        it->a = p->container_id;
        it->b = p->iova;
        it->c = p->size;
        break;
    case KIND(IRQ):
        it->kind = PRELOAD_ITEM_IRQ;
        if (!p->bdf)
            missing = "bdf";
        else if (!p->has_irq_index)
            missing = "irq_index";
        else if (!p->has_irq_count)
            missing = "irq_count";
        it->a = p->irq_index;
        it->b = p->irq_count;
        it->c = p->has_irq_start ? p->irq_start : 0;
        break;
    default:
        /* A kind a newer shim added: this one cannot re-create it. */
        return why(err, err_size, -EBADMSG,
                   "item %zu has kind %d, unknown to this shim", i,
                   (int)p->kind);
    }
    if (missing)
        return why(err, err_size, -EBADMSG, "item %zu (kind %d) has no %s", i,
                   (int)p->kind, missing);
    if (p->bdf &&
        (it->kind == PRELOAD_ITEM_DEVICE || it->kind == PRELOAD_ITEM_IRQ)) {
        size_t len = strlen(p->bdf);

        if (len == 0 || len >= sizeof(it->bdf))
            return why(err, err_size, -EBADMSG,
                       "item %zu: PCI address of %zu bytes (1 to %zu)", i, len,
                       sizeof(it->bdf) - 1);
        memcpy(it->bdf, p->bdf, len + 1);
    }
    return 0;
}

int preload_items_decode(const void *data, size_t size,
                         struct preload_item *items, size_t max, char *err,
                         size_t err_size)
{
    PbRecords *rec;
    int r;

    rec = cprkit_preload__preload_records__unpack(NULL, size, data);
    if (!rec)
        return why(err, err_size, -EBADMSG,
                   "not a PreloadRecords message (%zu bytes)", size);
    if (!rec->has_version) {
        r = why(err, err_size, -EBADMSG, "no format version");
        goto out;
    }
    if (rec->version != PRELOAD_RECORDS_VERSION) {
        r = why(err, err_size, -EPROTONOSUPPORT,
                "format version %u, this shim reads version %d%s", rec->version,
                PRELOAD_RECORDS_VERSION,
                rec->version > PRELOAD_RECORDS_VERSION
                    ? " (written by a newer shim)"
                    : "");
        goto out;
    }
    if (rec->n_items > max || rec->n_items > PRELOAD_MAX_ITEMS) {
        r = why(err, err_size, -E2BIG, "%zu items, this shim holds at most %zu",
                rec->n_items,
                max < PRELOAD_MAX_ITEMS ? max : PRELOAD_MAX_ITEMS);
        goto out;
    }
    for (size_t i = 0; i < rec->n_items; i++) {
        r = item_decode(rec->items[i], i, &items[i], err, err_size);
        if (r < 0)
            goto out;
    }
    r = (int)rec->n_items;
out:
    cprkit_preload__preload_records__free_unpacked(rec, NULL);
    return r;
}

int preload_records_read(preload_section_get_fn *get, void *data,
                         struct preload_item *items, size_t max, char *ret_why,
                         size_t why_size)
{
    const char *name = PRELOAD_SECTION;
    char err[160] = "";
    const void *sec;
    size_t size;
    int r;

    r = get(data, name, &sec, &size);
    if (r == -ENOENT) {
        /* Written by the shim before PRELOAD_SECTION existed: an update
         * of a program started under it. */
        name = PRELOAD_LEGACY_SECTION;
        r = get(data, name, &sec, &size);
        if (r == -ENOENT)
            return 0;
        if (r >= 0)
            r = preload_items_parse(sec, size, items, max);
    } else if (r >= 0) {
        r = preload_items_decode(sec, size, items, max, err, sizeof(err));
    }
    if (r < 0) {
        if (!err[0])
            snprintf(err, sizeof(err), "%s", strerror(-r));
        return why(ret_why, why_size, r, "section %s: %s", name, err);
    }
    return r;
}
