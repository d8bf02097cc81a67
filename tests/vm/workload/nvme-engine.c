/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A minimal userspace NVMe driver: admin queue, one I/O queue pair, MSI-X
 * (vector 0 admin, vector 1 I/O), WRITE and READ of 4 KiB pages with
 * patterns unique per run and update, to namespace 1.
 *
 * What an update must not disturb, and how it is shown: the controller is
 * set up once, by the first image. Later images reclaim the device fd
 * (never closed, so vfio-pci never resets it), the same queue memory
 * (cprkit_ram_open + cprkit_vfio_dma_map, which remaps by VADDR) and the
 * MSI-X eventfds, and continue the queues from the head/tail/phase state
 * carried in the application section: no admin re-setup. CSTS.RDY = 1 and
 * CC/AQA/ASQ/ACQ as programmed prove no reset; commands issued before the
 * exec complete while no driver runs and are reaped, every one, after.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nvme.h"
#include "workload.h"

#define NQ_DEPTH 16
#define PG 4096u
/* Queue memory (one memfd, one DMA mapping). */
#define QMEM_ASQ 0x0000
#define QMEM_ACQ 0x1000
#define QMEM_IOSQ 0x2000
#define QMEM_IOCQ 0x3000
#define QMEM_ADMIN_DATA 0x4000
#define QMEM_SIZE 0x5000ul
/* Data memory (a second memfd and mapping), in pages. */
#define DMEM_PAGES 16
#define PG_SERVE_W 0     /* 2 pages: written by a service round */
#define PG_SERVE_R 2     /* 2 pages: read back */
#define PG_INFL_R 4      /* 2 pages: READ in flight across the update */
#define PG_INFL_W 8      /* 4 pages: WRITE in flight across the update */
#define PG_CHECK 12      /* 4 pages: read back of the in-flight writes */
#define SERVE_PAGES 2
#define INFL_READS 2
#define INFL_WRITES 4
/* Disk layout, in 4 KiB slots: service rounds, then in-flight writes. */
#define SLOT_SERVE(tag) (((tag) % 512) * SERVE_PAGES)
#define SLOT_INFL(gen) (2048 + ((gen) % 256) * INFL_WRITES)

enum { VEC_ADMIN = 0, VEC_IO = 1, NVEC };

struct nvme_queue {
    uint16_t qid;
    uint16_t sq_tail;
    uint16_t cq_head;
    uint16_t phase;
    uint32_t sq_off, cq_off; /* in queue memory */
};

struct nvme_cmd {
    uint16_t cid;
    uint8_t opcode;
    uint8_t page;     /* data page */
    uint32_t slot;    /* disk slot */
};

#define NVME_STATE_VERSION 1
struct nvme_state {
    uint32_t version;
    uint32_t lba_shift;
    uint64_t nsze;
    struct nvme_queue admin, io;
    uint32_t cc, aqa;        /* as programmed: a reset would clear CC */
    uint64_t asq, acq;
    uint16_t next_cid;
    uint16_t n_inflight;
    struct nvme_cmd inflight[INFL_READS + INFL_WRITES];
    uint64_t inflight_gen;
    uint16_t done_at_exec;   /* of those, completed when we last looked */
    uint16_t pad[3];
    uint64_t serve_tag;      /* last service round: what the reads expect */
    uint64_t rounds;
    uint64_t submitted, completed;
    uint64_t irqs_seen[NVEC];
};

struct nvme {
    int efd[NVEC];
    uint8_t *qmem, *dmem;
    uint64_t qiova, diova;
    unsigned db_stride;
    uint32_t last_result;    /* dword 0 of the last completion */
    struct nvme_state st;
};

static struct nvme *nvme_of(struct engine *e)
{
    return e->priv;
}

static uint64_t sq_doorbell(const struct nvme *n, uint16_t qid)
{
    return NVME_REG_DOORBELL + (2u * qid) * n->db_stride;
}

static uint64_t cq_doorbell(const struct nvme *n, uint16_t qid)
{
    return NVME_REG_DOORBELL + (2u * qid + 1) * n->db_stride;
}

