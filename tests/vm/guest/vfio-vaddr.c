/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit's DMA handoff: VFIO_DMA_UNMAP_FLAG_VADDR suspends a mapping's
 * process address while the IOMMU keeps translating and the pages stay
 * pinned, so a device can keep DMA-ing through an execve(); the new image
 * maps the same memfd anywhere and hands the address back with
 * VFIO_DMA_MAP_FLAG_VADDR.
 *
 * Phase 1 (edu): map a memfd, load the device buffer, suspend the vaddr,
 * start a device -> RAM DMA that completes with an MSI, raise one more MSI,
 * and exec itself with the container/group/device/memfd/eventfd fds kept.
 * Phase 2: the DMA'd data is in the memfd, both interrupts are in the
 * eventfd counter, the remap works and fresh DMA works.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edu.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x400000ull
#define MEM_SIZE 0x10000ul
#define XFER 1500u
#define OFF_SRC 0x0000      /* pattern loaded into the device buffer */
#define OFF_BLACKOUT 0x1000 /* target of the DMA during the blackout */
#define OFF_FRESH_SRC 0x2000
#define OFF_FRESH_DST 0x3000
#define PLAN 16

static void keep_fd(int fd)
{
    TAP_CHECK(cloexec_set(fd, false));
}

static void phase1(char *self)
{
    struct vfio_bar bar;
    struct vfio_pci p;
    uint8_t *mem;
    void *addr = NULL;
    int memfd, efd, r;

    tap_plan(PLAN);
    r = vfio_pci_open(EDU_VENDOR, EDU_DEVICE, &p);
    if (!tap_ok(r == 0, "edu opened through vfio-pci"))
        tap_bail("vfio_pci_open: %s", strerror(-r));
    if (!tap_ok(vfio_check_extension(p.container, VFIO_UPDATE_VADDR) == 1,
                "container supports VFIO_UPDATE_VADDR"))
        tap_bail("nothing to test without VFIO_UPDATE_VADDR");
    TAP_CHECK(vfio_bar_open(p.device, VFIO_PCI_BAR0_REGION_INDEX, &bar));
    TAP_CHECK(pci_enable_bus_master(p.device));

    TAP_CHECK(memfd_buffer("vaddr-dma", MEM_SIZE, &memfd, &addr));
    mem = addr;
    TAP_CHECK(vfio_dma_map(p.container, IOVA, mem, MEM_SIZE));
    efd = TAP_CHECK(eventfd_new());
    TAP_CHECK(vfio_irq_set_eventfds(p.device, VFIO_PCI_MSI_IRQ_INDEX, 0, 1,
                                    &efd));

    bytes_fill(mem + OFF_SRC, XFER, 0xa5);
    r = edu_dma_to_device(&bar, IOVA + OFF_SRC, 0, XFER);
    tap_ok(r == 0, "device buffer loaded by DMA before the suspend (%d)", r);

    r = vfio_dma_unmap_vaddr(p.container, IOVA, MEM_SIZE);
    if (!tap_ok(r == 0, "VFIO_DMA_UNMAP_FLAG_VADDR suspends the mapping (%d)",
                r))
        tap_bail("vaddr suspend failed: %s", strerror(-r));

    /*
     * While suspended: a device -> RAM DMA (done ~100 ms later, from a
     * QEMU timer, i.e. during the exec) that raises an MSI when done, and
     * an MSI raised right now. Neither may be lost.
     */
    r = edu_dma_start(&bar, EDU_BUF_ADDR, IOVA + OFF_BLACKOUT, XFER,
                      EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ);
    tap_ok(r == 0, "device -> RAM DMA started while suspended (%d)", r);
    bar_write32(&bar, EDU_REG_IRQ_RAISE, 0x1);
    vfio_bar_close(&bar);
    /*
     * Drop the old mapping of the memfd: the new image must find the data
     * through the memfd alone.
     */
    munmap(mem, MEM_SIZE);

    keep_fd(p.container);
    keep_fd(p.group);
    keep_fd(p.device);
    keep_fd(memfd);
    keep_fd(efd);

    char a_fds[128], a_count[32], a_failed[32];
    snprintf(a_fds, sizeof(a_fds), "fds=%d,%d,%d,%d,%d", p.container,
             p.group, p.device, memfd, efd);
    snprintf(a_count, sizeof(a_count), "count=%u", tap_count());
    snprintf(a_failed, sizeof(a_failed), "failed=%u", tap_failed());
    char *argv[] = { self, "phase=2", a_fds, a_count, a_failed, NULL };
    execv("/proc/self/exe", argv);
    tap_bail("execv: %s", strerror(errno));
}

