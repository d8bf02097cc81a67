/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What maps an address, as /proc/self/maps shows it: bounds, protection,
 * sharing, inode and name. For callers that describe memory to a person
 * or decide by its kind (the preload shim); the checked remap compares
 * file identity with struct vma_backing (vfio-internal.h) instead.
 * Plain C, no GLib in the interface: host unit tests link it alone.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

/*
 * PROCMAP_QUERY (Linux >= 6.11): the VMA covering an address, straight
 * from the kernel, without reading all of /proc/self/maps. Declared here:
 * the build host's uapi headers may predate it (the layout is fixed by its
 * size field).
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

struct vma_info {
    uint64_t start, end;
    int prot;       /* PROT_* */
    bool shared;    /* 's' in the maps line */
    uint64_t ino;   /* 0 for anonymous and pseudo mappings */
    char name[512]; /* path (" (deleted)" kept), "[heap]" & co., or "" */
};

/* Parses one line of /proc/PID/maps, "start-end perms offset dev inode
 * name" (len bytes, no newline needed). Returns false if it is not one. */
bool vma_info_parse_line(const char *line, size_t len, struct vma_info *ret);

/* The VMA of this process covering addr, or else the first one above it:
 * PROCMAP_QUERY where the kernel has it, else /proc/self/maps. Returns 0,
 * -ENOENT when no VMA is at or above addr, -EBADMSG for a maps line it
 * cannot read, or another negative errno. */
int vma_info_find(uint64_t addr, struct vma_info *ret);
