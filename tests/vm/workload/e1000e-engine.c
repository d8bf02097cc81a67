/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * e1000e, the third device of the multi-device runs: no network traffic
 * (the NIC has no link), but it has FLR, so it shows a reset, and it can
 * raise an interrupt on demand (ICS) that arrives as an MSI.
 *
 * Across an update: descriptor base registers hold per-update values (a
 * reset would zero them) and an interrupt raised right before the exec
 * waits in the eventfd.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

#define E1000_ICR 0x00c0  /* interrupt cause, clears on read (MSI mode) */
#define E1000_ICS 0x00c8  /* interrupt cause set */
#define E1000_IMS 0x00d0  /* interrupt mask set */
#define E1000_IMC 0x00d8  /* interrupt mask clear */
#define E1000_RDBAL 0x2800
#define E1000_TDBAL 0x3800
#define E1000_ICR_LSC 0x4 /* "link status change": any cause would do */

#define E1000E_STATE_VERSION 1
struct e1000e_state {
    uint32_t version;
    uint32_t rdbal, tdbal;   /* last values written */
    uint32_t inflight;       /* an interrupt raised before the update */
    uint64_t raised, serviced, irqs_seen;
};

struct e1000e {
    int efd;
    struct e1000e_state st;
};

static struct e1000e *nic_of(struct engine *e)
{
    return e->priv;
}

static int e1000e_service(struct engine *e, uint64_t *ret_n)
{
    struct e1000e *d = nic_of(e);
    uint64_t n = 0;
    uint32_t icr;
    int r;

    r = eventfd_count_until(d->efd, 1, EVENT_TIMEOUT_MS, &n);
    if (r < 0)
        return r;
    icr = bar_read32(&e->bar, E1000_ICR);
    if (n < 1 || !(icr & E1000_ICR_LSC)) {
        check(false, "%s: interrupt arrived (eventfd %llu, ICR 0x%x)",
              e->name, (unsigned long long)n, icr);
        return -EIO;
    }
    d->st.irqs_seen += n;
    d->st.serviced++;
    *ret_n = n;
    return 0;
}

static void e1000e_raise(struct engine *e)
{
    bar_write32(&e->bar, E1000_ICS, E1000_ICR_LSC);
    nic_of(e)->st.raised++;
}

static void e1000e_serve(struct workload *w, struct engine *e,
                         unsigned rounds)
{
    struct e1000e *d = nic_of(e);
    uint64_t n;

    for (unsigned i = 0; i < rounds; i++) {
        e1000e_raise(e);
        e1000e_service(e, &n);
    }
    check(d->st.serviced == d->st.raised, "%s: every interrupt accounted "
          "for (%llu raised, %llu serviced)", e->name,
          (unsigned long long)d->st.raised,
          (unsigned long long)d->st.serviced);
}

static void e1000e_start_inflight(struct workload *w, struct engine *e)
{
    struct e1000e *d = nic_of(e);

    /* Descriptor bases are 16-byte aligned; nothing is enabled to use them. */
    d->st.rdbal = (w->nonce ^ (uint32_t)w->generation << 8) & ~0xfu;
    d->st.tdbal = ~d->st.rdbal & ~0xfu;
    bar_write32(&e->bar, E1000_RDBAL, d->st.rdbal);
    bar_write32(&e->bar, E1000_TDBAL, d->st.tdbal);
    e1000e_raise(e);
    d->st.inflight = 1;
}

static void e1000e_check_untouched(struct workload *w, struct engine *e)
{
    struct e1000e *d = nic_of(e);
    uint32_t rdbal = bar_read32(&e->bar, E1000_RDBAL);
    uint32_t tdbal = bar_read32(&e->bar, E1000_TDBAL);

    check(rdbal == d->st.rdbal && tdbal == d->st.tdbal,
          "%s: no reset: RDBAL 0x%x TDBAL 0x%x as written", e->name, rdbal,
          tdbal);
}

static void e1000e_finish_inflight(struct workload *w, struct engine *e,
                                   struct blackout *ret)
{
    struct e1000e *d = nic_of(e);
    uint64_t n = 0;

    if (!d->st.inflight)
        return;
    if (e1000e_service(e, &n) == 0) {
        ret->first_service_ns = mono_ns();
        ret->irqs += n;
    }
    d->st.inflight = 0;
}

static int e1000e_save(struct workload *w, struct engine *e)
{
    return cprkit_section_put(w->ctx, e->name, &nic_of(e)->st,
                              sizeof(nic_of(e)->st));
}

static int e1000e_open(struct workload *w, struct engine *e)
{
    struct e1000e *d = calloc(1, sizeof(*d));
    int r;

    if (!d)
        return -ENOMEM;
    e->priv = d;
    e->vendor = E1000E_VENDOR;
    e->device_id = E1000E_DEVICE;
    d->efd = -1;
    r = wl_open_device(w, e);
    if (r < 0)
        return r;
    if (e->reclaimed) {
        r = wl_section_load(w, e, &d->st, sizeof(d->st), E1000E_STATE_VERSION);
        if (r < 0)
            return r;
    } else {
        d->st.version = E1000E_STATE_VERSION;
        r = cprkit_vfio_device_reset(w->ctx, e->device);
        if (r < 0)
            return r;
        r = pci_enable_bus_master(e->device);
        if (r < 0)
            return r;
    }
    if (e->device < 0)
        return 0; /* forgotten: see wl_forgets_device() */
    r = cprkit_vfio_irq_enable(w->ctx, e->device, VFIO_PCI_MSI_IRQ_INDEX, 1,
                               &d->efd);
    if (r < 0)
        return r;
    if (!e->reclaimed) {
        bar_write32(&e->bar, E1000_IMC, UINT32_MAX);
        bar_read32(&e->bar, E1000_ICR);
        bar_write32(&e->bar, E1000_IMS, E1000_ICR_LSC);
    }
    return 0;
}

const struct engine_ops e1000e_ops = {
    .kind = "e1000e",
    .open = e1000e_open,
    .check_untouched = e1000e_check_untouched,
    .serve = e1000e_serve,
    .start_inflight = e1000e_start_inflight,
    .finish_inflight = e1000e_finish_inflight,
    .save = e1000e_save,
};
