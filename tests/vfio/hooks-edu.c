/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Library-level VM test of the VFIO hooks against the real edu device.
 *
 * Fresh image: open container/group/device through cprkit, DMA-map a RAM
 * memfd, enable MSI, check the blockers (anonymous memory is refused),
 * fail an exec on purpose (garbage binary: the vaddrs must be resumed),
 * then start a device->RAM DMA that completes during the blackout and
 * cprkit_exec() itself.
 * Restored image: every hook reclaims instead of opening; a wrong remap
 * address is refused; commit refuses while a mapping is not remapped; the
 * DMA done during the blackout is in memory and its interrupt in the
 * eventfd; a fresh DMA + MSI works; commit succeeds.
 *
 * With --rollback the restored image vetoes itself after remapping and
 * rolls back: the first binary runs again, is told it was rolled back,
 * reclaims and remaps everything once more (its ranges were suspended
 * again by the rollback), and the device still works.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-vfio.h>

#include "edu.h"
#include "tap.h"
#include "vfio-util.h"

#define RAM_SIZE (1u << 20)
#define IOVA 0x100000u
#define XFER 1024u
#define BLACKOUT_OFF 0x8000u /* where the in-flight DMA lands */
#define PROT (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

static void log_fn(void *userdata, int priority, const char *msg)
{
    if (priority <= 6)
        tap_diag("cprkit: %s", msg);
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static bool check(const uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7))
            return false;
    return true;
}

/* RAM -> device buffer -> RAM at another offset, with an MSI at the end. */
static bool dma_round_trip(const struct vfio_bar *bar, uint8_t *mem, int evfd,
                           uint32_t from, uint32_t to, uint8_t seed)
{
    uint64_t count = 0;

    fill(mem + from, XFER, seed);
    memset(mem + to, 0, XFER);
    if (edu_dma_to_device(bar, IOVA + from, 0, XFER) < 0)
        return false;
    if (edu_dma_start(bar, EDU_BUF_ADDR, IOVA + to, XFER,
                      EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ) < 0 ||
        edu_dma_wait(bar, EVENT_TIMEOUT_MS) < 0)
        return false;
    if (eventfd_count_until(evfd, 1, EVENT_TIMEOUT_MS, &count) < 0)
        return false;
    bar_write32(bar, EDU_REG_IRQ_ACK, EDU_DMA_IRQ_VALUE);
    return check(mem + to, XFER, seed);
}

static char *garbage_binary(void)
{
    char *path = strdup("/tmp/garbage-XXXXXX");
    int fd = mkstemp(path);

    if (fd < 0 || write(fd, "garbage\n", 8) != 8 || fchmod(fd, 0755) < 0)
        tap_bail("garbage binary");
    close(fd);
    return path;
}

static bool rollback_mode;

