/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pure helpers of the LD_PRELOAD shim; see preload-util.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "preload-util.h"
#include "vma-info.h"

static bool name_is(const struct vma_info *v, const char *prefix)
{
    return strncmp(v->name, prefix, strlen(prefix)) == 0;
}

int preload_classify_vmas(preload_vma_next_fn *next_vma, void *data,
                          uint64_t addr, uint64_t size, int *ret_prot,
                          char *ret_what, size_t what_size)
{
    enum preload_backing kind = PRELOAD_BACKING_OTHER;
    uint64_t covered = addr, end = addr + size;
    int prot = PROT_READ | PROT_WRITE | PROT_EXEC;
    bool first = true;

    snprintf(ret_what, what_size, "0x%" PRIx64 "-0x%" PRIx64 " not mapped",
             addr, end);
    if (size == 0 || end < addr)
        return PRELOAD_BACKING_OTHER;
    while (covered < end) {
        struct vma_info v;
        enum preload_backing this_kind;
        int r = next_vma(data, covered, &v);

        if (r == -ENOENT)
            break;
        if (r == -EBADMSG)
            return PRELOAD_BACKING_OTHER;
        if (r < 0)
            return r;
        if (v.start > covered) {
            snprintf(ret_what, what_size,
                     first ? "0x%" PRIx64 "-0x%" PRIx64
                             " is not mapped at 0x%" PRIx64
                           : "0x%" PRIx64 "-0x%" PRIx64
                             " has a hole at 0x%" PRIx64,
                     addr, end, covered);
            return PRELOAD_BACKING_OTHER;
        }
        /* Anonymous: no name, or "[heap]" (not the stack or special
         * mappings). "/anon_hugepage" and "/SYSV..." are shmem/hugetlb
         * files we cannot copy faithfully. */
        if (v.ino == 0 && (v.name[0] == '\0' || name_is(&v, "[heap]")))
            this_kind = PRELOAD_BACKING_ANON;
        else if (v.ino != 0 && v.shared && !name_is(&v, "/anon_hugepage") &&
                 !name_is(&v, "/SYSV"))
            this_kind = PRELOAD_BACKING_FILE_SHARED;
        else
            this_kind = PRELOAD_BACKING_OTHER;
        if (this_kind == PRELOAD_BACKING_OTHER ||
            (!first && this_kind != kind) ||
            (this_kind == PRELOAD_BACKING_FILE_SHARED && !first)) {
            snprintf(ret_what, what_size,
                     "0x%" PRIx64 "-0x%" PRIx64 " is backed by %s%s", addr, end,
                     v.name[0] ? v.name : "anonymous",
                     first ? "" : " (more than one mapping)");
            return PRELOAD_BACKING_OTHER;
        }
        kind = this_kind;
        prot &= v.prot;
        first = false;
        covered = v.end;
    }
    if (covered < end) {
        snprintf(ret_what, what_size,
                 "0x%" PRIx64 "-0x%" PRIx64 " is not mapped at 0x%" PRIx64,
                 addr, end, covered);
        return PRELOAD_BACKING_OTHER;
    }
    snprintf(ret_what, what_size, "0x%" PRIx64 "-0x%" PRIx64 " (%s)", addr,
             end, kind == PRELOAD_BACKING_ANON ? "anonymous" : "shared file");
    *ret_prot = prot;
    return kind;
}

/* The VMAs of maps text, in its (address) order: lines already passed
 * are not read again, as the classification only moves up. */
struct maps_text_cursor {
    const char *p;
};

static int maps_text_next(void *data, uint64_t addr, struct vma_info *ret)
{
    struct maps_text_cursor *c = data;

    while (*c->p) {
        const char *nl = strchr(c->p, '\n');
        size_t len = nl ? (size_t)(nl - c->p) : strlen(c->p);

        if (!vma_info_parse_line(c->p, len, ret))
            return -EBADMSG;
        c->p = nl ? nl + 1 : c->p + len;
        if (ret->end > addr)
            return 0;
    }
    return -ENOENT;
}

enum preload_backing preload_classify_range(const char *maps, uint64_t addr,
                                            uint64_t size, int *ret_prot,
                                            char *ret_what, size_t what_size)
{
    struct maps_text_cursor c = {maps};
    int r = preload_classify_vmas(maps_text_next, &c, addr, size, ret_prot,
                                  ret_what, what_size);

    /* Text has no other errors than -EBADMSG (OTHER already). */
    return r < 0 ? PRELOAD_BACKING_OTHER : (enum preload_backing)r;
}

bool preload_iommufd_path(const char *path)
{
    return strcmp(path, "/dev/iommu") == 0 ||
           strncmp(path, "/dev/vfio/devices/", 18) == 0;
}

int preload_vfio_path(const char *path, bool *ret_container)
{
    const char *p;
    char *endp;
    long n;

    *ret_container = false;
    if (!path || strncmp(path, "/dev/vfio/", 10) != 0)
        return -1;
    p = path + 10;
    if (strcmp(p, "vfio") == 0) {
        *ret_container = true;
        return 0;
    }
    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    n = strtol(p, &endp, 10);
    if (errno || *endp || n < 0 || n > 0x7fffffff)
        return -1;
    return (int)n;
}