static uint16_t nvme_submit(struct engine *e, struct nvme_queue *q,
                            struct nvme_sqe *sqe)
{
    struct nvme *n = nvme_of(e);
    struct nvme_sqe *sq = (struct nvme_sqe *)(n->qmem + q->sq_off);

    sqe->cid = n->st.next_cid++;
    sq[q->sq_tail] = *sqe;
    q->sq_tail = (q->sq_tail + 1) % NQ_DEPTH;
    /* The SQE must be in memory before the controller sees the doorbell. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bar_write32(&e->bar, sq_doorbell(n, q->qid), q->sq_tail);
    n->st.submitted++;
    return sqe->cid;
}

/* 1 and the CQE if a new one is there (phase tag), else 0. */
static int nvme_reap(struct engine *e, struct nvme_queue *q,
                     struct nvme_cqe *ret)
{
    struct nvme *n = nvme_of(e);
    volatile struct nvme_cqe *cq =
        (volatile struct nvme_cqe *)(n->qmem + q->cq_off);

    if ((cq[q->cq_head].status & 1) != q->phase)
        return 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(ret, (const void *)&cq[q->cq_head], sizeof(*ret));
    q->cq_head = (q->cq_head + 1) % NQ_DEPTH;
    if (q->cq_head == 0)
        q->phase ^= 1;
    bar_write32(&e->bar, cq_doorbell(n, q->qid), q->cq_head);
    n->st.completed++;
    return 1;
}

/* Completions posted in @q and not reaped yet, without consuming them. */
static unsigned nvme_cq_pending(struct engine *e, const struct nvme_queue *q)
{
    const volatile struct nvme_cqe *cq =
        (const volatile void *)(nvme_of(e)->qmem + q->cq_off);
    unsigned head = q->cq_head, phase = q->phase, n = 0;

    while (n < NQ_DEPTH && (cq[head].status & 1) == phase) {
        n++;
        head = (head + 1) % NQ_DEPTH;
        if (head == 0)
            phase ^= 1;
    }
    return n;
}

/*
 * Reap completions of @q until every command in @cids[0..count) has
 * completed, sleeping on the queue's MSI-X eventfd in between. Writes the
 * worst status; counts interrupts. A completion for a command we did not
 * submit is an error. *ret_first (may be NULL): when the first completion
 * was taken.
 */
static int nvme_wait(struct engine *e, struct nvme_queue *q, int vec,
                     const uint16_t *cids, unsigned count, uint64_t *ret_irqs,
                     uint64_t *ret_first)
{
    struct nvme *n = nvme_of(e);
    bool done[32] = {0};
    unsigned left = count;
    uint16_t worst = 0;
    uint64_t deadline = now_ms() + EVENT_TIMEOUT_MS, irqs = 0, c;
    struct nvme_cqe cqe;
    int r;

    while (left) {
        while (left && nvme_reap(e, q, &cqe) == 1) {
            unsigned i;

            if (ret_first && !*ret_first)
                *ret_first = mono_ns();
            for (i = 0; i < count; i++)
                if (cids[i] == cqe.cid && !done[i])
                    break;
            if (i == count)
                return -EPROTO;
            done[i] = true;
            left--;
            n->last_result = cqe.result;
            if ((cqe.status >> 1) > worst)
                worst = cqe.status >> 1;
        }
        if (!left)
            break;
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        r = eventfd_wait(n->efd[vec], 100, &c);
        if (r == 0)
            irqs += c;
        else if (r != -ETIMEDOUT)
            return r;
    }
    /* Interrupts of completions that were posted before we looked wait in
     * the eventfd: take them too (after an update, all of them). */
    if (eventfd_drain(n->efd[vec], &c) == 0)
        irqs += c;
    n->st.irqs_seen[vec] += irqs;
    if (ret_irqs)
        *ret_irqs = irqs;
    return worst ? -EIO : 0;
}

static int nvme_admin(struct engine *e, struct nvme_sqe *sqe,
                      struct nvme_cqe *ret)
{
    struct nvme *n = nvme_of(e);
    uint16_t cid = nvme_submit(e, &n->st.admin, sqe);
    int r;

