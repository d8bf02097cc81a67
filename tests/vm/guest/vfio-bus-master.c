/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The load's bus-master check on a real device (issue 15): edu, opened
 * through cprkit with bus mastering on and a DMA mapping, is preserved by
 * an update. The new binary turns bus mastering off through the inherited
 * device fd *before* cprkit_load_incoming() (standing in for a reset or a
 * stray config write during the blackout): the load refuses the device
 * with -ESTALE, and the binary rolls back. The rolled-back binary turns it
 * on again before its load, which then succeeds, reclaims and commits.
 */
#include <errno.h>
#include <linux/pci_regs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-vfio.h>

#include "tap.h"
#include "vfio-util.h"

#define RAM_SIZE 0x10000u
#define IOVA 0x100000u
#define PROT (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

static void log_fn(void *userdata, int priority, const char *msg)
{
    (void)userdata;
    if (priority <= 6)
        tap_diag("cprkit: %s", msg);
}

static int set_master(int device, bool on)
{
    uint16_t cmd;
    int r = pci_config_read(device, PCI_COMMAND, &cmd, sizeof(cmd));

    if (r < 0)
        return r;
    cmd = on ? (cmd | PCI_COMMAND_MASTER) : (cmd & ~PCI_COMMAND_MASTER);
    return pci_config_write(device, PCI_COMMAND, &cmd, sizeof(cmd));
}

/* Open (fresh) or reclaim everything; returns the device fd. */
static int open_all(cprkit_ctx *ctx, bool expect_reclaim)
{
    bool reclaimed = !expect_reclaim;
    int container, group, device, ram;
    char bdf[16];
    void *mem;

    TAP_CHECK(pci_find(EDU_VENDOR, EDU_DEVICE, bdf));
    container = cprkit_vfio_container_open(ctx, 0, &reclaimed);
    group = cprkit_vfio_group_open(ctx, container,
                                   (unsigned)pci_iommu_group(bdf), NULL);
    device = cprkit_vfio_device_open(ctx, group, bdf, &reclaimed);
    if (container < 0 || group < 0 || device < 0 || reclaimed != expect_reclaim)
        tap_bail("open: %s", cprkit_last_error(ctx));
    ram = cprkit_ram_open(ctx, "dma", RAM_SIZE, NULL);
    mem = ram < 0 ? MAP_FAILED
                  : mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                         ram, 0);
    if (mem == MAP_FAILED ||
        cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, mem, PROT) < 0)
        tap_bail("RAM: %s", cprkit_last_error(ctx));
    return device;
}

static void save_tap(const char *stage, int device)
{
    char buf[64];

    snprintf(buf, sizeof(buf), "%s:%u:%u:%d", stage, tap_count(), tap_failed(),
             device);
    setenv("BUS_MASTER_TEST", buf, 1);
}

int main(int argc, char **argv)
{
    const char *env = getenv("BUS_MASTER_TEST");
    char stage[16] = "", self[256];
    unsigned done = 0, failed = 0;
    int device = -1, r;
    cprkit_ctx *ctx;
    ssize_t n;

    (void)argc;
    if (env &&
        sscanf(env, "%15[a-z]:%u:%u:%d", stage, &done, &failed, &device) == 4)
        tap_resume(done, failed);
    /* Before the load: what happens to the device during the blackout. */
    if (strcmp(stage, "update") == 0)
        tap_ok(set_master(device, false) == 0,
               "new binary: bus mastering of the preserved edu turned off "
               "before the load");
    else if (strcmp(stage, "rollback") == 0)
        tap_ok(set_master(device, true) == 0,
               "rolled-back binary: bus mastering turned on again before "
               "the load");

    if (cprkit_new(&ctx) < 0)
        tap_bail("cprkit_new");
    cprkit_set_log_fn(ctx, log_fn, NULL);
    r = cprkit_load_incoming(ctx);

    if (strcmp(stage, "update") == 0) {
        tap_ok(r == -ESTALE &&
                   strstr(cprkit_last_error(ctx), "had bus mastering enabled"),
               "the load refuses the device: %s", cprkit_last_error(ctx));
        save_tap("rollback", device);
        cprkit_rollback(ctx, cprkit_last_error(ctx));
        tap_bail("cprkit_rollback: %s", cprkit_last_error(ctx));
    }
    if (strcmp(stage, "rollback") == 0) {
        tap_ok(r == 1 && cprkit_is_rollback(ctx),
               "the rolled-back binary loads the state (%s)",
               r == 1 ? cprkit_rollback_reason(ctx) : cprkit_last_error(ctx));
        tap_ok(open_all(ctx, true) == device, "edu reclaimed");
        r = cprkit_commit(ctx);
        tap_ok(r == 0, "commit (%s)", r ? cprkit_last_error(ctx) : "ok");
        tap_plan(tap_count());
        tap_exit();
    }

    if (r != 0)
        tap_bail("fresh load: %d %s", r, cprkit_last_error(ctx));
    device = open_all(ctx, false);
    TAP_CHECK(pci_enable_bus_master(device));
    tap_ok(true, "edu opened, bus mastering on, RAM DMA-mapped");
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    save_tap("update", device);
    {
        char *nargv[] = {argv[0], NULL};

        cprkit_exec(ctx, self, nargv, NULL);
    }
    tap_bail("cprkit_exec: %s", cprkit_last_error(ctx));
}
