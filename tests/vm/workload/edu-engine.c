/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu: DMA round trips RAM -> device -> RAM through a memfd from
 * cprkit_ram_open(), each transfer completing with an interrupt, in MSI
 * mode (edge: every interrupt is one eventfd count, so they are counted
 * exactly) or INTx mode (level, automasked by vfio until the unmask eventfd
 * is written: counted per event through the device's status bits).
 *
 * Across an update: a device -> RAM transfer started right before the exec
 * lands (~100 ms later, edu's DMA timer) while no driver runs; its
 * interrupt waits in the eventfd. The liveness and factorial registers are
 * written before and read after: edu has no reset, but a device that was
 * torn down would not answer as programmed, and Bus Master Enable would be
 * clear (vfio-pci clears it on release).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edu.h"
#include "workload.h"

#define EDU_MEM_SIZE 0x10000ul
#define EDU_OFF_SRC 0x0000           /* round trip: source */
#define EDU_OFF_DST 0x1000           /* round trip: destination */
#define EDU_OFF_INFLIGHT_SRC 0x2000  /* loaded into the device buffer */
#define EDU_OFF_INFLIGHT_DST 0x3000  /* DMA'd while no driver runs */
#define EDU_XFER 1500u
#define EDU_BUF_ROUNDTRIP 0x800      /* offsets in the device buffer */
#define EDU_BUF_INFLIGHT 0x000
#define EDU_STATUS_FACT_BUSY 0x01

#define EDU_STATE_VERSION 2
struct edu_state {
    uint32_t version;
    uint32_t liveness;       /* last value written to 0x04 */
    uint32_t fact_n;         /* last value written to 0x08 */
    uint32_t inflight;       /* a device -> RAM transfer is outstanding */
    uint64_t inflight_gen;   /* pattern of the outstanding transfer */
    uint64_t rounds;         /* round trips so far (pattern tag) */
    uint64_t events_issued;  /* transfers that raise an interrupt */
    uint64_t events_done;    /* ... whose interrupt was serviced */
    uint64_t irqs_seen;      /* eventfd counts consumed */
    uint32_t liveness_next;  /* being written: a kill may fall between */
    uint32_t fact_n_next;
};

struct edu {
    bool intx;
    int efd;                 /* trigger eventfd */
    int unmask_fd;           /* INTx only */
    uint8_t *mem;
    uint64_t iova;
    /* In RAM block "<name>-state", written as the engine works, in an
     * order a kill at any instruction leaves reconcilable (recover()):
     * a transfer is counted issued before the device is told, an eventfd
     * count is recorded right after the read, the event done after the
     * acknowledgement. */
    struct edu_state *st;
};

static struct edu *edu_of(struct engine *e)
{
    return e->priv;
}

/*
 * Service the interrupt of one completed transfer: wait for the eventfd,
 * check the device says why (status bit), acknowledge. MSI counts are
 * exact, so more than one per event is a spurious interrupt. INTx: one
 * assertion may be signalled more than once (cprkit unmasks once on
 * reclaim, and a still-asserted line fires again), never zero times.
 */
static int edu_service(struct workload *w, struct engine *e, uint64_t *ret_n)
{
    struct edu *d = edu_of(e);
    uint64_t n = 0;
    uint32_t st;
    int r;

    r = eventfd_count_until(d->efd, 1, EVENT_TIMEOUT_MS, &n);
    if (r < 0)
        return r;
    d->st->irqs_seen += n;
    st = bar_read32(&e->bar, EDU_REG_IRQ_STATUS);
    /* Failures only: the caller's check covers the good case. */
    if (n < 1 || (!d->intx && n != 1) || !(st & EDU_DMA_IRQ_VALUE)) {
        check(false, "%s: one DMA completion interrupt (eventfd %llu, "
              "status 0x%x)", e->name, (unsigned long long)n, st);
        return -EIO;
    }
    bar_write32(&e->bar, EDU_REG_IRQ_ACK, st);
    if (d->intx) {
        /* The line is low now (status acked): reopen it. */
        uint64_t one = 1;

        if (write(d->unmask_fd, &one, sizeof(one)) != sizeof(one))
            return -errno;
    }
    d->st->events_done++;
    *ret_n = n;
    return 0;
}

static int edu_transfer(struct workload *w, struct engine *e, uint64_t src,
                        uint64_t dst, uint32_t cmd)
{
    struct edu *d = edu_of(e);
    uint64_t n;
    int r;

    d->st->events_issued++;
    r = edu_dma_start(&e->bar, src, dst, EDU_XFER, cmd | EDU_DMA_RAISE_IRQ);
    if (r < 0) {
        d->st->events_issued--;
        return r;
    }
    r = edu_dma_wait(&e->bar, EVENT_TIMEOUT_MS);
    if (r < 0)
        return r;
    return edu_service(w, e, &n);
}

static void edu_serve(struct workload *w, struct engine *e, unsigned rounds)
{
    struct edu *d = edu_of(e);

    for (unsigned i = 0; i < rounds; i++) {
        uint64_t tag = ++d->st->rounds;
        long bad;
        int r;

        pattern_fill(d->mem + EDU_OFF_SRC, EDU_XFER, w->nonce, tag, 1);
        memset(d->mem + EDU_OFF_DST, 0, EDU_XFER);
        r = edu_transfer(w, e, d->iova + EDU_OFF_SRC,
                         EDU_BUF_ADDR + EDU_BUF_ROUNDTRIP, 0);
        if (r == 0)
            r = edu_transfer(w, e, EDU_BUF_ADDR + EDU_BUF_ROUNDTRIP,
                             d->iova + EDU_OFF_DST, EDU_DMA_TO_RAM);
        bad = pattern_check(d->mem + EDU_OFF_DST, EDU_XFER, w->nonce, tag, 1);
        check(r == 0 && bad < 0, "%s: DMA round trip %llu RAM -> device -> "
              "RAM intact, completion interrupts serviced (%d, first bad "
              "byte %ld)", e->name,
              (unsigned long long)tag, r, bad);
    }
    check(d->st->events_done == d->st->events_issued &&
              (d->intx || d->st->irqs_seen == d->st->events_issued),
          "%s: every interrupt accounted for (%llu transfers, %llu "
          "serviced, %llu eventfd counts)", e->name,
          (unsigned long long)d->st->events_issued,
          (unsigned long long)d->st->events_done,
          (unsigned long long)d->st->irqs_seen);
}

/* Liveness and factorial registers, recorded as being written first: a
 * kill between the two stores leaves either value acceptable. */
static void edu_program(struct engine *e, uint32_t liveness, uint32_t fact_n)
{
    struct edu *d = edu_of(e);

    d->st->liveness_next = liveness;
    d->st->fact_n_next = fact_n;
    bar_write32(&e->bar, EDU_REG_LIVENESS, liveness);
    bar_write32(&e->bar, 0x08, fact_n);
    d->st->liveness = liveness;
    d->st->fact_n = fact_n;
}

static void edu_start_inflight(struct workload *w, struct engine *e)
{
    struct edu *d = edu_of(e);
    uint64_t gen = w->generation;
    int r;

    /* Values the next image must read back: the device kept its state. */
    edu_program(e, w->nonce ^ (uint32_t)(gen * 0x01010101u),
                3 + (uint32_t)(gen % 10));

    pattern_fill(d->mem + EDU_OFF_INFLIGHT_SRC, EDU_XFER, w->nonce, gen, 2);
    memset(d->mem + EDU_OFF_INFLIGHT_DST, 0, EDU_XFER);
    r = edu_transfer(w, e, d->iova + EDU_OFF_INFLIGHT_SRC,
                     EDU_BUF_ADDR + EDU_BUF_INFLIGHT, 0);
    if (r < 0)
        fatal("%s: loading the device buffer: %s", e->name, strerror(-r));
    /* Lands ~100 ms from now: during the exec. Recorded first. */
    d->st->inflight_gen = gen;
    d->st->events_issued++;
    d->st->inflight = 1;
    r = edu_dma_start(&e->bar, EDU_BUF_ADDR + EDU_BUF_INFLIGHT,
                      d->iova + EDU_OFF_INFLIGHT_DST, EDU_XFER,
                      EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ);
    if (r < 0)
        fatal("%s: starting the in-flight DMA: %s", e->name, strerror(-r));
}

static void edu_check_untouched(struct workload *w, struct engine *e)
{
    struct edu *d = edu_of(e);
    uint32_t id, live, fact;
    uint16_t cmd = 0;

    id = bar_read32(&e->bar, EDU_REG_ID);
    live = bar_read32(&e->bar, EDU_REG_LIVENESS);
    for (int i = 0; i < 1000 && (bar_read32(&e->bar, 0x20) &
                                 EDU_STATUS_FACT_BUSY); i++)
        usleep(1000);
    fact = bar_read32(&e->bar, 0x08);
    pci_config_read(e->device, 0x04, &cmd, sizeof(cmd));
    check(id == EDU_ID && live == ~d->st->liveness &&
              fact == edu_factorial(d->st->fact_n) && (cmd & 0x4),
          "%s: device kept its state: liveness ~0x%08x = 0x%08x, %u! = %u, "
          "bus master %s", e->name, d->st->liveness, live, d->st->fact_n, fact,
          cmd & 0x4 ? "on" : "OFF");
}

static void edu_finish_inflight(struct workload *w, struct engine *e,
                                struct blackout *ret)
{
    struct edu *d = edu_of(e);
    uint64_t n = 0;
    long bad;
    int r;

    if (!d->st->inflight)
        return;
    r = edu_dma_wait(&e->bar, EVENT_TIMEOUT_MS);
    if (r == 0)
        r = edu_service(w, e, &n);
    ret->first_service_ns = mono_ns();
    bad = pattern_check(d->mem + EDU_OFF_INFLIGHT_DST, EDU_XFER, w->nonce,
                        d->st->inflight_gen, 2);
    check(r == 0 && bad < 0, "%s: %u bytes DMA'd while away are intact "
          "(%d, first bad byte %ld)", e->name, EDU_XFER, r, bad);
    check(pattern_check(d->mem + EDU_OFF_INFLIGHT_SRC, EDU_XFER, w->nonce,
                        d->st->inflight_gen, 2) < 0,
          "%s: memory written before the update is intact", e->name);
    if (r == 0 && bad < 0)
        ret->dma_bytes += EDU_XFER;
    ret->irqs += n;
    ret->completions += r == 0;
    d->st->inflight = 0;
}

static int edu_save(struct workload *w, struct engine *e)
{
    return cprkit_section_put(w->ctx, e->name, edu_of(e)->st,
                              sizeof(*edu_of(e)->st));
}

/*
 * Crash restart. edu runs one transfer at a time, so at most one event is
 * outstanding (issued, not done). Where the dead image stopped decides
 * what the device shows:
 *   raised, not acknowledged (IRQ status set): the transfer completed; its
 *     MSI is in the eventfd, or the dead image read it (then it either
 *     recorded it or died right after the read);
 *   acknowledged but not recorded done: irqs_seen already counts it;
 *   recorded issued, never started: no status, no count.
 */
static void edu_recover(struct workload *w, struct engine *e,
                        struct blackout *ret)
{
    struct edu *d = edu_of(e);
    struct edu_state *st = d->st;
    uint64_t outstanding = st->events_issued - st->events_done, c = 0;
    uint32_t id, live, fact, irq;
    uint16_t cmd = 0;
    bool happened = false;
    long bad;
    int r;

    id = bar_read32(&e->bar, EDU_REG_ID);
    live = bar_read32(&e->bar, EDU_REG_LIVENESS);
    for (int i = 0; i < 1000 && (bar_read32(&e->bar, 0x20) &
                                 EDU_STATUS_FACT_BUSY); i++)
        usleep(1000);
    fact = bar_read32(&e->bar, 0x08);
    pci_config_read(e->device, 0x04, &cmd, sizeof(cmd));
    check(id == EDU_ID && (cmd & 0x4) &&
              (live == ~st->liveness || live == ~st->liveness_next) &&
              (fact == edu_factorial(st->fact_n) ||
               fact == edu_factorial(st->fact_n_next)),
          "%s: crash restart: device kept its state (liveness 0x%08x, "
          "factorial %u, bus master %s)", e->name, live, fact,
          cmd & 0x4 ? "on" : "OFF");

    r = edu_dma_wait(&e->bar, EVENT_TIMEOUT_MS);
    check(r == 0 && outstanding <= 1, "%s: crash restart: DMA engine idle "
          "(%d), %llu event(s) outstanding", e->name, r,
          (unsigned long long)outstanding);
    irq = bar_read32(&e->bar, EDU_REG_IRQ_STATUS);
    if (irq & EDU_DMA_IRQ_VALUE) {
        /* MSI delivery may trail the status a little. */
        eventfd_count_until(d->efd, 1, d->intx ? 200 : 1000, &c);
        ret->first_service_ns = mono_ns();
        if (!d->intx && c == 0 && st->irqs_seen + 1 == st->events_issued) {
            note("%s: the dead image read the interrupt and died before "
                 "recording it: counted", e->name);
            st->irqs_seen++;
        }
        st->irqs_seen += c;
        bar_write32(&e->bar, EDU_REG_IRQ_ACK, irq);
        if (d->intx) {
            uint64_t one = 1;

            if (write(d->unmask_fd, &one, sizeof(one)) != sizeof(one))
                check(false, "%s: INTx unmask: %s", e->name, strerror(errno));
        }
        check(outstanding == 1, "%s: crash restart: the completion interrupt "
              "raised while no driver ran belongs to the outstanding "
              "transfer (%llu eventfd count(s) waiting)", e->name,
              (unsigned long long)c);
        st->events_done = st->events_issued;
        ret->irqs += c;
        ret->completions++;
        happened = true;
    } else if (outstanding && st->irqs_seen >= st->events_issued) {
        /* Serviced and acknowledged; "done" was the next store. */
        st->events_done = st->events_issued;
        happened = true;
    } else if (outstanding) {
        /* Recorded but the device was never told (no status, no DMA). */
        note("%s: the dead image recorded a transfer it never started",
             e->name);
        if (st->inflight && st->events_issued - 1 == st->events_done)
            st->inflight = 0;
        st->events_issued = st->events_done;
    }
    /* Nothing more may be waiting: a count here is spurious. */
    if (eventfd_drain(d->efd, &c) == 0 && c) {
        check(d->intx, "%s: no spurious interrupt (%llu)", e->name,
              (unsigned long long)c);
        st->irqs_seen += c;
        ret->irqs += c;
    }
    if (st->inflight) {
        bad = happened ? pattern_check(d->mem + EDU_OFF_INFLIGHT_DST,
                                       EDU_XFER, w->nonce, st->inflight_gen,
                                       2)
                       : -1;
        check(bad < 0, "%s: the update's transfer DMA'd while no driver "
              "ran is intact (first bad byte %ld)", e->name, bad);
        if (happened && bad < 0)
            ret->dma_bytes += EDU_XFER;
        st->inflight = 0;
    }
    check(st->events_done == st->events_issued &&
              (d->intx || st->irqs_seen == st->events_issued),
          "%s: crash restart: every interrupt accounted for (%llu transfers, "
          "%llu serviced, %llu eventfd counts)", e->name,
          (unsigned long long)st->events_issued,
          (unsigned long long)st->events_done,
          (unsigned long long)st->irqs_seen);
}

/* A fresh start finds edu as the last user left it: no reset exists. */
static int edu_quiesce(struct engine *e)
{
    int r;

    r = edu_dma_wait(&e->bar, EVENT_TIMEOUT_MS);
    bar_write32(&e->bar, EDU_REG_IRQ_ACK, UINT32_MAX);
    return r;
}

static int edu_open(struct workload *w, struct engine *e, bool intx)
{
    struct edu *d = calloc(1, sizeof(*d));
    unsigned index = intx ? VFIO_PCI_INTX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
    char ram[32];
    void *mem;
    int r;

    if (!d)
        return -ENOMEM;
    e->priv = d;
    e->vendor = EDU_VENDOR;
    e->device_id = EDU_DEVICE;
    d->intx = intx;
    d->efd = d->unmask_fd = -1;
    d->iova = WL_IOVA_BASE(e);

    r = wl_open_device(w, e);
    if (r < 0)
        return r;
    r = wl_engine_state(w, e, sizeof(*d->st), EDU_STATE_VERSION, &mem);
    if (r < 0)
        return r;
    d->st = mem;
    if (!e->reclaimed) {
        r = edu_quiesce(e);
        if (r < 0)
            return r;
        r = pci_enable_bus_master(e->device);
        if (r < 0)
            return r;
        /* A previous user may have left any value there. */
        edu_program(e, w->nonce, 3);
    }

    snprintf(ram, sizeof(ram), "%s-ram", e->name);
    r = wl_ram(w, ram, EDU_MEM_SIZE, &mem);
    if (r < 0)
        return r;
    d->mem = mem;
    r = wl_dma_map(w, e, d->iova, EDU_MEM_SIZE, mem);
    if (r < 0)
        return r;

    if (e->device < 0)
        return 0; /* forgotten: see wl_forgets_device() */
    /* The faulty new binary of FAULT_UNCLAIMED_EVENTFD forgets this. */
    if (w->acting_fault == FAULT_UNCLAIMED_EVENTFD)
        return 0;
    r = cprkit_vfio_irq_enable(w->ctx, e->device, index, 1, &d->efd);
    if (r < 0)
        return r;
    if (intx) {
        r = cprkit_vfio_intx_unmask_fd(w->ctx, e->device);
        if (r < 0)
            return r;
        d->unmask_fd = r;
    }
    return 0;
}

static int edu_msi_open(struct workload *w, struct engine *e)
{
    return edu_open(w, e, false);
}

static int edu_intx_open(struct workload *w, struct engine *e)
{
    return edu_open(w, e, true);
}

const struct engine_ops edu_msi_ops = {
    .kind = "edu-msi",
    .open = edu_msi_open,
    .check_untouched = edu_check_untouched,
    .serve = edu_serve,
    .start_inflight = edu_start_inflight,
    .finish_inflight = edu_finish_inflight,
    .save = edu_save,
    .recover = edu_recover,
};

const struct engine_ops edu_intx_ops = {
    .kind = "edu-intx",
    .open = edu_intx_open,
    .check_untouched = edu_check_untouched,
    .serve = edu_serve,
    .start_inflight = edu_start_inflight,
    .finish_inflight = edu_finish_inflight,
    .save = edu_save,
    .recover = edu_recover,
};