static void phase2(int argc, char **argv)
{
    int container = -1, group = -1, device = -1, memfd = -1, efd = -1;
    struct vfio_device_info info;
    struct vfio_bar bar;
    long count, failed;
    uint64_t n = 0;
    uint8_t *mem;
    void *addr = NULL;
    uint32_t st;
    int r;

    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "fds=", 4))
            sscanf(argv[i] + 4, "%d,%d,%d,%d,%d", &container, &group,
                   &device, &memfd, &efd);
    if (efd < 0 || arg_get_int(argc, argv, "count", &count) < 0 ||
        arg_get_int(argc, argv, "failed", &failed) < 0)
        tap_bail("phase 2: bad arguments");
    tap_resume((unsigned)count, (unsigned)failed);

    /* Back to CLOEXEC at once: these must not leak into other children. */
    r = 0;
    for (int i = 0; i < 5; i++)
        r = r ?: cloexec_set((int[]){ container, group, device, memfd,
                                         efd }[i], true);
    tap_ok(r == 0 && vfio_device_info(device, &info) == 0,
           "container, group, device, memfd, eventfd survived exec");

    TAP_CHECK(vfio_bar_open(device, VFIO_PCI_BAR0_REGION_INDEX, &bar));
    r = edu_dma_wait(&bar, EVENT_TIMEOUT_MS);
    tap_ok(r == 0, "the DMA started before exec has completed (%d)", r);

    r = memfd_map(memfd, MEM_SIZE, &addr);
    if (!tap_ok(r == 0, "memfd mapped in the new image at %p", addr))
        tap_bail("mmap: %s", strerror(-r));
    mem = addr;
    r = vfio_dma_map_vaddr(container, IOVA, mem, MEM_SIZE);
    tap_ok(r == 0, "VFIO_DMA_MAP_FLAG_VADDR gives the mapping its new "
           "address (%d)", r);

    tap_ok(bytes_check(mem + OFF_BLACKOUT, XFER, 0xa5),
           "data DMA'd while suspended is in the memfd (%u bytes)", XFER);
    tap_ok(bytes_check(mem + OFF_SRC, XFER, 0xa5),
           "memory written before exec is intact");

    /*
     * Both MSIs (the raise and the DMA completion) must reach the eventfd.
     * edu sends the completion MSI just after it clears the DMA busy bit,
     * and delivery to the eventfd is asynchronous, so allow it a moment.
     */
    r = eventfd_count_until(efd, 2, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 2, "both interrupts of the blackout are in the "
           "eventfd counter (count=%llu)", (unsigned long long)n);
    st = bar_read32(&bar, EDU_REG_IRQ_STATUS);
    tap_ok(st == (0x1 | EDU_DMA_IRQ_VALUE),
           "IRQ status has the raise and the DMA completion (0x%x)", st);
    bar_write32(&bar, EDU_REG_IRQ_ACK, st);

    /* The mapping works as before: fresh DMA both ways, and an MSI. */
    bytes_fill(mem + OFF_FRESH_SRC, XFER, 0x3c);
    r = edu_dma_to_device(&bar, IOVA + OFF_FRESH_SRC, 0x800, XFER);
    r = r ?: edu_dma_to_ram(&bar, 0x800, IOVA + OFF_FRESH_DST, XFER);
    tap_ok(r == 0 && bytes_check(mem + OFF_FRESH_DST, XFER, 0x3c),
           "fresh DMA round trip after the remap (%d)", r);
    bar_write32(&bar, EDU_REG_IRQ_RAISE, 0x4);
    r = eventfd_wait(efd, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "a new MSI arrives on the inherited eventfd "
           "(r=%d count=%llu)", r, (unsigned long long)n);
    bar_write32(&bar, EDU_REG_IRQ_ACK, 0x4);

    r = vfio_dma_unmap(container, IOVA, MEM_SIZE);
    tap_ok(r == 0, "the remapped range unmaps as one mapping (%d)", r);

    vfio_irq_disable(device, VFIO_PCI_MSI_IRQ_INDEX);
    vfio_bar_close(&bar);
    munmap(mem, MEM_SIZE);
    close(efd);
    close(memfd);
    close(device);
    close(group);
    close(container);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "phase=2"))
        phase2(argc, argv);
    else
        phase1(argv[0]);
    tap_exit();
}
