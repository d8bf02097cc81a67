/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pure helpers of the LD_PRELOAD shim (no interposition, no global state),
 * so that host unit tests (tests/preload/) can exercise them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What backs [addr, addr + size). */
enum preload_backing {
    PRELOAD_BACKING_ANON,        /* anonymous memory, private or shared */
    PRELOAD_BACKING_FILE_SHARED, /* one shared mapping of a file or memfd */
    PRELOAD_BACKING_OTHER,       /* holes, private files, hugetlb, mixes */
};

struct vma_info; /* preserve/vma-info.h, the library's maps module */

/* Where the VMAs come from: the one covering addr or else the first one
 * above it. Returns 0, -ENOENT when there is none, -EBADMSG when it cannot
 * be read, or another negative errno. */
typedef int preload_vma_next_fn(void *data, uint64_t addr,
                                struct vma_info *ret);

/* Classifies [addr, addr + size) from the VMAs next_vma gives; writes the
 * lowest protection of the covering mappings (PROT_* bits) to ret_prot
 * and a readable description to ret_what (NUL-terminated, what_size
 * bytes). Returns the backing, or a negative errno of next_vma (other
 * than -ENOENT and -EBADMSG, which make it PRELOAD_BACKING_OTHER). */
int preload_classify_vmas(preload_vma_next_fn *next_vma, void *data,
                          uint64_t addr, uint64_t size, int *ret_prot,
                          char *ret_what, size_t what_size);

/* The same from /proc/PID/maps text (the host tests' input). */
enum preload_backing preload_classify_range(const char *maps, uint64_t addr,
                                            uint64_t size, int *ret_prot,
                                            char *ret_what, size_t what_size);

/* Group number of "/dev/vfio/N" (N decimal), -1 for other paths; 0 for
 * "/dev/vfio/vfio" is reported through ret_container. */
int preload_vfio_path(const char *path, bool *ret_container);

/* A copy of envp without the variables named in drop (NULL-terminated list
 * of names), malloc'ed (free the array only; the strings are envp's). */
char **preload_env_without(char *const envp[], const char *const drop[]);

/* The resources the shim recorded, as carried across exec in the state
 * blob section "cprkit-preload" (text, one item per line). */
enum preload_item_kind {
    PRELOAD_ITEM_CONTAINER, /* a = container id */
    PRELOAD_ITEM_GROUP,     /* a = group number, b = container id */
    PRELOAD_ITEM_DEVICE,    /* bdf */
    PRELOAD_ITEM_DMA,       /* a = container id, b = iova, c = size */
    PRELOAD_ITEM_IRQ,       /* bdf, a = index, b = count */
};

struct preload_item {
    enum preload_item_kind kind;
    uint64_t a, b, c;
    char bdf[32];
    bool claimed; /* incoming side: the new binary re-created it */
};

#define PRELOAD_MAX_ITEMS 64

/* Appends the text form of items to buf (size bytes). Returns the length
 * or -ENOBUFS. */
int preload_items_format(const struct preload_item *items, size_t n,
                         char *buf, size_t size);

/* Parses the text form. Unknown lines are an error (the section is written
 * by the same shim). Returns the number of items or -EBADMSG / -E2BIG. */
int preload_items_parse(const char *text, size_t len,
                        struct preload_item *items, size_t max);

/* Index of the first item equal in kind and identity (a, b, c, bdf) to
 * want, or -1. */
int preload_items_find(const struct preload_item *items, size_t n,
                       const struct preload_item *want);

/* One-line readable description, for messages. */
void preload_item_describe(const struct preload_item *it, char *buf,
                           size_t size);
