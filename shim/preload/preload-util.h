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

/* /dev/iommu or a VFIO device cdev (/dev/vfio/devices/vfioN): what the
 * shim does not handle. */
bool preload_iommufd_path(const char *path);

/* Group number of "/dev/vfio/N" (N decimal), -1 for other paths; 0 for
 * "/dev/vfio/vfio" is reported through ret_container. */
int preload_vfio_path(const char *path, bool *ret_container);

/* A copy of envp without the variables named in drop (NULL-terminated list
 * of names), malloc'ed (free the array only; the strings are envp's). */
char **preload_env_without(char *const envp[], const char *const drop[]);

/* The resources the shim recorded, as carried across exec in the state
 * blob section "cprkit-preload.pb" (preload_items_encode/decode) and, by
 * shims before it, "cprkit-preload" (text, preload_items_format/parse). */
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

/* The legacy text section, one item per line, which shims before the
 * "cprkit-preload.pb" section wrote. The shim only reads it now
 * (records.c); the tests write it to play the previous shim. */

/* Appends the text form of items to buf (size bytes). Returns the length
 * or -ENOBUFS. */
int preload_items_format(const struct preload_item *items, size_t n,
                         char *buf, size_t size);

/* Parses the text form. Unknown lines are an error (the section is written
 * by the same shim). Returns the number of items or -EBADMSG / -E2BIG. */
int preload_items_parse(const char *text, size_t len,
                        struct preload_item *items, size_t max);

/* The format version of the PreloadRecords message
 * (preload-records.proto) this shim writes and reads. */
#define PRELOAD_RECORDS_VERSION 1

/* Encodes items as a PreloadRecords message into *ret_buf (malloc'ed,
 * *ret_size bytes). The same items always give the same bytes. Returns 0,
 * -E2BIG (more than PRELOAD_MAX_ITEMS), -ENAMETOOLONG (a bdf not
 * NUL-terminated in its buffer), -EINVAL (an unknown kind) or -ENOMEM. */
int preload_items_encode(const struct preload_item *items, size_t n,
                         uint8_t **ret_buf, size_t *ret_size);

/* Decodes a PreloadRecords message into items (at most max). Never trusts
 * the input: returns the number of items, or -EBADMSG (not a message, no
 * version, an unknown kind, a field of its kind missing, a PCI address too
 * long for struct preload_item), -EPROTONOSUPPORT (another format
 * version) or -E2BIG (more than max or PRELOAD_MAX_ITEMS items), and then
 * writes why to err (err_size bytes, NUL-terminated). */
int preload_items_decode(const void *data, size_t size,
                         struct preload_item *items, size_t max, char *err,
                         size_t err_size);

/* The state blob sections of the record: the PreloadRecords message, and
 * the text one of the shims before it, read when the message is absent (an
 * update of a program started under such a shim). The legacy reader can go
 * once no running program can have been started by one (docs/
 * state-format.md, "Legacy section"). */
#define PRELOAD_SECTION "cprkit-preload.pb"
#define PRELOAD_LEGACY_SECTION "cprkit-preload"

/* Gets section name like cprkit_section_get(): 0 or -ENOENT. */
typedef int preload_section_get_fn(void *data, const char *name,
                                   const void **ret, size_t *ret_size);

/* The record the previous binary left, from PRELOAD_SECTION or, absent
 * that, PRELOAD_LEGACY_SECTION; none is an empty record. Returns the
 * number of items or a negative errno, and then writes why, naming the
 * section, to ret_why (why_size bytes). */
int preload_records_read(preload_section_get_fn *get, void *data,
                         struct preload_item *items, size_t max,
                         char *ret_why, size_t why_size);

/* Index of the first item equal in kind and identity (a, b, c, bdf) to
 * want, or -1. */
int preload_items_find(const struct preload_item *items, size_t n,
                       const struct preload_item *want);

/* One-line readable description, for messages. */
void preload_item_describe(const struct preload_item *it, char *buf,
                           size_t size);