    r = nvme_wait(e, &n->st.admin, VEC_ADMIN, &cid, 1, NULL, NULL);
    if (ret)
        ret->result = n->last_result;
    return r;
}

/* One 4 KiB READ or WRITE between data page @page and disk slot @slot. */
static uint16_t nvme_rw(struct engine *e, uint8_t opcode, unsigned page,
                        uint64_t slot)
{
    struct nvme *n = nvme_of(e);
    uint64_t lba = slot * (PG >> n->st.lba_shift);
    struct nvme_sqe sqe = {
        .opcode = opcode,
        .nsid = 1,
        .prp1 = n->diova + (uint64_t)page * PG,
        .cdw10 = (uint32_t)lba,
        .cdw11 = (uint32_t)(lba >> 32),
        .cdw12 = (PG >> n->st.lba_shift) - 1, /* 0's based block count */
    };

    return nvme_submit(e, &n->st.io, &sqe);
}

static void nvme_serve(struct workload *w, struct engine *e, unsigned rounds)
{
    struct nvme *n = nvme_of(e);

    for (unsigned i = 0; i < rounds; i++) {
        uint64_t tag = ++n->st.rounds, slot = SLOT_SERVE(tag);
        uint16_t cids[SERVE_PAGES];
        long bad = -1;
        int r;

        for (unsigned p = 0; p < SERVE_PAGES; p++) {
            pattern_fill(n->dmem + (PG_SERVE_W + p) * PG, PG, w->nonce,
                         tag, 16 + p);
            cids[p] = nvme_rw(e, NVME_CMD_WRITE, PG_SERVE_W + p, slot + p);
        }
        r = nvme_wait(e, &n->st.io, VEC_IO, cids, SERVE_PAGES, NULL, NULL);
        memset(n->dmem + PG_SERVE_R * PG, 0, SERVE_PAGES * PG);
        for (unsigned p = 0; r == 0 && p < SERVE_PAGES; p++)
            cids[p] = nvme_rw(e, NVME_CMD_READ, PG_SERVE_R + p, slot + p);
        if (r == 0)
            r = nvme_wait(e, &n->st.io, VEC_IO, cids, SERVE_PAGES, NULL,
                          NULL);
        for (unsigned p = 0; r == 0 && bad < 0 && p < SERVE_PAGES; p++)
            bad = pattern_check(n->dmem + (PG_SERVE_R + p) * PG, PG,
                                w->nonce, tag, 16 + p);
        if (check(r == 0 && bad < 0, "%s: WRITE + READ of %u pages at slot "
                  "%llu intact (%d, first bad byte %ld)", e->name,
                  SERVE_PAGES, (unsigned long long)slot, r, bad))
            n->st.serve_tag = tag;
    }
    check(n->st.completed == n->st.submitted,
          "%s: every command completed exactly once (%llu submitted, %llu "
          "completed, %llu + %llu interrupts)", e->name,
          (unsigned long long)n->st.submitted,
          (unsigned long long)n->st.completed,
          (unsigned long long)n->st.irqs_seen[VEC_ADMIN],
          (unsigned long long)n->st.irqs_seen[VEC_IO]);
}

static void nvme_start_inflight(struct workload *w, struct engine *e)
{
    struct nvme *n = nvme_of(e);
    uint64_t slot = SLOT_INFL(w->generation), c;
    unsigned k = 0;

    /*
     * MSI-X delivery trails the CQE a little: take the interrupts of what
     * was already reaped now, so the eventfd holds only those of the
     * commands below when the next image looks.
     */
    while (eventfd_wait(n->efd[VEC_IO], 20, &c) == 0)
        n->st.irqs_seen[VEC_IO] += c;

    memset(n->dmem + PG_INFL_R * PG, 0, INFL_READS * PG);
    for (unsigned p = 0; p < INFL_WRITES; p++)
        pattern_fill(n->dmem + (PG_INFL_W + p) * PG, PG, w->nonce,
                     0x10000 + w->generation, 32 + p);
    n->st.inflight_gen = w->generation;
    /* READs of the last service round land in RAM while no driver runs;
     * WRITEs take their data from RAM meanwhile. */
    for (unsigned p = 0; p < INFL_READS; p++, k++) {
        n->st.inflight[k].opcode = NVME_CMD_READ;
        n->st.inflight[k].page = (uint8_t)(PG_INFL_R + p);
        n->st.inflight[k].slot = (uint32_t)(SLOT_SERVE(n->st.serve_tag) + p);
    }
    for (unsigned p = 0; p < INFL_WRITES; p++, k++) {
        n->st.inflight[k].opcode = NVME_CMD_WRITE;
        n->st.inflight[k].page = (uint8_t)(PG_INFL_W + p);
        n->st.inflight[k].slot = (uint32_t)(slot + p);
    }
    for (unsigned i = 0; i < k; i++)
        n->st.inflight[i].cid = nvme_rw(e, n->st.inflight[i].opcode,
                                        n->st.inflight[i].page,
                                        n->st.inflight[i].slot);
    n->st.n_inflight = (uint16_t)k;
    n->st.done_at_exec = 0;
}

static void nvme_check_untouched(struct workload *w, struct engine *e)
{
    struct nvme *n = nvme_of(e);
    uint32_t csts = bar_read32(&e->bar, NVME_REG_CSTS);
    uint32_t cc = bar_read32(&e->bar, NVME_REG_CC);
    uint32_t aqa = bar_read32(&e->bar, NVME_REG_AQA);
    uint64_t asq = bar_read64(&e->bar, NVME_REG_ASQ);
    uint64_t acq = bar_read64(&e->bar, NVME_REG_ACQ);
    uint16_t cmd = 0;

    pci_config_read(e->device, 0x04, &cmd, sizeof(cmd));
    check((csts & (NVME_CSTS_RDY | NVME_CSTS_CFS)) == NVME_CSTS_RDY,
          "%s: no reset: CSTS.RDY stayed 1 (CSTS 0x%x)", e->name, csts);
    check(cc == n->st.cc && aqa == n->st.aqa && asq == n->st.asq &&
              acq == n->st.acq && (cmd & 0x4),
          "%s: controller configuration as programmed (CC 0x%x AQA 0x%x "
          "ASQ 0x%llx ACQ 0x%llx, bus master %s)", e->name, cc, aqa,
          (unsigned long long)asq, (unsigned long long)acq,
          cmd & 0x4 ? "on" : "OFF");
}

static void nvme_finish_inflight(struct workload *w, struct engine *e,
                                 struct blackout *ret)
{
    struct nvme *n = nvme_of(e);
    struct nvme_sqe get_features = {
        .opcode = NVME_ADMIN_GET_FEATURES,
        .cdw10 = NVME_FEAT_NUM_QUEUES,
    };
    uint16_t cids[INFL_READS + INFL_WRITES];
    uint64_t irqs = 0, first = 0;
    struct nvme_cqe cqe;
    unsigned count = n->st.n_inflight;
    long bad = -1;
    int r;