static int fresh(cprkit_ctx *ctx, char **argv)
{
    char bdf[16], self[256], evfd_arg[16], counts[32];
    struct vfio_bar bar;
    bool reclaimed = true;
    int container, group, device, ram, evfd, r;
    uint8_t *mem, *anon;
    char *garbage;
    ssize_t n;

    TAP_CHECK(pci_find(0x1234, 0x11e8, bdf));
    container = cprkit_vfio_container_open(ctx, 0, &reclaimed);
    tap_ok(container >= 0 && !reclaimed, "fresh container opened (%d)", container);
    group = cprkit_vfio_group_open(ctx, container, (unsigned)pci_iommu_group(bdf),
                                   &reclaimed);
    tap_ok(group >= 0 && !reclaimed, "fresh group opened, IOMMU set (%d)", group);
    device = cprkit_vfio_device_open(ctx, group, bdf, &reclaimed);
    if (!tap_ok(device >= 0 && !reclaimed, "fresh device %s opened (%d)", bdf,
                device))
        tap_bail("%s", cprkit_last_error(ctx));
    TAP_CHECK(vfio_bar_open(device, 0, &bar));
    TAP_CHECK(pci_enable_bus_master(device));

    ram = cprkit_ram_open(ctx, "dma", RAM_SIZE, &reclaimed);
    tap_ok(ram >= 0 && !reclaimed, "RAM memfd created");
    mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
    if (mem == MAP_FAILED)
        tap_bail("mmap RAM");
    tap_ok(cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, mem, PROT) == 0,
           "RAM DMA-mapped at iova 0x%x", IOVA);
    r = cprkit_vfio_irq_enable(ctx, device, VFIO_PCI_MSI_IRQ_INDEX, 1, &evfd);
    tap_ok(r == 0, "MSI enabled on an eventfd (%d)", evfd);
    tap_ok(dma_round_trip(&bar, mem, evfd, 0, 0x1000, 0x11),
           "DMA round trip + MSI before the update");

    /* Blocker: anonymous memory cannot be mapped again by a new binary. */
    anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    tap_ok(cprkit_vfio_dma_map(ctx, container, 0x400000, 4096, anon, PROT) == 0,
           "anonymous memory maps (the wrapper is transparent)");
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    r = cprkit_check_update(ctx, self);
    tap_ok(r == -EOPNOTSUPP && strstr(cprkit_last_error(ctx), "0x400000") &&
               strstr(cprkit_last_error(ctx), "anonymous"),
           "blocker names the anonymous mapping: %s", cprkit_last_error(ctx));
    tap_ok(cprkit_vfio_dma_unmap(ctx, container, 0x400000, 4096) == 0,
           "anonymous mapping unmapped");
    r = cprkit_check_update(ctx, self);
    tap_ok(r == 0, "no blocker left%s%s", r ? ": " : "",
           r ? cprkit_last_error(ctx) : "");

    /* An exec that fails after the suspend: vaddrs come back. The final
     * exec suspends again, which type1 refuses for a suspended range, so
     * it succeeding proves the resume. */
    garbage = garbage_binary();
    {
        char *gargv[] = {garbage, NULL};

        r = cprkit_exec(ctx, garbage, gargv, NULL);
    }
    tap_ok(r == -ENOEXEC, "exec of a garbage binary fails: %s",
           cprkit_last_error(ctx));
    unlink(garbage);
    free(garbage);
    tap_ok(dma_round_trip(&bar, mem, evfd, 0x2000, 0x3000, 0x22),
           "DMA + MSI work after the failed exec");

    /* The factorial register keeps its value across the update. */
    bar_write32(&bar, 0x08, 5);

    /* A DMA the new image must find: device buffer -> RAM, started now,
     * done by edu's 100 ms timer while we exec. */
    fill(mem + 0x4000, XFER, 0x33);
    TAP_CHECK(edu_dma_to_device(&bar, IOVA + 0x4000, 0, XFER));
    memset(mem + BLACKOUT_OFF, 0, XFER);
    TAP_CHECK(edu_dma_start(&bar, EDU_BUF_ADDR, IOVA + BLACKOUT_OFF, XFER,
                            EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ));

    snprintf(evfd_arg, sizeof(evfd_arg), "%d", evfd);
    snprintf(counts, sizeof(counts), "%u:%u", tap_count(), tap_failed());
    {
        char *nargv[] = {argv[0], "restored", evfd_arg, counts,
                         rollback_mode ? "--rollback" : NULL, NULL};

        cprkit_exec(ctx, self, nargv, NULL);
    }
    tap_bail("cprkit_exec: %s", cprkit_last_error(ctx));
}

