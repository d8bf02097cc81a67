/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "nvme.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int wait_ready(struct nvme_ctrl *c, bool ready)
{
    uint64_t deadline = now_ms() + (uint64_t)c->timeout_ms;
    const struct timespec tick = { .tv_nsec = 1000000 };

    for (;;) {
        uint32_t csts = bar_read32(&c->bar, NVME_REG_CSTS);

        if (csts == UINT32_MAX)
            return -EIO;
        if (csts & NVME_CSTS_CFS)
            return -EIO;
        if (!!(csts & NVME_CSTS_RDY) == ready)
            return 0;
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        nanosleep(&tick, NULL);
    }
}

int nvme_ctrl_init(struct nvme_ctrl *c, int device)
{
    int r;

    memset(c, 0, sizeof(*c));
    c->memfd = -1;
    r = pci_enable_bus_master(device);
    if (r < 0)
        return r;
    r = vfio_bar_open(device, VFIO_PCI_BAR0_REGION_INDEX, &c->bar);
    if (r < 0)
        return r;
    c->cap = bar_read64(&c->bar, NVME_REG_CAP);
    c->doorbell_stride = 4u << ((c->cap >> 32) & 0xf);
    /* CAP.TO is in 500 ms units; add slack for a slow TCG guest. */
    c->timeout_ms = (int)((c->cap >> 24) & 0xff) * 500 + 2000;
    return 0;
}

int nvme_disable(struct nvme_ctrl *c)
{
    uint32_t cc = bar_read32(&c->bar, NVME_REG_CC);

    bar_write32(&c->bar, NVME_REG_CC, cc & ~NVME_CC_EN);
    return wait_ready(c, false);
}

int nvme_admin_queues_setup(struct nvme_ctrl *c, int container, uint64_t iova)
{
    void *mem;
    int fd, r;

    r = memfd_buffer("nvme-admin", NVME_MEM_SIZE, &fd, &mem);
    if (r < 0)
        return r;
    r = vfio_dma_map(container, iova, mem, NVME_MEM_SIZE);
    if (r < 0) {
        munmap(mem, NVME_MEM_SIZE);
        close(fd);
        return r;
    }
    c->memfd = fd;
    c->mem = mem;
    c->iova = iova;
    c->sq_tail = 0;
    c->cq_head = 0;
    c->phase = 1; /* the controller writes phase 1 on its first pass */

    bar_write32(&c->bar, NVME_REG_AQA,
                (NVME_QUEUE_DEPTH - 1) << 16 | (NVME_QUEUE_DEPTH - 1));
    bar_write64(&c->bar, NVME_REG_ASQ, iova + NVME_MEM_SQ);
    bar_write64(&c->bar, NVME_REG_ACQ, iova + NVME_MEM_CQ);
    return 0;
}

int nvme_enable(struct nvme_ctrl *c)
{
    /* IOCQES = 4 (16 B), IOSQES = 6 (64 B), MPS = 0 (4 KiB), NVM commands. */
    bar_write32(&c->bar, NVME_REG_CC, 4u << 20 | 6u << 16 | NVME_CC_EN);
    return wait_ready(c, true);
}

void nvme_admin_submit(struct nvme_ctrl *c, const struct nvme_sqe *sqe)
{
    struct nvme_sqe *sq = (struct nvme_sqe *)(c->mem + NVME_MEM_SQ);

    sq[c->sq_tail] = *sqe;
    c->sq_tail = (c->sq_tail + 1) % NVME_QUEUE_DEPTH;
    /* The SQE must be in memory before the device sees the doorbell. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bar_write32(&c->bar, NVME_REG_DOORBELL, c->sq_tail); /* SQ0 tail */
}

int nvme_admin_reap(struct nvme_ctrl *c, struct nvme_cqe *ret)
{
    volatile struct nvme_cqe *cq =
        (volatile struct nvme_cqe *)(c->mem + NVME_MEM_CQ);
    struct nvme_cqe cqe;

    if ((cq[c->cq_head].status & 1) != c->phase)
        return 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(&cqe, (const void *)&cq[c->cq_head], sizeof(cqe));
    c->cq_head = (c->cq_head + 1) % NVME_QUEUE_DEPTH;
    if (c->cq_head == 0)
        c->phase ^= 1;
    /* CQ0 head doorbell follows the SQ0 tail doorbell. */
    bar_write32(&c->bar, NVME_REG_DOORBELL + c->doorbell_stride, c->cq_head);
    *ret = cqe;
    return 1;
}

void nvme_ctrl_fini(struct nvme_ctrl *c, int container)
{
    if (c->bar.size)
        nvme_disable(c);
    if (c->mem) {
        vfio_dma_unmap(container, c->iova, NVME_MEM_SIZE);
        munmap(c->mem, NVME_MEM_SIZE);
        c->mem = NULL;
    }
    if (c->memfd >= 0)
        close(c->memfd);
    c->memfd = -1;
    vfio_bar_close(&c->bar);
}