    if (!count)
        return;
    for (unsigned i = 0; i < count; i++)
        cids[i] = n->st.inflight[i].cid;
    r = nvme_wait(e, &n->st.io, VEC_IO, cids, count, &irqs, &first);
    ret->first_service_ns = first;
    ret->irqs += irqs;
    check(r == 0, "%s: all %u commands in flight across the update "
          "completed, successfully (%d), %llu interrupt(s) waiting",
          e->name, count, r, (unsigned long long)irqs);
    check(irqs >= 1, "%s: their completion interrupts were not lost",
          e->name);
    /* I/O is throttled in the test VM (run-vm) so that commands issued
     * right before the exec are still running when it happens. */
    check(n->st.done_at_exec < count, "%s: %u of %u commands completed "
          "while no driver ran", e->name, count - n->st.done_at_exec, count);
    if (r == 0)
        ret->completions += count - n->st.done_at_exec;
    n->st.n_inflight = 0;

    for (unsigned p = 0; p < INFL_READS && bad < 0; p++)
        bad = pattern_check(n->dmem + (PG_INFL_R + p) * PG, PG, w->nonce,
                            n->st.serve_tag, 16 + p);
    if (check(r == 0 && bad < 0, "%s: data READ while away is intact "
              "(first bad byte %ld)", e->name, bad))
        ret->dma_bytes += (count - n->st.done_at_exec) * PG;

