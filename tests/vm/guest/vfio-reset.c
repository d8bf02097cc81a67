/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fact cprkit is built on: vfio-pci resets a device (FLR) when its
 * device fd is opened the first time and when the last one is closed. A
 * device fd that stays open across execve() keeps the device as it was; one
 * that is closed and reopened gets a reset device.
 *
 * Phase 1 enables an NVMe controller (CSTS.RDY=1), clears FD_CLOEXEC on the
 * container, group and device fds and execs itself. Phase 2 (argv
 * "phase=2 ...") checks the controller is still enabled through the
 * inherited fd, then closes it, reopens it and checks the controller was
 * reset.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvme.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x200000ull
#define PLAN 9

struct ctrl_regs {
    uint32_t cc, csts, aqa;
    uint64_t asq;
};

static int read_regs(int device, struct ctrl_regs *ret)
{
    struct vfio_bar bar;
    int r;

    r = vfio_bar_open(device, VFIO_PCI_BAR0_REGION_INDEX, &bar);
    if (r < 0)
        return r;
    ret->cc = bar_read32(&bar, NVME_REG_CC);
    ret->csts = bar_read32(&bar, NVME_REG_CSTS);
    ret->aqa = bar_read32(&bar, NVME_REG_AQA);
    ret->asq = bar_read64(&bar, NVME_REG_ASQ);
    vfio_bar_close(&bar);
    return 0;
}

static void phase1(char *self)
{
    char a_container[32], a_group[32], a_device[32], a_bdf[32], a_asq[32],
        a_count[32], a_failed[32];
    struct nvme_ctrl c;
    struct vfio_pci p;
    int r;

    tap_plan(PLAN);
    r = vfio_pci_open(NVME_VENDOR, NVME_DEVICE, &p);
    if (!tap_ok(r == 0, "nvme opened through vfio-pci"))
        tap_bail("vfio_pci_open: %s", strerror(-r));
    tap_ok(cloexec_get(p.device) == 1,
           "VFIO_GROUP_GET_DEVICE_FD returns the fd with FD_CLOEXEC set");

    TAP_CHECK(nvme_ctrl_init(&c, p.device));
    TAP_CHECK(nvme_disable(&c));
    TAP_CHECK(nvme_admin_queues_setup(&c, p.container, IOVA));
    r = nvme_enable(&c);
    if (!tap_ok(r == 0 && (bar_read32(&c.bar, NVME_REG_CSTS) & NVME_CSTS_RDY),
                "controller enabled: CSTS.RDY=1 (%d)", r))
        tap_bail("controller did not become ready");

    /*
     * The controller is idle (no command outstanding), so its queue memory
     * can go: this test is about the device fd, not about DMA mappings.
     */
    TAP_CHECK(vfio_dma_unmap(p.container, c.iova, NVME_MEM_SIZE));
    munmap(c.mem, NVME_MEM_SIZE);
    close(c.memfd);
    vfio_bar_close(&c.bar);

    /* Only now, right before exec, let the fds through (as cprkit does). */
    TAP_CHECK(cloexec_set(p.container, false));
    TAP_CHECK(cloexec_set(p.group, false));
    TAP_CHECK(cloexec_set(p.device, false));

    snprintf(a_container, sizeof(a_container), "container=%d", p.container);
    snprintf(a_group, sizeof(a_group), "group=%d", p.group);
    snprintf(a_device, sizeof(a_device), "device=%d", p.device);
    snprintf(a_bdf, sizeof(a_bdf), "bdf=%s", p.bdf);
    snprintf(a_asq, sizeof(a_asq), "asq=%llu",
             (unsigned long long)(IOVA + NVME_MEM_SQ));
    snprintf(a_count, sizeof(a_count), "count=%u", tap_count());
    snprintf(a_failed, sizeof(a_failed), "failed=%u", tap_failed());
    char *argv[] = { self,     "phase=2", a_container, a_group, a_device,
                     a_bdf,    a_asq,     a_count,     a_failed, NULL };
    execv("/proc/self/exe", argv);
    tap_bail("execv: %s", strerror(errno));
}

static void phase2(int argc, char **argv)
{
    long container, group, device, asq, count, failed;
    struct vfio_device_info info;
    struct ctrl_regs regs;
    const char *bdf = NULL;
    bool inherited;
    int fd;

    if (arg_get_int(argc, argv, "container", &container) < 0 ||
        arg_get_int(argc, argv, "group", &group) < 0 ||
        arg_get_int(argc, argv, "device", &device) < 0 ||
        arg_get_int(argc, argv, "asq", &asq) < 0 ||
        arg_get_int(argc, argv, "count", &count) < 0 ||
        arg_get_int(argc, argv, "failed", &failed) < 0)
        tap_bail("phase 2: bad arguments");
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "bdf=", 4))
            bdf = argv[i] + 4;
    if (!bdf)
        tap_bail("phase 2: no bdf=");
    tap_resume((unsigned)count, (unsigned)failed);

    /* Back to CLOEXEC at once: these must not leak into other children. */
    TAP_CHECK(cloexec_set((int)container, true));
    TAP_CHECK(cloexec_set((int)group, true));

    inherited = vfio_device_info((int)device, &info) == 0 &&
                cloexec_set((int)device, true) == 0;
    tap_ok(inherited, "device fd %ld survived exec", device);
    /*
     * Look at the device through whatever fd there is: if the inherited one
     * is gone (closed at exec), a fresh one shows what that close did.
     */
    fd = inherited ? (int)device : TAP_CHECK(vfio_pci_device_fd((int)group,
                                                                 bdf));
    TAP_CHECK(read_regs(fd, &regs));
    tap_ok(regs.csts & NVME_CSTS_RDY,
           "fd kept open across exec: no reset, CSTS.RDY still 1 "
           "(CSTS 0x%x)", regs.csts);
    tap_ok((regs.cc & NVME_CC_EN) && regs.asq == (uint64_t)asq &&
               regs.aqa != 0,
           "fd kept open across exec: CC.EN, AQA, ASQ as programmed "
           "(CC 0x%x AQA 0x%x ASQ 0x%llx)", regs.cc, regs.aqa,
           (unsigned long long)regs.asq);

    /* Last close: vfio-pci disables the device and resets it. */
    close(fd);
    fd = vfio_pci_device_fd((int)group, bdf);
    if (!tap_ok(fd >= 0, "device fd reopened from the group (%d)", fd))
        tap_bail("cannot reopen the device");
    TAP_CHECK(read_regs(fd, &regs));
    tap_ok(!(regs.csts & NVME_CSTS_RDY),
           "close + reopen: device was reset, CSTS.RDY fell to 0 "
           "(CSTS 0x%x)", regs.csts);
    /*
     * A reset clears all of CC; clearing CC.EN alone (what a driver does)
     * would leave the queue entry sizes (0x460000) in place. QEMU keeps
     * AQA/ASQ/ACQ over a function reset, so they prove nothing here.
     */
    tap_ok(regs.cc == 0, "close + reopen: CC back to its reset value 0 "
           "(CC 0x%x)", regs.cc);
    tap_diag("after reopen: AQA 0x%x ASQ 0x%llx", regs.aqa,
             (unsigned long long)regs.asq);

    close(fd);
    close((int)group);
    close((int)container);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "phase=2"))
        phase2(argc, argv);
    else
        phase1(argv[0]);
    tap_exit();
}
