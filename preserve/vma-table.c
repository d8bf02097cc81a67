/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * /proc/self/maps read whole, for kernels without PROCMAP_QUERY (before
 * 6.11): checking thousands of DMA ranges against one table is linear,
 * reading the file for each would be quadratic. See vma-info.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "vma-info.h"

/* A table entry: a VMA without its name, which would make the table ten
 * times larger for nothing the remap compares. */
struct vma_span {
    uint64_t start, end;
    uint64_t offset;
    uint64_t dev, ino;
    int prot;
    bool shared;
};

/* The kernel lists VMAs in address order: the table is sorted as read. */
int vma_table_load(struct vma_table *t)
{
    g_autofree char *maps = NULL;
    GArray *vmas;

    vma_table_clear(t);
    if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL))
        return -EIO;
    vmas = g_array_new(false, false, sizeof(struct vma_span));
    for (const char *p = maps; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        struct vma_info v;

        /* A line that is not one is skipped, as this table always did. */
        if (vma_info_parse_line(p, len, &v)) {
            struct vma_span s = {
                .start = v.start,
                .end = v.end,
                .offset = v.offset,
                .dev = v.dev,
                .ino = v.ino,
                .prot = v.prot,
                .shared = v.shared,
            };

            g_array_append_val(vmas, s);
        }
        p = nl ? nl + 1 : p + len;
    }
    t->n_vmas = vmas->len;
    t->vmas = (struct vma_span *)g_array_free(vmas, false);
    return 0;
}

int vma_table_covering(const struct vma_table *t, uint64_t addr,
                       struct vma_info *ret)
{
    size_t lo = 0, hi = t->n_vmas;
    const struct vma_span *s;

    /* First VMA whose end is above addr. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (t->vmas[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->n_vmas || t->vmas[lo].start > addr)
        return -ENOENT;
    s = &t->vmas[lo];
    *ret = (struct vma_info){
        .start = s->start,
        .end = s->end,
        .prot = s->prot,
        .shared = s->shared,
        .offset = s->offset,
        .dev = s->dev,
        .ino = s->ino,
    };
    return 0;
}

/* A table entry read earlier still describes the process if a VMA with
 * exactly these bounds maps the same file now: its map_files entry exists
 * only then (one lookup in the kernel, no parsing). A remap of the same
 * file at the same bounds with another offset since the table was read is
 * the one change this cannot see. */
bool vma_still_there(const struct vma_info *v)
{
    char path[80];
    struct stat st;

    if (!v->ino)
        return false;
    snprintf(path, sizeof(path), "/proc/self/map_files/%" PRIx64 "-%" PRIx64,
             v->start, v->end);
    return stat(path, &st) == 0 && st.st_dev == v->dev && st.st_ino == v->ino;
}

void vma_table_clear(struct vma_table *t)
{
    g_clear_pointer(&t->vmas, g_free);
    t->n_vmas = 0;
    if (t->maps_fd_open)
        close(t->maps_fd);
    t->maps_fd_open = false;
}
