/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The maps module: this process's memory map, the one place cprkit reads
 * it. One file per concept:
 *   vma-parse.c    a line of /proc/PID/maps (the only parser of that text)
 *   vma-query.c    PROCMAP_QUERY (Linux >= 6.11), with /proc/self/maps as
 *                  the fallback: vma_info_find(), for the preload shim
 *   vma-table.c    /proc/self/maps read whole, for kernels without
 *                  PROCMAP_QUERY (6.1): one read for thousands of lookups
 *   vma-backing.c  what file and offset back an address range: the DMA
 *                  map hook records it, the checked remap compares it
 * Plain C, no GLib in the interface: the shim's host tests include it
 * without GLib's flags.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

/*
 * PROCMAP_QUERY (Linux >= 6.11): the VMA covering an address, straight
 * from the kernel, without reading all of /proc/self/maps. Declared here:
 * the build host's uapi headers may predate it. The struct is extensible
 * by its size field: a newer kernel accepts this, the 6.11 layout, and
 * fills only what it describes.
 */
struct procmap_query_v1 {
    uint64_t size;
    uint64_t query_flags;
    uint64_t query_addr;
    uint64_t vma_start;
    uint64_t vma_end;
    uint64_t vma_flags;
    uint64_t vma_page_size;
    uint64_t vma_offset;
    uint64_t inode;
    uint32_t dev_major;
    uint32_t dev_minor;
    uint32_t vma_name_size;
    uint32_t build_id_size;
    uint64_t vma_name_addr;
    uint64_t build_id_addr;
};
#define PROCMAP_QUERY_IOCTL _IOWR('f', 17, struct procmap_query_v1)
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10

/* One VMA, as a line of /proc/self/maps shows it. */
struct vma_info {
    uint64_t start, end;
    int prot;        /* PROT_* */
    bool shared;     /* 's' in the maps line */
    uint64_t offset; /* file offset of start; 0 without a file */
    uint64_t dev;    /* makedev() of the file's device; 0 without a file */
    uint64_t ino;    /* 0 for anonymous and pseudo mappings */
    char name[512];  /* path (" (deleted)" kept), "[heap]" & co., or "" */
};

/* vma-parse.c: parses one line of /proc/PID/maps, "start-end perms offset
 * major:minor inode name" (len bytes, no newline needed; a longer name is
 * cut). Returns false if it is not one. */
bool vma_info_parse_line(const char *line, size_t len, struct vma_info *ret);

/* vma-query.c: PROCMAP_QUERY on an open /proc/self/maps. The VMA covering
 * addr, or with PROCMAP_QUERY_COVERING_OR_NEXT_VMA in query_flags the
 * first one above it; with_name fills ret->name too (the kernel builds a
 * path for it: the remap loop does without). Returns 0, -ENOENT when there
 * is no such VMA, -ENOTTY or -EINVAL when the kernel has no PROCMAP_QUERY
 * (see vma_query_unsupported()), or another negative errno. */
int vma_query(int maps_fd, uint64_t addr, uint64_t query_flags, bool with_name,
              struct vma_info *ret);
bool vma_query_unsupported(int r);
/* Test seam: when set, vma_query() fails as a kernel before 6.11 does, so
 * that host tests on new kernels run the /proc/self/maps paths. */
extern bool vma_query_disabled;

/* The VMA of this process covering addr, or else the first one above it:
 * PROCMAP_QUERY where the kernel has it, else /proc/self/maps. Returns 0,
 * -ENOENT when no VMA is at or above addr, -EBADMSG for a maps line it
 * cannot read, or another negative errno. The two differ above the last
 * VMA on x86-64: the text lists the [vsyscall] gate page, which is not in
 * the process's VMA tree and which PROCMAP_QUERY does not see (-ENOENT). */
int vma_info_find(uint64_t addr, struct vma_info *ret);

/* vma-table.c: /proc/self/maps parsed once, by address. Lines the parser
 * refuses are skipped. */
struct vma_span;
struct vma_table {
    struct vma_span *vmas; /* NULL until loaded */
    size_t n_vmas;
    bool no_query; /* the kernel has no PROCMAP_QUERY (before 6.11) */
    /* vma_backing_cached(): /proc/self/maps kept open for PROCMAP_QUERY
     * across the remap loop (closed by vma_table_clear). */
    bool maps_fd_open;
    int maps_fd;
};
/* Returns 0, or -EIO if /proc/self/maps cannot be read. */
int vma_table_load(struct vma_table *t);
/* The VMA of the table covering addr (ret->name left empty), or -ENOENT. */
int vma_table_covering(const struct vma_table *t, uint64_t addr,
                       struct vma_info *ret);
/* Whether a VMA read earlier maps the same file at the same bounds now. */
bool vma_still_there(const struct vma_info *v);
void vma_table_clear(struct vma_table *t);

/* vma-backing.c: what backs [vaddr, vaddr + size): one file (or anonymous
 * memory), contiguous in file offset. Each returns 0, -EINVAL for an empty
 * or wrapping range, -EFAULT if part of it is not mapped, -EXDEV if it
 * spans different files or offsets, or another negative errno. */
struct vma_backing {
    uint64_t dev;
    uint64_t ino;
    uint64_t offset; /* file offset of the first byte */
    bool shared;
    bool file_backed; /* has an inode (not anonymous memory) */
};
/* PROCMAP_QUERY, else a table read for this one call. */
int vma_backing_of(const void *vaddr, uint64_t size, struct vma_backing *ret);
/* From a table read earlier, as it was then. */
int vma_table_lookup(const struct vma_table *t, const void *vaddr,
                     uint64_t size, struct vma_backing *ret);
/* For the remap loop: PROCMAP_QUERY, else cache (loaded on first use,
 * every answer confirmed, read again when stale). */
int vma_backing_cached(struct vma_table *cache, const void *vaddr,
                       uint64_t size, struct vma_backing *ret);
