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
#include <poll.h>
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
    /* Commands submitted to / completions consumed from this queue since
     * the controller was set up: one 64-bit store each, from which tail,
     * head and phase above follow (a crash restart recomputes them). */
    uint64_t sq_seq, cq_seq;
};

/* Every command from submission to the consumption of its CQE, by cid. */
#define NVME_OUT 64
struct nvme_out {
    uint16_t cid;
    uint8_t qid;
    uint8_t opcode;
    uint32_t pad;
    uint64_t done;     /* cq_seq + 1 of its CQE once consumed, else 0 */
};

struct nvme_cmd {
    uint16_t cid;
    uint8_t opcode;
    uint8_t page;     /* data page */
    uint32_t slot;    /* disk slot */
};

#define NVME_STATE_VERSION 2
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
    uint32_t irq_reading[NVEC]; /* between an eventfd read and its record */
    struct nvme_out out[NVME_OUT];
};

struct nvme {
    int efd[NVEC];
    uint8_t *qmem, *dmem;
    uint64_t qiova, diova;
    unsigned db_stride;
    uint32_t last_result;    /* dword 0 of the last completion */
    /* In RAM block "nvme-state", written as the engine works, so that a
     * kill at any instruction leaves what recover() reconciles: a command
     * is in out[] before the SQ tail moves, the tail moves before the
     * doorbell; a CQE is marked consumed before the head moves, the head
     * before the doorbell; an eventfd count is recorded right after the
     * read, which is flagged while it runs. */
    struct nvme_state *st;
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
    uint16_t cid = n->st->next_cid;
    struct nvme_out *o = &n->st->out[cid % NVME_OUT];

    *o = (struct nvme_out){ .cid = cid, .qid = (uint8_t)q->qid,
                            .opcode = sqe->opcode };
    n->st->next_cid = (uint16_t)(cid + 1);
    sqe->cid = cid;
    sq[q->sq_tail] = *sqe;
    /* The SQE must be in memory before the controller sees the doorbell. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&q->sq_seq, q->sq_seq + 1, __ATOMIC_SEQ_CST);
    q->sq_tail = (uint16_t)(q->sq_seq % NQ_DEPTH);
    n->st->submitted++;
    bar_write32(&e->bar, sq_doorbell(n, q->qid), q->sq_tail);
    return cid;
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
    if (n->st->out[ret->cid % NVME_OUT].cid == ret->cid)
        n->st->out[ret->cid % NVME_OUT].done = q->cq_seq + 1;
    __atomic_store_n(&q->cq_seq, q->cq_seq + 1, __ATOMIC_SEQ_CST);
    q->cq_head = (uint16_t)(q->cq_seq % NQ_DEPTH);
    q->phase = (uint16_t)(1 ^ ((q->cq_seq / NQ_DEPTH) & 1));
    n->st->completed++;
    bar_write32(&e->bar, cq_doorbell(n, q->qid), q->cq_head);
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
 * Wait up to @timeout_ms for the MSI-X eventfd of @vec, take its count and
 * record it: -ETIMEDOUT if nothing came. The read is flagged in the state
 * while it runs (a kill between read and record is then known).
 */
static int nvme_irq_take(struct nvme *n, int vec, int timeout_ms,
                         uint64_t *ret)
{
    struct pollfd p = { .fd = n->efd[vec], .events = POLLIN };
    int r;

    *ret = 0;
    if (timeout_ms) {
        r = poll(&p, 1, timeout_ms);
        if (r < 0)
            return errno == EINTR ? -ETIMEDOUT : -errno;
        if (r == 0)
            return -ETIMEDOUT;
    }
    __atomic_store_n(&n->st->irq_reading[vec], 1, __ATOMIC_SEQ_CST);
    r = eventfd_drain(n->efd[vec], ret);
    if (r == 0)
        n->st->irqs_seen[vec] += *ret;
    __atomic_store_n(&n->st->irq_reading[vec], 0, __ATOMIC_SEQ_CST);
    if (r == 0 && *ret == 0 && timeout_ms)
        return -ETIMEDOUT;
    return r;
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
        r = nvme_irq_take(n, vec, 100, &c);
        if (r == 0)
            irqs += c;
        else if (r != -ETIMEDOUT)
            return r;
    }
    /* Interrupts of completions that were posted before we looked wait in
     * the eventfd: take them too (after an update, all of them). */
    if (nvme_irq_take(n, vec, 0, &c) == 0)
        irqs += c;
    if (ret_irqs)
        *ret_irqs = irqs;
    return worst ? -EIO : 0;
}

