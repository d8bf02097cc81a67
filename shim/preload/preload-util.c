/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pure helpers of the LD_PRELOAD shim; see preload-util.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "preload-util.h"

/* One line of /proc/self/maps:
 * "start-end perms offset dev inode   path". */
struct map_line {
    uint64_t start, end;
    char perms[5];
    uint64_t inode;
    const char *path; /* into the line, "" for anonymous */
    size_t path_len;
};

static bool parse_map_line(const char *line, size_t len, struct map_line *m)
{
    char buf[512];
    unsigned long long start, end, off, inode;
    char dev[32];
    int pos = 0;

    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (sscanf(buf, "%llx-%llx %4s %llx %31s %llu %n", &start, &end, m->perms,
               &off, dev, &inode, &pos) < 6)
        return false;
    m->start = start;
    m->end = end;
    m->inode = inode;
    m->path = line + pos;
    m->path_len = pos <= (int)len ? len - (size_t)pos : 0;
    return true;
}

static int perms_to_prot(const char *perms)
{
    return (perms[0] == 'r' ? PROT_READ : 0) |
           (perms[1] == 'w' ? PROT_WRITE : 0) |
           (perms[2] == 'x' ? PROT_EXEC : 0);
}

static bool path_is(const struct map_line *m, const char *prefix)
{
    return m->path_len >= strlen(prefix) &&
           memcmp(m->path, prefix, strlen(prefix)) == 0;
}

enum preload_backing preload_classify_range(const char *maps, uint64_t addr,
                                            uint64_t size, int *ret_prot,
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
    for (const char *p = maps; *p && covered < end;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        struct map_line m;
        enum preload_backing this_kind;

        if (!parse_map_line(p, len, &m))
            return PRELOAD_BACKING_OTHER;
        p = nl ? nl + 1 : p + len;
        if (m.end <= covered)
            continue;
        if (m.start > covered) {
            snprintf(ret_what, what_size,
                     first ? "0x%" PRIx64 "-0x%" PRIx64
                             " is not mapped at 0x%" PRIx64
                           : "0x%" PRIx64 "-0x%" PRIx64
                             " has a hole at 0x%" PRIx64,
                     addr, end, covered);
            return PRELOAD_BACKING_OTHER;
        }
        /* Anonymous: no path, or a "[...]" pseudo path other than
         * hugetlb, stack or special mappings. "/anon_hugepage" and
         * "/SYSV..." are shmem/hugetlb files we cannot copy faithfully. */
        if (m.inode == 0 && (m.path_len == 0 || path_is(&m, "[heap]")))
            this_kind = PRELOAD_BACKING_ANON;
        else if (m.inode != 0 && m.perms[3] == 's' &&
                 !path_is(&m, "/anon_hugepage") && !path_is(&m, "/SYSV"))
            this_kind = PRELOAD_BACKING_FILE_SHARED;
        else
            this_kind = PRELOAD_BACKING_OTHER;
        if (this_kind == PRELOAD_BACKING_OTHER ||
            (!first && this_kind != kind) ||
            (this_kind == PRELOAD_BACKING_FILE_SHARED && !first)) {
            snprintf(ret_what, what_size,
                     "0x%" PRIx64 "-0x%" PRIx64 " is backed by %.*s%s", addr,
                     end, (int)(m.path_len ? m.path_len : 9),
                     m.path_len ? m.path : "anonymous",
                     first ? "" : " (more than one mapping)");
            return PRELOAD_BACKING_OTHER;
        }
        kind = this_kind;
        prot &= perms_to_prot(m.perms);
        first = false;
        covered = m.end;
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
        snprintf(buf, size, "IRQ index %" PRIu64 " x%" PRIu64 " of %s", it->a,
                 it->b, it->bdf);
        break;
    }
}
