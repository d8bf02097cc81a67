/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What iommufd does for a live update, checked against the kernel built
 * with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV (tests/vm/build-kernel):
 * the DMA handoff cprkit's iommufd participant relies on.
 *
 * Phase 1: edu through its cdev (/dev/vfio/devices/vfioN) bound to an
 * iommufd, one IOAS, a memfd mapped with IOMMU_IOAS_MAP_FILE. The mapper's
 * own IOMMU_IOAS_CHANGE_PROCESS validates and changes nothing (the blocker
 * probe); an IOMMU_IOAS_MAP of anonymous memory makes it fail with EINVAL.
 * Then a device -> RAM DMA completing with an MSI and one more MSI, and an
 * exec with the iommufd, cdev, memfd and eventfd kept.
 * Phase 2 (the new image): nothing to remap; the DMA of the blackout is in
 * the memfd, both MSIs in the eventfd; CHANGE_PROCESS moves the pinned
 * pages (VmPin) to the new process, once, and is idempotent.
 * Phase 3 (a keeper's view): a child takes the pinning over and dies; the
 * parent takes it back from the dead process; a child that dies right
 * after mapping leaves a mapping the parent can take over and unmap.
 *
 * The whole test runs without CAP_IPC_LOCK (dropped from the bounding set
 * too, so the exec'd image lacks it as well): with it, iommufd accounts
 * nothing (IOPT_PAGES_ACCOUNT_NONE) yet still adds the pages to the
 * mapper's pinned_vm, which CHANGE_PROCESS then does not move and a later
 * unpin subtracts from the new process — VmPin would show nothing useful
 * (docs/kernel-facts.md).
 *
 * Only the phase-1/2 process prints TAP; children report through their
 * exit status.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "edu.h"
#include "linux-uapi-iommufd.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x1000000ull
#define IOVA_ANON 0x2000000ull
#define IOVA_CHILD 0x3000000ull
#define MEM_SIZE 0x10000ul /* 16 pages: VmPin 64 kB while mapped */
#define MEM_KB ((long)(MEM_SIZE / 1024))
#define XFER 1500u
#define OFF_SRC 0x0000
#define OFF_BLACKOUT 0x1000
#define OFF_FRESH_SRC 0x2000
#define OFF_FRESH_DST 0x3000
#define PLAN 27

static int xioctl(int fd, unsigned long req, void *arg)
{
    return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

static int change_process(int iommufd)
{
    struct iommu_ioas_change_process cp = { .size = sizeof(cp) };

    return xioctl(iommufd, IOMMU_IOAS_CHANGE_PROCESS, &cp);
}

static int map_file(int iommufd, uint32_t ioas, int fd, uint64_t iova)
{
    struct iommu_ioas_map_file m = {
        .size = sizeof(m),
        .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
                 IOMMU_IOAS_MAP_WRITEABLE,
        .ioas_id = ioas,
        .fd = fd,
        .start = 0,
        .length = MEM_SIZE,
        .iova = iova,
    };

    return xioctl(iommufd, IOMMU_IOAS_MAP_FILE, &m);
}

static int unmap(int iommufd, uint32_t ioas, uint64_t iova)
{
    struct iommu_ioas_unmap u = {
        .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = MEM_SIZE,
    };

    return xioctl(iommufd, IOMMU_IOAS_UNMAP, &u);
}

/* iommufd charges pinned pages to the mm of the process that pinned them
 * (or took them over), as pinned_vm: VmPin. */
static long vm_pin_kb(void)
{
    return proc_status_kb("VmPin");
}

/* The cdev of a PCI device: /sys/bus/pci/devices/<bdf>/vfio-dev/vfioN. */
static int cdev_open(const char *bdf)
{
    char dir[128], path[300];
    struct dirent *de;
    DIR *d;
    int fd;

    snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
    d = opendir(dir);
    if (!d)
        return -errno;
    while ((de = readdir(d)) && strncmp(de->d_name, "vfio", 4))
        ;
    if (!de) {
        closedir(d);
        return -ENOENT;
    }
    snprintf(path, sizeof(path), "/dev/vfio/devices/%s", de->d_name);
    closedir(d);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    tap_diag("edu %s is %s", bdf, path);
    return fd;
}

static void phase1(char *self)
{
    struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
    struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
    struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
    struct iommu_option opt = {
        .size = sizeof(opt),
        .option_id = IOMMU_OPTION_RLIMIT_MODE,
        .op = IOMMU_OPTION_OP_GET,
    };
    struct vfio_bar bar;
    char bdf[16];
    uint8_t *mem, *anon;
    void *addr = NULL;
    int iommufd, dev, memfd, efd, r;
    long pin0, pin;

    tap_plan(PLAN);
    TAP_CHECK(cap_ipc_lock_drop(true));
    TAP_CHECK(pci_find(EDU_VENDOR, EDU_DEVICE, bdf));
    iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
    if (!tap_ok(iommufd >= 0, "/dev/iommu opens"))
        tap_bail("no iommufd in this kernel: %s", strerror(errno));
    r = xioctl(iommufd, IOMMU_OPTION, &opt);
    tap_ok(r == 0 && opt.val64 == 0, "a fresh iommufd accounts pinned pages "
           "per user (IOMMU_OPTION_RLIMIT_MODE %llu, r=%d)",
           (unsigned long long)opt.val64, r);
    r = xioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc);
    tap_ok(r == 0, "IOMMU_IOAS_ALLOC gives IOAS %u (%d)", alloc.out_ioas_id, r);

    dev = cdev_open(bdf);
    if (!tap_ok(dev >= 0, "edu's VFIO cdev opens (%d)", dev))
        tap_bail("no cdev: CONFIG_VFIO_DEVICE_CDEV missing?");
    bind.iommufd = iommufd;
    r = xioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind);
    tap_ok(r == 0, "VFIO_DEVICE_BIND_IOMMUFD: devid %u (%d)", bind.out_devid, r);
    attach.pt_id = alloc.out_ioas_id;
    r = xioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
    tap_ok(r == 0, "VFIO_DEVICE_ATTACH_IOMMUFD_PT to the IOAS: pt_id %u "
           "comes back (%d)", attach.pt_id, r);
    TAP_CHECK(vfio_bar_open(dev, VFIO_PCI_BAR0_REGION_INDEX, &bar));
    TAP_CHECK(pci_enable_bus_master(dev));

    pin0 = vm_pin_kb();
    TAP_CHECK(memfd_buffer("iommufd-dma", MEM_SIZE, &memfd, &addr));
    mem = addr;
    r = map_file(iommufd, alloc.out_ioas_id, memfd, IOVA);
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin - pin0 == MEM_KB, "IOMMU_IOAS_MAP_FILE of a memfd "
           "pins it: VmPin %ld -> %ld kB (%d)", pin0, pin, r);

    r = change_process(iommufd);
    tap_ok(r == 0 && vm_pin_kb() == pin, "CHANGE_PROCESS by the mapper "
           "itself only validates: 0, VmPin unchanged (%d)", r);

    /* The blocker: one mapping by address, not by file. */
    anon = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        tap_bail("mmap: %s", strerror(errno));
    struct iommu_ioas_map m = {
        .size = sizeof(m),
        .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
                 IOMMU_IOAS_MAP_WRITEABLE,
        .ioas_id = alloc.out_ioas_id,
        .user_va = (uintptr_t)anon,
        .length = MEM_SIZE,
        .iova = IOVA_ANON,
    };
    r = xioctl(iommufd, IOMMU_IOAS_MAP, &m);
    tap_ok(r == 0, "IOMMU_IOAS_MAP of anonymous memory (%d)", r);
    r = change_process(iommufd);
    tap_ok(r == -EINVAL, "with it, CHANGE_PROCESS fails with EINVAL (%d): "
           "the update blocker", r);
    r = unmap(iommufd, alloc.out_ioas_id, IOVA_ANON);
    tap_ok(r == 0 && change_process(iommufd) == 0,
           "unmapped, CHANGE_PROCESS succeeds again (%d)", r);
    munmap(anon, MEM_SIZE);

    bytes_fill(mem + OFF_SRC, XFER, 0xa5);
    r = edu_dma_to_device(&bar, IOVA + OFF_SRC, 0, XFER);
    tap_ok(r == 0, "DMA RAM -> device through the IOAS (%d)", r);

    efd = TAP_CHECK(eventfd_new());
    TAP_CHECK(vfio_irq_set_eventfds(dev, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &efd));
    /* During the exec: a device -> RAM DMA completing with an MSI (edu runs
     * it ~100 ms later from a timer) and an MSI raised now. */
    r = edu_dma_start(&bar, EDU_BUF_ADDR, IOVA + OFF_BLACKOUT, XFER,
                      EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ);
    tap_ok(r == 0, "device -> RAM DMA started right before exec (%d)", r);
    bar_write32(&bar, EDU_REG_IRQ_RAISE, 0x1);
    vfio_bar_close(&bar);
    munmap(mem, MEM_SIZE);

    TAP_CHECK(cloexec_set(iommufd, false));
    TAP_CHECK(cloexec_set(dev, false));
    TAP_CHECK(cloexec_set(memfd, false));
    TAP_CHECK(cloexec_set(efd, false));
    char a_fds[128], a_count[32], a_failed[32];
    snprintf(a_fds, sizeof(a_fds), "fds=%d,%d,%d,%d,%u", iommufd, dev, memfd,
             efd, alloc.out_ioas_id);
    snprintf(a_count, sizeof(a_count), "count=%u", tap_count());
    snprintf(a_failed, sizeof(a_failed), "failed=%u", tap_failed());
    char *argv[] = { self, "phase=2", a_fds, a_count, a_failed, NULL };
    execv("/proc/self/exe", argv);
    tap_bail("execv: %s", strerror(errno));
}

