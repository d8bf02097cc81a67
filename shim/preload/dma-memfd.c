/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VFIO_IOMMU_MAP_DMA and UNMAP_DMA. The program's DMA memory is anonymous,
 * which does not survive exec: the shim moves it into a memfd the library
 * preserves (cprkit_ram_open), mapped at the same address, before the
 * library maps it for DMA. On the incoming side the preserved memfd is
 * mapped over the program's new buffer and remapped with
 * VFIO_DMA_MAP_FLAG_VADDR.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "preload-internal.h"
#include "vma-info.h"

/* The process's VMAs from the library's maps module (PROCMAP_QUERY, or
 * /proc/self/maps before Linux 6.11). */
static int live_vma_next(void *data, uint64_t addr, struct vma_info *ret)
{
    return vma_info_find(addr, ret);
}

/* Moves [vaddr, vaddr + size) into the memfd (copying the contents when
 * fresh; the preserved contents win when reclaimed) at the same address. */
static int move_into_memfd(int memfd, void *vaddr, uint64_t size, int prot,
                           bool copy)
{
    void *p;

    if (copy) {
        void *tmp =
            mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);

        if (tmp == MAP_FAILED)
            return -errno;
        if (prot & PROT_READ)
            memcpy(tmp, vaddr, size);
        munmap(tmp, size);
    }
    p = mmap(vaddr, size, prot, MAP_SHARED | MAP_FIXED, memfd, 0);
    if (p == MAP_FAILED)
        return -errno;
    return 0;
}

/* In the new binary a mapping the library refused means the update cannot
 * be completed: back to the old binary, with the library's reason. */
static void rollback_if_incoming(const struct vfio_iommu_type1_dma_map *m)
{
    if (preload_incoming)
        preload_rollback("DMA mapping iova 0x%llx size 0x%llx: %s",
                         (unsigned long long)m->iova,
                         (unsigned long long)m->size,
                         cprkit_last_error(preload_ctx));
}

int preload_map_dma(struct preload_container *c,
                    struct vfio_iommu_type1_dma_map *m)
{
    struct preload_item it = {.kind = PRELOAD_ITEM_DMA,
                              .a = (uint64_t)c->id,
                              .b = m->iova,
                              .c = m->size};
    void *vaddr = (void *)(uintptr_t)m->vaddr;
    uint32_t prot =
        m->flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    char what[256], name[64];
    enum preload_backing backing;
    bool reclaimed = false;
    int r, mprot = 0, memfd;

    if (m->flags &
        ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) {
        preload_log(LOG_ERR,
                    "VFIO_IOMMU_MAP_DMA with flags 0x%x is not supported "
                    "under the shim",
                    m->flags);
        return -EINVAL;
    }
    preload_in_lib++;
    r = preload_classify_vmas(live_vma_next, NULL, m->vaddr, m->size, &mprot,
                              what, sizeof(what));
    preload_in_lib--;
    if (r < 0)
        return r;
    backing = (enum preload_backing)r;
    if (backing == PRELOAD_BACKING_OTHER) {
        preload_log(LOG_ERR,
                    "DMA memory %s at iova 0x%llx cannot be preserved: the "
                    "shim needs anonymous memory (or a shared file mapping)",
                    what, (unsigned long long)m->iova);
        if (preload_incoming)
            preload_rollback("DMA memory %s cannot be preserved", what);
        return -EINVAL;
    }
    if (backing == PRELOAD_BACKING_ANON) {
        snprintf(name, sizeof(name), "preload-dma-%d-%llx", c->id,
                 (unsigned long long)m->iova);
        preload_in_lib++;
        memfd = cprkit_ram_open(preload_ctx, name, m->size, &reclaimed);
        preload_in_lib--;
        if (memfd < 0) {
            rollback_if_incoming(m);
            return memfd;
        }
        preload_private_add(memfd);
        r = move_into_memfd(memfd, vaddr, m->size, mprot, !reclaimed);
        if (r < 0) {
            preload_log(LOG_ERR, "cannot move DMA memory %s into a memfd: %s",
                        what, strerror(-r));
            if (preload_incoming)
                preload_rollback(
                    "moving DMA memory %s into the preserved memfd: %s", what,
                    strerror(-r));
            return r;
        }
    } else {
        preload_log(LOG_WARNING,
                    "DMA memory %s is a shared file mapping the shim "
                    "cannot re-open in the new binary: updates will be "
                    "refused",
                    what);
        preload_taint("DMA memory %s is a shared file mapping", what);
    }
    preload_in_lib++;
    r = cprkit_vfio_dma_map(preload_ctx, c->fd, m->iova, m->size, vaddr, prot);
    preload_in_lib--;
    if (r < 0) {
        rollback_if_incoming(m);
        preload_log(LOG_ERR, "VFIO_IOMMU_MAP_DMA: %s",
                    cprkit_last_error(preload_ctx));
        return r;
    }
    preload_claim(&it);
    preload_maybe_commit();
    return 0;
}

int preload_unmap_dma(struct preload_container *c,
                      struct vfio_iommu_type1_dma_unmap *u)
{
    char name[64];
    int r;

    if (u->flags != 0) {
        preload_log(LOG_ERR,
                    "VFIO_IOMMU_UNMAP_DMA with flags 0x%x is not supported "
                    "under the shim",
                    u->flags);
        return -EINVAL;
    }
    if (preload_incoming) {
        preload_rollback("the new binary unmaps DMA at iova 0x%llx during its "
                         "initialisation",
                         (unsigned long long)u->iova);
        return -EBUSY;
    }
    preload_in_lib++;
    r = cprkit_vfio_dma_unmap(preload_ctx, c->fd, u->iova, u->size);
    if (r < 0)
        preload_log(LOG_ERR, "VFIO_IOMMU_UNMAP_DMA: %s",
                    cprkit_last_error(preload_ctx));
    /* The fd name cprkit_ram_open gives the memfd ("ram:" + the block
     * name, preserve/ram.c: the library has no definition to share). */
    snprintf(name, sizeof(name), "ram:preload-dma-%d-%llx", c->id,
             (unsigned long long)u->iova);
    if (r == 0) {
        /* The memfd stays mapped at the program's address; it is just no
         * longer preserved. */
        int fd = cprkit_fd_find(preload_ctx, name, 0, CPRKIT_FD_ANY);

        if (fd >= 0 && cprkit_fd_remove(preload_ctx, name, 0) == 0)
            preload_real_close(fd);
    }
    preload_in_lib--;
    if (r < 0)
        return r;
    preload_record_remove(&(struct preload_item){.kind = PRELOAD_ITEM_DMA,
                                                 .a = (uint64_t)c->id,
                                                 .b = u->iova,
                                                 .c = u->size});
    return 0;
}
