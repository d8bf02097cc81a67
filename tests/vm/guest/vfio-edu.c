/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu through vfio-pci: BAR access, DMA through a memfd-backed IOMMU
 * mapping in both directions, and interrupts delivered to eventfds as MSI
 * and as INTx (level, automasked by vfio-pci until unmasked).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edu.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x100000ull /* below edu's 28-bit DMA limit */
#define BUF_SIZE 0x4000ul
#define XFER 1024u

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static void test_dma(struct vfio_pci *p, const struct vfio_bar *bar)
{
    uint8_t *mem;
    void *addr = NULL;
    int memfd, r;

    TAP_CHECK(memfd_buffer("edu-dma", BUF_SIZE, &memfd, &addr));
    mem = addr;
    r = vfio_dma_map(p->container, IOVA, mem, BUF_SIZE);
    if (!tap_ok(r == 0, "DMA-map %lu bytes of a memfd at iova 0x%llx",
                BUF_SIZE, IOVA))
        tap_bail("VFIO_IOMMU_MAP_DMA: %s", strerror(-r));

    fill(mem, XFER, 0x5a);
    memset(mem + 0x2000, 0, XFER);
    r = edu_dma_to_device(bar, IOVA, 0, XFER);
    tap_ok(r == 0, "DMA RAM -> device completed (%d)", r);
    r = edu_dma_to_ram(bar, 0, IOVA + 0x2000, XFER);
    tap_ok(r == 0, "DMA device -> RAM completed (%d)", r);
    tap_ok(memcmp(mem, mem + 0x2000, XFER) == 0,
           "round trip RAM -> device -> RAM returns the data (%u bytes)",
           XFER);

    r = vfio_dma_unmap(p->container, IOVA, BUF_SIZE);
    tap_ok(r == 0, "DMA unmap returns the whole mapping (%d)", r);
    munmap(mem, BUF_SIZE);
    close(memfd);
}

static void test_msi(struct vfio_pci *p, const struct vfio_bar *bar)
{
    uint64_t n = 0;
    int efd, r;

    efd = TAP_CHECK(eventfd_new());
    r = vfio_irq_set_eventfds(p->device, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &efd);
    if (!tap_ok(r == 0, "MSI vector 0 -> eventfd (%d)", r))
        tap_bail("VFIO_DEVICE_SET_IRQS MSI: %s", strerror(-r));

    bar_write32(bar, EDU_REG_IRQ_RAISE, 0x1);
    r = eventfd_wait(efd, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "MSI raised via 0x60 arrives on the eventfd "
           "(r=%d count=%llu)", r, (unsigned long long)n);
    tap_ok(bar_read32(bar, EDU_REG_IRQ_STATUS) == 0x1,
           "IRQ status shows the raised value");
    bar_write32(bar, EDU_REG_IRQ_ACK, 0x1);

    /* A second one: MSI is edge, each raise is one message. */
    bar_write32(bar, EDU_REG_IRQ_RAISE, 0x2);
    r = eventfd_wait(efd, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "second MSI arrives (r=%d count=%llu)", r,
           (unsigned long long)n);
    bar_write32(bar, EDU_REG_IRQ_ACK, 0x2);
    tap_ok(bar_read32(bar, EDU_REG_IRQ_STATUS) == 0, "ack clears IRQ status");

    r = vfio_irq_disable(p->device, VFIO_PCI_MSI_IRQ_INDEX);
    tap_ok(r == 0, "MSI disabled (%d)", r);
    close(efd);
}

static void test_intx(struct vfio_pci *p, const struct vfio_bar *bar)
{
    uint64_t n = 0;
    int trigger, unmask, r;

    trigger = TAP_CHECK(eventfd_new());
    unmask = TAP_CHECK(eventfd_new());
    r = vfio_irq_set_eventfds(p->device, VFIO_PCI_INTX_IRQ_INDEX, 0, 1,
                              &trigger);
    r = r ?: vfio_intx_set_unmask_eventfd(p->device, unmask);
    if (!tap_ok(r == 0, "INTx -> trigger eventfd, unmask eventfd (%d)", r))
        tap_bail("VFIO_DEVICE_SET_IRQS INTx: %s", strerror(-r));

    bar_write32(bar, EDU_REG_IRQ_RAISE, 0x10);
    r = eventfd_wait(trigger, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "INTx arrives on the trigger eventfd "
           "(r=%d count=%llu)", r, (unsigned long long)n);

    /*
     * vfio-pci masks a level interrupt when it fires. With the line
     * deasserted (ack) and asserted again, nothing is delivered until
     * the unmask eventfd is written; then the pending level fires at once.
     */
    bar_write32(bar, EDU_REG_IRQ_ACK, 0x10);
    bar_write32(bar, EDU_REG_IRQ_RAISE, 0x20);
    r = eventfd_wait(trigger, 300, &n);
    tap_ok(r == -ETIMEDOUT, "INTx stays masked until unmasked (r=%d)", r);

    r = eventfd_write(unmask, 1) < 0 ? -errno : 0;
    TAP_CHECK(r);
    r = eventfd_wait(trigger, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "unmask delivers the pending INTx "
           "(r=%d count=%llu)", r, (unsigned long long)n);

    /* Ack first, then unmask: a deasserted line must stay quiet. */
    bar_write32(bar, EDU_REG_IRQ_ACK, 0x20);
    TAP_CHECK(eventfd_write(unmask, 1) < 0 ? -errno : 0);
    r = eventfd_wait(trigger, 300, &n);
    tap_ok(r == -ETIMEDOUT, "no INTx once acked and unmasked (r=%d)", r);

    r = vfio_irq_disable(p->device, VFIO_PCI_INTX_IRQ_INDEX);
    tap_ok(r == 0, "INTx disabled (%d)", r);
    close(unmask);
    close(trigger);
}

int main(void)
{
    struct vfio_bar bar;
    struct vfio_pci p;
    uint32_t v;
    int r;

    tap_plan(21);

    r = vfio_pci_open(EDU_VENDOR, EDU_DEVICE, &p);
    if (!tap_ok(r == 0, "edu opened through vfio-pci"))
        tap_bail("vfio_pci_open: %s", strerror(-r));
    TAP_CHECK(vfio_bar_open(p.device, VFIO_PCI_BAR0_REGION_INDEX, &bar));
    tap_ok(bar.map != NULL, "BAR0 is mmap'ed (%llu bytes)",
           (unsigned long long)bar.size);
    TAP_CHECK(pci_enable_bus_master(p.device));

    v = bar_read32(&bar, EDU_REG_ID);
    tap_ok(v == EDU_ID, "ID register reads 0x%08x", v);
    bar_write32(&bar, EDU_REG_LIVENESS, 0x12345678);
    v = bar_read32(&bar, EDU_REG_LIVENESS);
    tap_ok(v == ~0x12345678u, "liveness register inverts (0x%08x)", v);

    test_dma(&p, &bar);
    test_msi(&p, &bar);
    test_intx(&p, &bar);

    vfio_bar_close(&bar);
    vfio_pci_close(&p);
    tap_exit();
}