static int nvme_admin(struct engine *e, struct nvme_sqe *sqe,
                      struct nvme_cqe *ret)
{
    struct nvme *n = nvme_of(e);
    uint16_t cid = nvme_submit(e, &n->st->admin, sqe);
    int r;

    r = nvme_wait(e, &n->st->admin, VEC_ADMIN, &cid, 1, NULL, NULL);
    if (ret)
        ret->result = n->last_result;
    return r;
}

/* One 4 KiB READ or WRITE between data page @page and disk slot @slot. */
static uint16_t nvme_rw(struct engine *e, uint8_t opcode, unsigned page,
                        uint64_t slot)
{
    struct nvme *n = nvme_of(e);
    uint64_t lba = slot * (PG >> n->st->lba_shift);
    struct nvme_sqe sqe = {
        .opcode = opcode,
        .nsid = 1,
        .prp1 = n->diova + (uint64_t)page * PG,
        .cdw10 = (uint32_t)lba,
        .cdw11 = (uint32_t)(lba >> 32),
        .cdw12 = (PG >> n->st->lba_shift) - 1, /* 0's based block count */
    };

    return nvme_submit(e, &n->st->io, &sqe);
}

static void nvme_serve(struct workload *w, struct engine *e, unsigned rounds)
{
    struct nvme *n = nvme_of(e);

    for (unsigned i = 0; i < rounds; i++) {
        uint64_t tag = ++n->st->rounds, slot = SLOT_SERVE(tag);
        uint16_t cids[SERVE_PAGES];
        long bad = -1;
        int r;

        for (unsigned p = 0; p < SERVE_PAGES; p++) {
            pattern_fill(n->dmem + (PG_SERVE_W + p) * PG, PG, w->nonce,
                         tag, 16 + p);
            cids[p] = nvme_rw(e, NVME_CMD_WRITE, PG_SERVE_W + p, slot + p);
        }
        r = nvme_wait(e, &n->st->io, VEC_IO, cids, SERVE_PAGES, NULL, NULL);
        memset(n->dmem + PG_SERVE_R * PG, 0, SERVE_PAGES * PG);
        for (unsigned p = 0; r == 0 && p < SERVE_PAGES; p++)
            cids[p] = nvme_rw(e, NVME_CMD_READ, PG_SERVE_R + p, slot + p);
        if (r == 0)
            r = nvme_wait(e, &n->st->io, VEC_IO, cids, SERVE_PAGES, NULL,
                          NULL);
        for (unsigned p = 0; r == 0 && bad < 0 && p < SERVE_PAGES; p++)
            bad = pattern_check(n->dmem + (PG_SERVE_R + p) * PG, PG,
                                w->nonce, tag, 16 + p);
        if (check(r == 0 && bad < 0, "%s: WRITE + READ of %u pages at slot "
                  "%llu intact (%d, first bad byte %ld)", e->name,
                  SERVE_PAGES, (unsigned long long)slot, r, bad))
            n->st->serve_tag = tag;
    }
    check(n->st->completed == n->st->submitted,
          "%s: every command completed exactly once (%llu submitted, %llu "
          "completed, %llu + %llu interrupts)", e->name,
          (unsigned long long)n->st->submitted,
          (unsigned long long)n->st->completed,
          (unsigned long long)n->st->irqs_seen[VEC_ADMIN],
          (unsigned long long)n->st->irqs_seen[VEC_IO]);
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
    while (nvme_irq_take(n, VEC_IO, 20, &c) == 0)
        ;

    memset(n->dmem + PG_INFL_R * PG, 0, INFL_READS * PG);
    for (unsigned p = 0; p < INFL_WRITES; p++)
        pattern_fill(n->dmem + (PG_INFL_W + p) * PG, PG, w->nonce,
                     0x10000 + w->generation, 32 + p);
    n->st->inflight_gen = w->generation;
    /* READs of the last service round land in RAM while no driver runs;
     * WRITEs take their data from RAM meanwhile. */
    for (unsigned p = 0; p < INFL_READS; p++, k++) {
        n->st->inflight[k].opcode = NVME_CMD_READ;
        n->st->inflight[k].page = (uint8_t)(PG_INFL_R + p);
        n->st->inflight[k].slot = (uint32_t)(SLOT_SERVE(n->st->serve_tag) + p);
    }
    for (unsigned p = 0; p < INFL_WRITES; p++, k++) {
        n->st->inflight[k].opcode = NVME_CMD_WRITE;
        n->st->inflight[k].page = (uint8_t)(PG_INFL_W + p);
        n->st->inflight[k].slot = (uint32_t)(slot + p);
    }
    /* Recorded before submitted: a cid of 0 is one not yet given. */
    for (unsigned i = 0; i < k; i++)
        n->st->inflight[i].cid = 0;
    n->st->done_at_exec = 0;
    n->st->n_inflight = (uint16_t)k;
    for (unsigned i = 0; i < k; i++)
        n->st->inflight[i].cid = nvme_rw(e, n->st->inflight[i].opcode,
                                        n->st->inflight[i].page,
                                        n->st->inflight[i].slot);
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
    check(cc == n->st->cc && aqa == n->st->aqa && asq == n->st->asq &&
              acq == n->st->acq && (cmd & 0x4),
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
    unsigned count = n->st->n_inflight;
    long bad = -1;
    int r;

    if (!count)
        return;
    for (unsigned i = 0; i < count; i++)
        cids[i] = n->st->inflight[i].cid;
    r = nvme_wait(e, &n->st->io, VEC_IO, cids, count, &irqs, &first);
    ret->first_service_ns = first;
    ret->irqs += irqs;
    check(r == 0, "%s: all %u commands in flight across the update "
          "completed, successfully (%d), %llu interrupt(s) waiting",
          e->name, count, r, (unsigned long long)irqs);
    check(irqs >= 1, "%s: their completion interrupts were not lost",
          e->name);
    /* I/O is throttled in the test VM (run-vm) so that commands issued
     * right before the exec are still running when it happens. */
    check(n->st->done_at_exec < count, "%s: %u of %u commands completed "
          "while no driver ran", e->name, count - n->st->done_at_exec, count);
    if (r == 0)
        ret->completions += count - n->st->done_at_exec;
    n->st->n_inflight = 0;

    for (unsigned p = 0; p < INFL_READS && bad < 0; p++)
        bad = pattern_check(n->dmem + (PG_INFL_R + p) * PG, PG, w->nonce,
                            n->st->serve_tag, 16 + p);
    if (check(r == 0 && bad < 0, "%s: data READ while away is intact "
              "(first bad byte %ld)", e->name, bad))
        ret->dma_bytes += (count - n->st->done_at_exec) * PG;

    /* The WRITEs took their data from RAM while away: read them back. */
    memset(n->dmem + PG_CHECK * PG, 0, INFL_WRITES * PG);
    for (unsigned p = 0; p < INFL_WRITES; p++)
        cids[p] = nvme_rw(e, NVME_CMD_READ, PG_CHECK + p,
                          SLOT_INFL(n->st->inflight_gen) + p);
    r = nvme_wait(e, &n->st->io, VEC_IO, cids, INFL_WRITES, NULL, NULL);
    bad = -1;
    for (unsigned p = 0; r == 0 && p < INFL_WRITES && bad < 0; p++)
        bad = pattern_check(n->dmem + (PG_CHECK + p) * PG, PG, w->nonce,
                            0x10000 + n->st->inflight_gen, 32 + p);
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
    if (n->st->n_inflight)
        n->st->done_at_exec = (uint16_t)nvme_cq_pending(e, &n->st->io);
    return cprkit_section_put(w->ctx, e->name, nvme_of(e)->st,
                              sizeof(*nvme_of(e)->st));
}

/* Read back @count pages at disk slot @slot into PG_CHECK: the first bad
 * byte, or -1 if all hold pattern (@tag, @sub + page). */
static long nvme_read_back(struct workload *w, struct engine *e,
                           uint64_t slot, unsigned count, uint64_t tag,
                           uint32_t sub, int *ret_r)
{
    struct nvme *n = nvme_of(e);
    uint16_t cids[INFL_WRITES];
    long bad = -1;

    memset(n->dmem + PG_CHECK * PG, 0, count * PG);
    for (unsigned p = 0; p < count; p++)
        cids[p] = nvme_rw(e, NVME_CMD_READ, PG_CHECK + p, slot + p);
    *ret_r = nvme_wait(e, &n->st->io, VEC_IO, cids, count, NULL, NULL);
    for (unsigned p = 0; *ret_r == 0 && p < count && bad < 0; p++)
        bad = pattern_check(n->dmem + (PG_CHECK + p) * PG, PG, w->nonce,
                            tag, sub + p);
    return bad;
}

/*
 * Crash restart: the state is as the dead image left it, to the
 * instruction. Queue positions follow from the sequence numbers; the
 * doorbells are rung again with them (a kill between moving the tail or
 * head and ringing loses nothing: the same value again is harmless); a CQE
 * the dead image consumed but did not step past is recognised by its
 * out[] mark; then every command submitted and not consumed is reaped,
 * each must be one we recorded, once, successful. The controller is not
 * touched otherwise.
 */
static void nvme_recover(struct workload *w, struct engine *e,
                         struct blackout *ret)
{
    struct nvme *n = nvme_of(e);
    struct nvme_state *st = n->st;
    struct nvme_queue *qs[2] = { &st->admin, &st->io };
    const int vecs[2] = { VEC_ADMIN, VEC_IO };
    struct nvme_sqe get_features = {
        .opcode = NVME_ADMIN_GET_FEATURES,
        .cdw10 = NVME_FEAT_NUM_QUEUES,
    };
    uint64_t waiting = 0, outstanding = 0, c, submitted, completed;
    unsigned reaped = 0, unknown = 0, failed = 0, stepped = 0;
    bool dead_read = st->irq_reading[VEC_ADMIN] || st->irq_reading[VEC_IO];
    bool timeout = false;
    struct nvme_cqe cqe;
    long bad;
    int r;

    nvme_check_untouched(w, e);
    for (int i = 0; i < 2; i++) {
        struct nvme_queue *q = qs[i];

        q->sq_tail = (uint16_t)(q->sq_seq % NQ_DEPTH);
        q->cq_head = (uint16_t)(q->cq_seq % NQ_DEPTH);
        q->phase = (uint16_t)(1 ^ ((q->cq_seq / NQ_DEPTH) & 1));
    }
    submitted = st->admin.sq_seq + st->io.sq_seq;
    completed = st->admin.cq_seq + st->io.cq_seq;
    if (submitted != st->submitted || completed != st->completed)
        note("%s: the dead image was between a queue step and its counter "
             "(%llu/%llu recorded, %llu/%llu by the queues)", e->name,
             (unsigned long long)st->submitted,
             (unsigned long long)st->completed,
             (unsigned long long)submitted, (unsigned long long)completed);
    st->submitted = submitted;
    st->completed = completed;
    st->irq_reading[VEC_ADMIN] = st->irq_reading[VEC_IO] = 0;

    for (int i = 0; i < 2; i++) {
        struct nvme_queue *q = qs[i];
        volatile struct nvme_cqe *cq =
            (volatile struct nvme_cqe *)(n->qmem + q->cq_off);
        uint64_t deadline = now_ms() + EVENT_TIMEOUT_MS, left;

        bar_write32(&e->bar, sq_doorbell(n, q->qid), q->sq_tail);
        bar_write32(&e->bar, cq_doorbell(n, q->qid), q->cq_head);
        if ((cq[q->cq_head].status & 1) == q->phase) {
            const struct nvme_out *o = &st->out[cq[q->cq_head].cid % NVME_OUT];

            if (o->cid == cq[q->cq_head].cid && o->qid == q->qid &&
                o->done == q->cq_seq + 1) {
                /* Consumed by the dead image, the head not stepped yet. */
                nvme_reap(e, q, &cqe);
                stepped++;
            }
        }
        left = q->sq_seq - q->cq_seq;
        outstanding += left;
        while (left) {
            if ((cq[q->cq_head].status & 1) == q->phase) {
                const struct nvme_out *o =
                    &st->out[cq[q->cq_head].cid % NVME_OUT];

                if (o->cid != cq[q->cq_head].cid || o->qid != q->qid ||
                    o->done)
                    unknown++;
                nvme_reap(e, q, &cqe);
                if (!ret->first_service_ns)
                    ret->first_service_ns = mono_ns();
                if (cqe.status >> 1)
                    failed++;
                reaped++;
                left--;
                continue;
            }
            if (now_ms() > deadline) {
                timeout = true;
                break;
            }
            if (nvme_irq_take(n, vecs[i], 100, &c) == 0)
                waiting += c;
        }
    }
    /* Their interrupts: MSI-X trails the CQE a little. */
    for (int i = 0; i < 2; i++)
        if (nvme_irq_take(n, vecs[i], 0, &c) == 0)
            waiting += c;
    if (reaped && !waiting) {
        for (int t = 0; t < 10 && !waiting; t++)
            for (int i = 0; i < 2; i++)
                if (nvme_irq_take(n, vecs[i], 20, &c) == 0)
                    waiting += c;
    }
    ret->irqs += waiting;
    ret->completions += reaped;
    check(!timeout && !unknown && !failed && reaped == outstanding,
          "%s: crash restart: all %llu command(s) outstanding at the kill "
          "completed, successfully, each once (%u reaped, %u unknown, %u "
          "failed%s; %u consumed by the dead image)", e->name,
          (unsigned long long)outstanding, reaped, unknown, failed,
          timeout ? ", TIMEOUT" : "", stepped);
    check(reaped == 0 || waiting > 0 || dead_read,
          "%s: crash restart: %llu interrupt(s) waited in the eventfds for "
          "the %u completion(s)%s", e->name, (unsigned long long)waiting,
          reaped, dead_read ? " (the dead image was reading one)" : "");
    check(st->completed == st->submitted, "%s: crash restart: every command "
          "completed exactly once (%llu submitted, %llu completed)", e->name,
          (unsigned long long)st->submitted,
          (unsigned long long)st->completed);

    /* The update's commands, if the kill came while they were in flight
     * (inside the update window, before the exec). */
    if (st->n_inflight) {
        unsigned given = 0, reads_ok = 0;

        for (unsigned i = 0; i < st->n_inflight; i++)
            given += st->inflight[i].cid != 0;
        bad = -1;
        for (unsigned i = 0; i < st->n_inflight && bad < 0; i++)
            if (st->inflight[i].cid && st->inflight[i].opcode ==
                                           NVME_CMD_READ) {
                bad = pattern_check(n->dmem + st->inflight[i].page * PG, PG,
                                    w->nonce, st->serve_tag,
                                    16 + st->inflight[i].page - PG_INFL_R);
                reads_ok += bad < 0;
            }
        check(bad < 0, "%s: crash restart: %u of %u update command(s) had "
              "been submitted; the READ data that landed is intact (%u, "
              "first bad byte %ld)", e->name, given, st->n_inflight,
              reads_ok, bad);
        if (given == st->n_inflight) {
            bad = nvme_read_back(w, e, SLOT_INFL(st->inflight_gen),
                                 INFL_WRITES, 0x10000 + st->inflight_gen,
                                 32, &r);
            check(r == 0 && bad < 0, "%s: crash restart: the update's "
                  "WRITEs read back intact (%d, first bad byte %ld)",
                  e->name, r, bad);
        }
        st->n_inflight = 0;
    }
    /* What the last verified service round wrote is still on the disk. */
    if (st->serve_tag) {
        bad = nvme_read_back(w, e, SLOT_SERVE(st->serve_tag), SERVE_PAGES,
                             st->serve_tag, 16, &r);
        check(r == 0 && bad < 0, "%s: crash restart: the last verified "
              "round (%llu) reads back intact (%d, first bad byte %ld)",
              e->name, (unsigned long long)st->serve_tag, r, bad);
        if (r == 0 && bad < 0)
            ret->dma_bytes += SERVE_PAGES * PG;
    }
    r = nvme_admin(e, &get_features, &cqe);
    check(r == 0 && cqe.result != 0, "%s: crash restart: admin queue "
          "continues (GET FEATURES number of queues: %d, 0x%x)", e->name, r,
          cqe.result);
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
    struct nvme_state *st = n->st;
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
    r = wl_engine_state(w, e, sizeof(*n->st), NVME_STATE_VERSION, &mem);
    if (r < 0)
        return r;
    n->st = mem;
    if (!e->reclaimed) {
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
    .recover = nvme_recover,
};