/* Reclaims everything again after a rollback and checks the device. */
static int rolled_back(cprkit_ctx *ctx)
{
    char bdf[16];
    struct vfio_bar bar;
    bool reclaimed = false;
    int container, group, device, ram, evfd = -1, r;
    uint8_t *mem;

    tap_ok(cprkit_is_rollback(ctx) && cprkit_generation(ctx) == 0,
           "the first binary runs again, rolled back: %s",
           cprkit_rollback_reason(ctx));
    TAP_CHECK(pci_find(0x1234, 0x11e8, bdf));
    container = cprkit_vfio_container_open(ctx, 0, &reclaimed);
    group = cprkit_vfio_group_open(ctx, container,
                                   (unsigned)pci_iommu_group(bdf), &reclaimed);
    device = cprkit_vfio_device_open(ctx, group, bdf, &reclaimed);
    if (!tap_ok(container >= 0 && group >= 0 && device >= 0 && reclaimed,
                "container, group and device reclaimed after the rollback"))
        tap_bail("%s", cprkit_last_error(ctx));
    TAP_CHECK(vfio_bar_open(device, 0, &bar));
    ram = cprkit_ram_open(ctx, "dma", RAM_SIZE, &reclaimed);
    mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
    if (ram < 0 || mem == MAP_FAILED)
        tap_bail("RAM after rollback: %s", cprkit_last_error(ctx));
    r = cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, mem, PROT);
    tap_ok(r == 0, "RAM remapped once more (%s)",
           r ? cprkit_last_error(ctx) : "ok");
    r = cprkit_vfio_irq_enable(ctx, device, VFIO_PCI_MSI_IRQ_INDEX, 1, &evfd);
    tap_ok(r == 0, "MSI eventfd reclaimed after the rollback");
    tap_ok(check(mem + BLACKOUT_OFF, XFER, 0x33),
           "the blackout DMA is still in RAM after the rollback");
    tap_ok(dma_round_trip(&bar, mem, evfd, 0x7000, 0x9000, 0x55),
           "fresh DMA + MSI in the rolled-back binary");
    r = cprkit_commit(ctx);
    tap_ok(r == 0, "commit after the rollback (%s)",
           r ? cprkit_last_error(ctx) : "ok");
    tap_plan(tap_count());
    tap_exit();
}

