/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Just enough NVMe to drive the admin queue of QEMU's nvme device: reset
 * and enable the controller, submit an admin command, reap its completion.
 */
#pragma once

#include <stdint.h>

#include "vfio-util.h"

#define NVME_REG_CAP 0x00
#define NVME_REG_VS 0x08
#define NVME_REG_CC 0x14
#define NVME_REG_CSTS 0x1c
#define NVME_REG_AQA 0x24
#define NVME_REG_ASQ 0x28
#define NVME_REG_ACQ 0x30
#define NVME_REG_DOORBELL 0x1000 /* SQ0 tail; CQ0 head one stride later */

#define NVME_CC_EN 0x1
#define NVME_CSTS_RDY 0x1
#define NVME_CSTS_CFS 0x2

#define NVME_ADMIN_CREATE_SQ 0x01
#define NVME_ADMIN_CREATE_CQ 0x05
#define NVME_ADMIN_IDENTIFY 0x06
#define NVME_ADMIN_GET_FEATURES 0x0a
#define NVME_IDENTIFY_CNS_NS 0
#define NVME_IDENTIFY_CNS_CTRL 1
#define NVME_FEAT_NUM_QUEUES 0x07

/* NVM command set (I/O queues). */
#define NVME_CMD_WRITE 0x01
#define NVME_CMD_READ 0x02

#define NVME_QUEUE_DEPTH 16

/* Layout of the DMA buffer: one 4 KiB page each. */
#define NVME_MEM_SQ 0x0000
#define NVME_MEM_CQ 0x1000
#define NVME_MEM_DATA 0x2000
#define NVME_MEM_SIZE 0x3000

struct nvme_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t cid;
    uint32_t nsid;
    uint64_t rsvd;
    uint64_t mptr;
    uint64_t prp1;
    uint64_t prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_cqe {
    uint32_t result;
    uint32_t rsvd;
    uint16_t sq_head;
    uint16_t sq_id;
    uint16_t cid;
    uint16_t status; /* bit 0: phase tag; bits 15:1: status field */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "NVMe SQE is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "NVMe CQE is 16 bytes");

struct nvme_ctrl {
    struct vfio_bar bar;
    uint64_t cap;
    unsigned doorbell_stride;   /* bytes between doorbells */
    int timeout_ms;             /* CAP.TO */
    int memfd;
    uint8_t *mem;               /* NVME_MEM_SIZE bytes, DMA-mapped at iova */
    uint64_t iova;
    uint16_t sq_tail;
    uint16_t cq_head;
    uint16_t phase;
};

/* Map BAR0, read CAP, enable bus mastering. Does not touch CC. */
int nvme_ctrl_init(struct nvme_ctrl *c, int device);

/* CC.EN = 0 and wait for CSTS.RDY = 0. */
int nvme_disable(struct nvme_ctrl *c);

/*
 * Allocate the admin queues in a memfd, DMA-map it at @iova in @container,
 * program AQA/ASQ/ACQ. The controller must be disabled.
 */
int nvme_admin_queues_setup(struct nvme_ctrl *c, int container, uint64_t iova);

/* CC.EN = 1 (4 KiB pages, standard SQE/CQE sizes), wait for CSTS.RDY = 1. */
int nvme_enable(struct nvme_ctrl *c);

/* Put @sqe in the admin SQ and ring the doorbell. */
void nvme_admin_submit(struct nvme_ctrl *c, const struct nvme_sqe *sqe);

/*
 * Take the next admin completion if its phase tag says it is new: 1 and the
 * CQE in *ret, 0 if none yet. Rings the CQ head doorbell.
 */
int nvme_admin_reap(struct nvme_ctrl *c, struct nvme_cqe *ret);

/* Disable the controller, unmap and free the queues. */
void nvme_ctrl_fini(struct nvme_ctrl *c, int container);