/* A child that takes the pinning over (CHANGE_PROCESS) and exits: 0 if
 * the ioctl worked and its VmPin grew by the mapping. */
static int child_take_over(int iommufd)
{
    long before = vm_pin_kb();

    if (change_process(iommufd) < 0)
        return 1;
    return vm_pin_kb() - before == MEM_KB ? 0 : 2;
}

static void phase2_3(int argc, char **argv)
{
    int iommufd = -1, dev = -1, memfd = -1, efd = -1, memfd2, r, status;
    struct vfio_bar bar;
    long count, failed, pin;
    unsigned ioas = 0;
    uint64_t n = 0;
    uint8_t *mem;
    void *addr = NULL, *addr2 = NULL;
    uint32_t st;
    pid_t pid;

    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "fds=", 4))
            sscanf(argv[i] + 4, "%d,%d,%d,%d,%u", &iommufd, &dev, &memfd,
                   &efd, &ioas);
    if (efd < 0 || arg_get_int(argc, argv, "count", &count) < 0 ||
        arg_get_int(argc, argv, "failed", &failed) < 0)
        tap_bail("phase 2: bad arguments");
    tap_resume((unsigned)count, (unsigned)failed);
    for (int i = 0; i < 4; i++)
        TAP_CHECK(cloexec_set((int[]){ iommufd, dev, memfd, efd }[i], true));

    TAP_CHECK(vfio_bar_open(dev, VFIO_PCI_BAR0_REGION_INDEX, &bar));
    r = edu_dma_wait(&bar, EVENT_TIMEOUT_MS);
    tap_ok(r == 0, "the DMA started before exec has completed (%d)", r);
    r = memfd_map(memfd, MEM_SIZE, &addr);
    if (r < 0)
        tap_bail("mmap: %s", strerror(-r));
    mem = addr;
    tap_ok(bytes_check(mem + OFF_BLACKOUT, XFER, 0xa5),
           "data DMA'd during the exec is in the memfd, with no remap");
    r = eventfd_count_until(efd, 2, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 2, "both interrupts of the blackout are in the "
           "eventfd counter (count=%llu)", (unsigned long long)n);
    st = bar_read32(&bar, EDU_REG_IRQ_STATUS);
    bar_write32(&bar, EDU_REG_IRQ_ACK, st);

    pin = vm_pin_kb();
    tap_ok(pin == 0, "the new image starts with VmPin 0 (%ld kB)", pin);
    r = change_process(iommufd);
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin == MEM_KB, "one CHANGE_PROCESS moves the pinned "
           "pages to the new image: VmPin %ld kB (%d)", pin, r);
    r = change_process(iommufd);
    tap_ok(r == 0 && vm_pin_kb() == pin, "a second CHANGE_PROCESS changes "
           "nothing (%d)", r);

    bytes_fill(mem + OFF_FRESH_SRC, XFER, 0x3c);
    r = edu_dma_to_device(&bar, IOVA + OFF_FRESH_SRC, 0x800, XFER);
    r = r ?: edu_dma_to_ram(&bar, 0x800, IOVA + OFF_FRESH_DST, XFER);
    tap_ok(r == 0 && bytes_check(mem + OFF_FRESH_DST, XFER, 0x3c),
           "fresh DMA round trip on the untouched mapping (%d)", r);
    bar_write32(&bar, EDU_REG_IRQ_RAISE, 0x4);
    r = eventfd_wait(efd, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n == 1, "a new MSI arrives on the inherited eventfd");
    bar_write32(&bar, EDU_REG_IRQ_ACK, 0x4);

    /* Phase 3: a keeper's view. */
    pid = fork();
    if (pid == 0)
        _exit(child_take_over(iommufd));
    r = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ?
            WEXITSTATUS(status) : -1;
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin == 0, "a child takes the pinning over and exits: "
           "child %d, our VmPin %ld kB", r, pin);
    r = change_process(iommufd);
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin == MEM_KB, "we take it back from the dead process: "
           "VmPin %ld kB (%d)", pin, r);

    TAP_CHECK(memfd_buffer("iommufd-child", MEM_SIZE, &memfd2, &addr2));
    pid = fork();
    if (pid == 0) {
        if (map_file(iommufd, ioas, memfd2, IOVA_CHILD) < 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    r = waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) ?
            WTERMSIG(status) : -1;
    tap_ok(r == SIGKILL, "a child maps another memfd and is SIGKILLed (%d)", r);
    r = change_process(iommufd);
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin == 2 * MEM_KB, "its mapping is taken over with ours: "
           "VmPin %ld kB (%d)", pin, r);
    bytes_fill((uint8_t *)addr2, XFER, 0x77);
    r = edu_dma_to_device(&bar, IOVA_CHILD, 0x400, XFER);
    r = r ?: edu_dma_to_ram(&bar, 0x400, IOVA + OFF_FRESH_DST, XFER);
    tap_ok(r == 0 && bytes_check(mem + OFF_FRESH_DST, XFER, 0x77),
           "DMA through the dead child's mapping works (%d)", r);

    r = unmap(iommufd, ioas, IOVA_CHILD);
    r = r ?: unmap(iommufd, ioas, IOVA);
    pin = vm_pin_kb();
    tap_ok(r == 0 && pin == 0, "both unmap: VmPin %ld kB (%d)", pin, r);

    vfio_irq_disable(dev, VFIO_PCI_MSI_IRQ_INDEX);
    vfio_bar_close(&bar);
    munmap(addr2, MEM_SIZE);
    munmap(mem, MEM_SIZE);
    close(memfd2);
    close(efd);
    close(memfd);
    close(dev);
    close(iommufd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "phase=2"))
        phase2_3(argc, argv);
    else
        phase1(argv[0]);
    tap_exit();
}