static int restored(cprkit_ctx *ctx, int old_evfd)
{
    char bdf[16];
    struct vfio_bar bar;
    bool reclaimed = false;
    int container, group, device, ram, evfd = -1, r;
    uint8_t *mem, *wrong;
    uint64_t count = 0;

    tap_ok(cprkit_generation(ctx) == 1, "restored: generation 1");
    TAP_CHECK(pci_find(0x1234, 0x11e8, bdf));
    container = cprkit_vfio_container_open(ctx, 0, &reclaimed);
    tap_ok(container >= 0 && reclaimed, "container reclaimed (%d)", container);
    group = cprkit_vfio_group_open(ctx, container, (unsigned)pci_iommu_group(bdf),
                                   &reclaimed);
    tap_ok(group >= 0 && reclaimed, "group reclaimed, no SET_CONTAINER (%d)",
           group);
    device = cprkit_vfio_device_open(ctx, group, bdf, &reclaimed);
    if (!tap_ok(device >= 0 && reclaimed, "device reclaimed (%d)", device))
        tap_bail("%s", cprkit_last_error(ctx));
    tap_ok(cprkit_vfio_device_reset(ctx, device) == 0,
           "reset of the reclaimed device is skipped");
    TAP_CHECK(vfio_bar_open(device, 0, &bar));
    tap_ok(bar_read32(&bar, 0x08) == 120,
           "edu factorial register kept its value (120)");

    ram = cprkit_ram_open(ctx, "dma", RAM_SIZE, &reclaimed);
    tap_ok(ram >= 0 && reclaimed, "RAM memfd reclaimed");
    mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
    if (mem == MAP_FAILED)
        tap_bail("mmap RAM");

    r = cprkit_commit(ctx);
    tap_ok(r == -EBUSY && strstr(cprkit_last_error(ctx), "not remapped"),
           "commit refused before the remap: %s", cprkit_last_error(ctx));

    /* The same file at another offset is other memory for the device. */
    wrong = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 4096);
    r = cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, wrong, PROT);
    tap_ok(r == -EXDEV, "remap at a wrong offset refused: %s",
           cprkit_last_error(ctx));
    munmap(wrong, RAM_SIZE);
    r = cprkit_vfio_dma_map(ctx, container, 0x500000, 4096, mem, PROT);
    tap_ok(r == -EBUSY, "a new mapping before commit is refused: %s",
           cprkit_last_error(ctx));
    r = cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, mem, PROT);
    tap_ok(r == 0, "RAM remapped with MAP_FLAG_VADDR at %p (%s)", (void *)mem,
           r ? cprkit_last_error(ctx) : "ok");

    r = cprkit_vfio_irq_enable(ctx, device, VFIO_PCI_MSI_IRQ_INDEX, 1, &evfd);
    tap_ok(r == 0 && evfd == old_evfd, "MSI eventfd reclaimed (%d, was %d)",
           evfd, old_evfd);
    TAP_CHECK(edu_dma_wait(&bar, EVENT_TIMEOUT_MS));
    r = eventfd_count_until(evfd, 1, EVENT_TIMEOUT_MS, &count);
    tap_ok(r == 0 && count >= 1,
           "the MSI raised during the blackout waited in the eventfd (%llu)",
           (unsigned long long)count);
    bar_write32(&bar, EDU_REG_IRQ_ACK, EDU_DMA_IRQ_VALUE);
    tap_ok(check(mem + BLACKOUT_OFF, XFER, 0x33),
           "the DMA done during the blackout landed in the RAM memfd");
    tap_ok(check(mem + 0x3000, XFER, 0x22), "RAM written before the update intact");
    tap_ok(dma_round_trip(&bar, mem, evfd, 0x5000, 0x6000, 0x44),
           "fresh DMA + MSI through the remapped RAM");
    if (rollback_mode) {
        char counts[32];

        /* The rollback execs the first binary's own command line; the TAP
         * numbering travels in the environment. */
        snprintf(counts, sizeof(counts), "%u:%u", tap_count() + 1,
                 tap_failed());
        setenv("HOOKS_EDU_TAP", counts, 1);
        tap_ok(true, "vetoing the update: rolling back");
        cprkit_rollback(ctx, "test veto after remap");
        tap_bail("cprkit_rollback: %s", cprkit_last_error(ctx));
    }
    r = cprkit_commit(ctx);
    tap_ok(r == 0, "commit (%s)", r ? cprkit_last_error(ctx) : "ok");
    /* The count depends on nothing but this program: plan at the end. */
    tap_plan(tap_count());
    tap_exit();
}

int main(int argc, char **argv)
{
    cprkit_ctx *ctx;
    int r;

    if (cprkit_new(&ctx) < 0)
        tap_bail("cprkit_new");
    cprkit_set_log_fn(ctx, log_fn, NULL);
    r = cprkit_load_incoming(ctx);
    if (r < 0)
        tap_bail("load: %s", cprkit_last_error(ctx));
    if (r == 0) {
        rollback_mode = argc > 1 && strcmp(argv[1], "--rollback") == 0;
        return fresh(ctx, argv);
    }
    if (cprkit_is_rollback(ctx)) {
        unsigned done = 0, failed = 0;
        const char *counts = getenv("HOOKS_EDU_TAP");

        if (!counts || sscanf(counts, "%u:%u", &done, &failed) != 2)
            tap_bail("rolled back without HOOKS_EDU_TAP");
        tap_resume(done, failed);
        return rolled_back(ctx);
    }
    if (argc < 4)
        tap_bail("restored without arguments");
    {
        unsigned done = 0, failed = 0;

        sscanf(argv[3], "%u:%u", &done, &failed);
        tap_resume(done, failed);
    }
    rollback_mode = argc > 4 && strcmp(argv[4], "--rollback") == 0;
    return restored(ctx, atoi(argv[2]));
}