char **preload_env_without(char *const envp[], const char *const drop[])
{
    size_t n = 0, k = 0;
    char **out;

    for (char *const *e = envp; e && *e; e++)
        n++;
    out = calloc(n + 1, sizeof(*out));
    if (!out)
        return NULL;
    for (char *const *e = envp; e && *e; e++) {
        bool keep = true;

        for (const char *const *d = drop; *d; d++) {
            size_t l = strlen(*d);

            if (strncmp(*e, *d, l) == 0 && (*e)[l] == '=')
                keep = false;
        }
        if (keep)
            out[k++] = *e;
    }
    return out;
}

static const char *const kind_names[] = {
    [PRELOAD_ITEM_CONTAINER] = "container",
    [PRELOAD_ITEM_GROUP] = "group",
    [PRELOAD_ITEM_DEVICE] = "device",
    [PRELOAD_ITEM_DMA] = "dma",
    [PRELOAD_ITEM_IRQ] = "irq",
};

int preload_items_format(const struct preload_item *items, size_t n,
                         char *buf, size_t size)
{
    size_t len = 0;

    if (size == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct preload_item *it = &items[i];
        int w;

        if (it->kind == PRELOAD_ITEM_DEVICE)
            w = snprintf(buf + len, size - len, "device %s\n", it->bdf);
        else if (it->kind == PRELOAD_ITEM_IRQ)
            w = snprintf(buf + len, size - len, "irq %s %" PRIu64 " %" PRIu64 "\n",
                         it->bdf, it->a, it->b);
        else
            w = snprintf(buf + len, size - len,
                         "%s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                         kind_names[it->kind], it->a, it->b, it->c);
        if (w < 0 || (size_t)w >= size - len)
            return -ENOBUFS;
        len += (size_t)w;
    }
    return (int)len;
}

int preload_items_parse(const char *text, size_t len,
                        struct preload_item *items, size_t max)
{
    size_t n = 0;

    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - line) : len - pos;
        struct preload_item it = {0};
        char kind[16], bdf[32], buf[128];
        unsigned long long a = 0, b = 0, c = 0;
        int found = -1;

        pos += l + (nl ? 1 : 0);
        if (l == 0)
            continue;
        if (l >= sizeof(buf))
            return -EBADMSG;
        memcpy(buf, line, l);
        buf[l] = '\0';
        if (sscanf(buf, "%15s", kind) != 1)
            return -EBADMSG;
        for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
            if (strcmp(kind, kind_names[k]) == 0)
                found = (int)k;
        if (found < 0)
            return -EBADMSG;
        it.kind = (enum preload_item_kind)found;
        if (it.kind == PRELOAD_ITEM_DEVICE) {
            if (sscanf(buf, "%*s %31s", bdf) != 1)
                return -EBADMSG;
        } else if (it.kind == PRELOAD_ITEM_IRQ) {
            if (sscanf(buf, "%*s %31s %llu %llu", bdf, &a, &b) != 3)
                return -EBADMSG;
        } else if (sscanf(buf, "%*s %llu %llu %llu", &a, &b, &c) != 3) {
            return -EBADMSG;
        }
        if (it.kind == PRELOAD_ITEM_DEVICE || it.kind == PRELOAD_ITEM_IRQ)
            memcpy(it.bdf, bdf, sizeof(it.bdf));
        it.a = a;
        it.b = b;
        it.c = c;
        if (n == max)
            return -E2BIG;
        items[n++] = it;
    }
    return (int)n;
}

int preload_items_find(const struct preload_item *items, size_t n,
                       const struct preload_item *want)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].kind == want->kind && items[i].a == want->a &&
            items[i].b == want->b && items[i].c == want->c &&
            strcmp(items[i].bdf, want->bdf) == 0)
            return (int)i;
    return -1;
}

void preload_item_describe(const struct preload_item *it, char *buf,
                           size_t size)
{
    switch (it->kind) {
    case PRELOAD_ITEM_CONTAINER:
        snprintf(buf, size, "VFIO container %" PRIu64, it->a);
        break;
    case PRELOAD_ITEM_GROUP:
        snprintf(buf, size, "VFIO group %" PRIu64 " (container %" PRIu64 ")",
                 it->a, it->b);
        break;
    case PRELOAD_ITEM_DEVICE:
        snprintf(buf, size, "VFIO device %s", it->bdf);
        break;
    case PRELOAD_ITEM_DMA:
        snprintf(buf, size,
                 "DMA mapping iova 0x%" PRIx64 " size 0x%" PRIx64
                 " (container %" PRIu64 ")",
                 it->b, it->c, it->a);
        break;
    case PRELOAD_ITEM_IRQ:
        if (it->c)
            snprintf(buf, size,
                     "IRQ index %" PRIu64 " vectors %" PRIu64 "..%" PRIu64
                     " of %s",
                     it->a, it->c, it->c + it->b - 1, it->bdf);
        else
            snprintf(buf, size, "IRQ index %" PRIu64 " x%" PRIu64 " of %s",
                     it->a, it->b, it->bdf);
        break;
    }
}