    /* The WRITEs took their data from RAM while away: read them back. */
    memset(n->dmem + PG_CHECK * PG, 0, INFL_WRITES * PG);
    for (unsigned p = 0; p < INFL_WRITES; p++)
        cids[p] = nvme_rw(e, NVME_CMD_READ, PG_CHECK + p,
                          SLOT_INFL(n->st.inflight_gen) + p);
    r = nvme_wait(e, &n->st.io, VEC_IO, cids, INFL_WRITES, NULL, NULL);
    bad = -1;
    for (unsigned p = 0; r == 0 && p < INFL_WRITES && bad < 0; p++)
        bad = pattern_check(n->dmem + (PG_CHECK + p) * PG, PG, w->nonce,
                            0x10000 + n->st.inflight_gen, 32 + p);
    check(r == 0 && bad < 0, "%s: data WRITTEN while away reads back "
          "intact (%d, first bad byte %ld)", e->name, r, bad);

    /* The admin queue goes on where it was: no re-setup. */
    r = nvme_admin(e, &get_features, &cqe);
    check(r == 0 && cqe.result != 0, "%s: admin queue continues (GET "
          "FEATURES number of queues: %d, 0x%x)", e->name, r, cqe.result);
}

static int nvme_save(struct workload *w, struct engine *e)
{
    struct nvme *n = nvme_of(e);

    /* The last look before the exec: what completes later, completes
     * while no driver runs. */
    if (n->st.n_inflight)
        n->st.done_at_exec = (uint16_t)nvme_cq_pending(e, &n->st.io);
    return cprkit_section_put(w->ctx, e->name, &nvme_of(e)->st,
                              sizeof(nvme_of(e)->st));
}

static int nvme_wait_ready(struct engine *e, bool ready, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        uint32_t csts = bar_read32(&e->bar, NVME_REG_CSTS);

        if (csts == UINT32_MAX || (csts & NVME_CSTS_CFS))
            return -EIO;
        if (!!(csts & NVME_CSTS_RDY) == ready)
            return 0;
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        usleep(1000);
    }
}

/* First start only: the controller from reset to an I/O queue pair. */
static int nvme_controller_setup(struct workload *w, struct engine *e)
{
    struct nvme *n = nvme_of(e);
    struct nvme_state *st = &n->st;
    uint64_t cap = bar_read64(&e->bar, NVME_REG_CAP);
    int timeout_ms = (int)((cap >> 24) & 0xff) * 500 + 2000;
    const uint8_t *id = n->qmem + QMEM_ADMIN_DATA;
    struct nvme_sqe sqe;
    int r;

    bar_write32(&e->bar, NVME_REG_CC, 0);
    r = nvme_wait_ready(e, false, timeout_ms);
    if (r < 0)
        return r;
    st->admin = (struct nvme_queue){ .qid = 0, .phase = 1,
                                     .sq_off = QMEM_ASQ, .cq_off = QMEM_ACQ };
    st->io = (struct nvme_queue){ .qid = 1, .phase = 1,
                                  .sq_off = QMEM_IOSQ, .cq_off = QMEM_IOCQ };
    st->next_cid = 1;
    st->aqa = (NQ_DEPTH - 1) << 16 | (NQ_DEPTH - 1);
    st->asq = n->qiova + QMEM_ASQ;
    st->acq = n->qiova + QMEM_ACQ;
    bar_write32(&e->bar, NVME_REG_AQA, st->aqa);
    bar_write64(&e->bar, NVME_REG_ASQ, st->asq);
    bar_write64(&e->bar, NVME_REG_ACQ, st->acq);
    /* MSI-X is already enabled: QEMU's nvme binds the admin CQ to its
     * vector only if so when the controller starts. */
    st->cc = 4u << 20 | 6u << 16 | NVME_CC_EN; /* CQE 16 B, SQE 64 B, 4K */
    bar_write32(&e->bar, NVME_REG_CC, st->cc);
    r = nvme_wait_ready(e, true, timeout_ms);
    if (r < 0)
        return r;

    sqe = (struct nvme_sqe){ .opcode = NVME_ADMIN_IDENTIFY, .nsid = 1,
                             .prp1 = n->qiova + QMEM_ADMIN_DATA,
                             .cdw10 = NVME_IDENTIFY_CNS_NS };
    r = nvme_admin(e, &sqe, NULL);
    if (r < 0)
        return r;
    memcpy(&st->nsze, id, sizeof(st->nsze));
    st->lba_shift = id[128 + 4 * (id[26] & 0xf) + 2]; /* LBAF[FLBAS].LBADS */
    if (st->lba_shift < 9 || st->lba_shift > 12 ||
        st->nsze << st->lba_shift < (SLOT_INFL(255) + INFL_WRITES) * PG)
        return -ERANGE;

    sqe = (struct nvme_sqe){ .opcode = NVME_ADMIN_CREATE_CQ,
                             .prp1 = n->qiova + QMEM_IOCQ,
                             .cdw10 = (NQ_DEPTH - 1) << 16 | 1,
                             /* vector 1, interrupts on, contiguous */
                             .cdw11 = (uint32_t)VEC_IO << 16 | 0x2 | 0x1 };
    r = nvme_admin(e, &sqe, NULL);
    if (r < 0)
        return r;
    sqe = (struct nvme_sqe){ .opcode = NVME_ADMIN_CREATE_SQ,
                             .prp1 = n->qiova + QMEM_IOSQ,
                             .cdw10 = (NQ_DEPTH - 1) << 16 | 1,
                             .cdw11 = 1u << 16 | 0x1 /* CQ 1, contiguous */ };
    return nvme_admin(e, &sqe, NULL);
}

static int nvme_open(struct workload *w, struct engine *e)
{
    struct nvme *n = calloc(1, sizeof(*n));
    void *mem;
    int r;

    if (!n)
        return -ENOMEM;
    e->priv = n;
    e->vendor = NVME_VENDOR;
    e->device_id = NVME_DEVICE;
    n->qiova = WL_IOVA_BASE(e);
    n->diova = WL_IOVA_BASE(e) + 0x100000;

    r = wl_open_device(w, e);
    if (r < 0)
        return r;
    if (e->device >= 0)
        n->db_stride = 4u << ((bar_read64(&e->bar, NVME_REG_CAP) >> 32) & 0xf);
    if (e->reclaimed) {
        r = wl_section_load(w, e, &n->st, sizeof(n->st), NVME_STATE_VERSION);
        if (r < 0)
            return r;
    } else {
        n->st.version = NVME_STATE_VERSION;
        /* What any driver does on a fresh start; skipped on reclaim. */
        r = cprkit_vfio_device_reset(w->ctx, e->device);
        if (r < 0)
            return r;
        r = pci_enable_bus_master(e->device);
        if (r < 0)
            return r;
    }

    r = wl_ram(w, "nvme-queues", QMEM_SIZE, &mem);
    if (r < 0)
        return r;
    n->qmem = mem;
    r = wl_ram(w, "nvme-data", DMEM_PAGES * PG, &mem);
    if (r < 0)
        return r;
    n->dmem = mem;
    r = wl_dma_map(w, e, n->qiova, QMEM_SIZE, n->qmem);
    if (r < 0)
        return r;
    r = wl_dma_map(w, e, n->diova, DMEM_PAGES * PG, n->dmem);
    if (r < 0)
        return r;
    if (e->device < 0)
        return 0; /* forgotten: see wl_forgets_device() */
    r = cprkit_vfio_irq_enable(w->ctx, e->device, VFIO_PCI_MSIX_IRQ_INDEX,
                               NVEC, n->efd);
    if (r < 0)
        return r;
    if (!e->reclaimed)
        return nvme_controller_setup(w, e);
    return 0;
}

const struct engine_ops nvme_ops = {
    .kind = "nvme",
    .open = nvme_open,
    .check_untouched = nvme_check_untouched,
    .serve = nvme_serve,
    .start_inflight = nvme_start_inflight,
    .finish_inflight = nvme_finish_inflight,
    .save = nvme_save,
};
