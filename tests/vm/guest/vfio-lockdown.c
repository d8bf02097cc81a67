/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a process under cprkit_lockdown() can still do to a device it
 * holds, tried on the NVMe (docs/operations.md "Security", docs/limits.md):
 *
 *  1. An FLR through the config region (PCIe Device Control "initiate
 *     FLR"): vfio-pci turns the write into pci_try_reset_function(). Not
 *     denied (see the docs); shown to reset the controller.
 *  2. VFIO_DEVICE_FEATURE low-power entry: allowed under CAPS|SECCOMP
 *     (shown: the mmap'd BAR is blocked until LOW_POWER_EXIT); EPERM with
 *     CPRKIT_LOCKDOWN_DEVICE_FEATURE, and the device keeps working.
 *  3. The sysfs "reset" file written by root without capabilities: it
 *     resets the device (mode 0200 owned by root: the owner needs no
 *     capability, and reset_store() checks none). EACCES for a non-root
 *     uid, EROFS with /sys mounted read-only: the documented remedies.
 *
 * Each lockdown happens in a forked child, as a filter and dropped
 * capabilities cannot be undone. The parent keeps the container, group
 * and device fds, so a child's exit resets nothing; the parent looks at
 * the controller after each child and starts it again when it was reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/pci_regs.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cprkit/cprkit-control.h>

#include "nvme.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x200000ull
#define PLAN 26

/* How long runtime PM gets to suspend the device after low-power entry
 * (pm_runtime_put() queues the idle check). */
#define SUSPEND_WAIT_MS 1000

static const uint64_t keep_caps = UINT64_C(1) << CAP_IPC_LOCK;

static struct vfio_pci p;
static struct nvme_ctrl c;
static uint16_t next_cid = 1;

/* ---- the controller, from the parent ---------------------------------- */

static int ctrl_start(void)
{
    int r;

    r = nvme_ctrl_init(&c, p.device);
    if (r < 0)
        return r;
    r = nvme_disable(&c);
    if (r < 0)
        return r;
    r = nvme_admin_queues_setup(&c, p.container, IOVA);
    if (r < 0)
        return r;
    return nvme_enable(&c);
}

/* After a reset the admin queue registers are gone: program them again. */
static int ctrl_restart(void)
{
    nvme_ctrl_fini(&c, p.container);
    return ctrl_start();
}

/* IDENTIFY CONTROLLER by polling: 0 when it completed with success and
 * this device's vendor ID, -ETIMEDOUT when nothing came back. */
static int identify(int timeout_ms)
{
    struct nvme_sqe sqe = {
        .opcode = NVME_ADMIN_IDENTIFY,
        .cid = next_cid++,
        .cdw10 = NVME_IDENTIFY_CNS_CTRL,
        .prp1 = c.iova + NVME_MEM_DATA,
    };
    const struct timespec tick = { .tv_nsec = 1000000 };
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    const uint8_t *id = c.mem + NVME_MEM_DATA;
    struct nvme_cqe cqe;

    memset(c.mem + NVME_MEM_DATA, 0, 4096);
    nvme_admin_submit(&c, &sqe);
    while (nvme_admin_reap(&c, &cqe) == 0) {
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        nanosleep(&tick, NULL);
    }
    if (cqe.cid != sqe.cid || (cqe.status >> 1) != 0)
        return -EIO;
    return (id[0] | id[1] << 8) == NVME_VENDOR ? 0 : -EIO;
}

static uint32_t csts(void)
{
    return bar_read32(&c.bar, NVME_REG_CSTS);
}

static uint16_t command_reg(void)
{
    uint16_t cmd = 0;

    TAP_CHECK(pci_config_read(p.device, PCI_COMMAND, &cmd, sizeof(cmd)));
    return cmd;
}

/* Offset of capability @id in config space, 0 if absent. */
static unsigned pci_cap(uint8_t id)
{
    int r = pci_cap_offset(p.device, id);

    TAP_CHECK(r);
    return (unsigned)r;
}

/* A line of a sysfs file of the device, "?" if it cannot be read. */
static void sysfs_read(const char *attr, char *buf, size_t size)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", p.bdf, attr);
    snprintf(buf, size, "?");
    f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(buf, (int)size, f))
        buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

/* ---- children --------------------------------------------------------- */

/* What a child measured: results (0 or -errno, or a value) and strings. */
struct probe {
    long v[10];
    char s[4][32];
};

/* Runs @fn in a child that shares the device fds; its measurements come
 * back through a pipe. */
static int in_child(void (*fn)(struct probe *), struct probe *ret)
{
    struct probe pr = { 0 };
    int fds[2], status;
    ssize_t n;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(fds[0]);
        fn(&pr);
        n = write(fds[1], &pr, sizeof(pr));
        _exit(n == (ssize_t)sizeof(pr) ? 0 : 1);
    }
    close(fds[1]);
    n = read(fds[0], &pr, sizeof(pr));
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid)
        return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        n != (ssize_t)sizeof(pr))
        return -ECHILD;
    *ret = pr;
    return 0;
}

static int lockdown(unsigned flags, uint64_t caps)
{
    cprkit_ctx *ctx;
    int r;

    r = cprkit_new(&ctx);
    if (r < 0)
        return r;
    r = cprkit_lockdown(ctx, flags, caps);
    if (r < 0)
        fprintf(stderr, "lockdown: %s\n", cprkit_last_error(ctx));
    cprkit_free(ctx);
    return r;
}

static int ioctl_result(int fd, unsigned long request, void *arg)
{
    return ioctl(fd, request, arg) < 0 ? -errno : 0;
}

/* VFIO_DEVICE_FEATURE_SET of a low-power feature; @wakeup_fd >= 0 for
 * LOW_POWER_ENTRY_WITH_WAKEUP. */
static int low_power(uint32_t feature, int wakeup_fd)
{
    struct {
        struct vfio_device_feature hdr;
        struct vfio_device_low_power_entry_with_wakeup wakeup;
    } arg = {
        .hdr.argsz = sizeof(arg.hdr),
        .hdr.flags = VFIO_DEVICE_FEATURE_SET | feature,
    };

    if (wakeup_fd >= 0) {
        arg.hdr.argsz = sizeof(arg);
        arg.wakeup.wakeup_eventfd = wakeup_fd;
    }
    return ioctl_result(p.device, VFIO_DEVICE_FEATURE, &arg);
}

static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig)
{
    siglongjmp(sigbus_jmp, sig);
}

/* 1 if reading CSTS through @bar's mmap raises SIGBUS, else 0 and the
 * value in *ret; -ENODEV if BAR0 is not mmap'd. */
static int mmap_read_faults(const struct vfio_bar *bar, uint32_t *ret)
{
    struct sigaction sa = { .sa_handler = on_sigbus }, old;
    int faulted = 0;

    if (!bar->map)
        return -ENODEV;
    sigaction(SIGBUS, &sa, &old);
    if (sigsetjmp(sigbus_jmp, 1) == 0)
        *ret = *(volatile uint32_t *)(bar->map + NVME_REG_CSTS);
    else
        faulted = 1;
    sigaction(SIGBUS, &old, NULL);
    return faulted;
}

/* CSTS with pread() on the region: vfio-pci resumes the device for it. */
static long pread_csts(void)
{
    uint32_t v;

    if (pread(p.device, &v, sizeof(v), (off_t)(c.bar.offset + NVME_REG_CSTS)) !=
        sizeof(v))
        return -errno;
    return v;
}

static void msleep(unsigned ms)
{
    struct timespec t = { .tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000 };

    nanosleep(&t, NULL);
}

static unsigned pcie_cap;

/* 1. FLR through the config region. */
static void child_flr(struct probe *pr)
{
    uint16_t devctl;

    pr->v[0] =
        lockdown(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP, keep_caps);
    if (pr->v[0] < 0)
        return;
    pr->v[1] = ioctl_result(p.device, VFIO_DEVICE_RESET, NULL);
    pr->v[2] = pci_config_read(p.device, pcie_cap + PCI_EXP_DEVCTL, &devctl,
                               sizeof(devctl));
    if (pr->v[2] < 0)
        return;
    devctl |= PCI_EXP_DEVCTL_BCR_FLR;
    pr->v[2] = pci_config_write(p.device, pcie_cap + PCI_EXP_DEVCTL, &devctl,
                                sizeof(devctl));
}

/* 2a. Low power allowed: what it does to a device in use. */
static void child_low_power(struct probe *pr)
{
    struct vfio_bar bar = { 0 };
    uint32_t v = 0;
    uint64_t n = 0;
    int efd;

    pr->v[0] =
        lockdown(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP, keep_caps);
    if (pr->v[0] < 0)
        return;
    /* The program's own mapping, in use: a fresh mmap, faulted in. The
     * one inherited from the parent is only reported (v[8]): measured,
     * on 6.1 it still reads the suspended device, on 7.3 it faults. */
    pr->v[1] = vfio_bar_open(p.device, VFIO_PCI_BAR0_REGION_INDEX, &bar);
    if (pr->v[1] >= 0 && mmap_read_faults(&bar, &v) != 0)
        pr->v[1] = -ENODEV;
    if (pr->v[1] < 0)
        return;
    mmap_read_faults(&c.bar, &v);
    pr->v[1] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, -1);
    if (pr->v[1] < 0)
        return;
    msleep(SUSPEND_WAIT_MS);
    sysfs_read("power/runtime_status", pr->s[0], sizeof(pr->s[0]));
    sysfs_read("power_state", pr->s[1], sizeof(pr->s[1]));
    pr->v[2] = mmap_read_faults(&bar, &v);
    pr->v[8] = mmap_read_faults(&c.bar, &v);
    pr->v[3] = pread_csts();
    pr->v[4] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, -1);
    pr->v[5] = mmap_read_faults(&bar, &v) != 0 ? -EFAULT : (long)v;
    vfio_bar_close(&bar);

    /* With a wake-up eventfd: signalled when the device is resumed. */
    efd = eventfd_new();
    pr->v[6] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, efd);
    if (pr->v[6] < 0)
        return;
    msleep(SUSPEND_WAIT_MS);
    sysfs_read("power/runtime_status", pr->s[2], sizeof(pr->s[2]));
    pr->v[7] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, -1);
    eventfd_drain(efd, &n);
    snprintf(pr->s[3], sizeof(pr->s[3]), "%llu", (unsigned long long)n);
}

/* 2b. Low power denied by CPRKIT_LOCKDOWN_DEVICE_FEATURE. */
static void child_low_power_denied(struct probe *pr)
{
    struct vfio_device_feature probe = {
        .argsz = sizeof(probe),
        .flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
                 VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
    };
    int efd = eventfd_new();

    pr->v[0] = lockdown(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP |
                            CPRKIT_LOCKDOWN_DEVICE_FEATURE,
                        keep_caps);
    if (pr->v[0] < 0)
        return;
    pr->v[1] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, -1);
    pr->v[2] = low_power(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, efd);
    pr->v[3] = ioctl_result(p.device, VFIO_DEVICE_FEATURE, &probe);
    msleep(SUSPEND_WAIT_MS);
    sysfs_read("power/runtime_status", pr->s[0], sizeof(pr->s[0]));
}

/* The device's sysfs reset file: 0 when "1" was written, else -errno. */
static long sysfs_reset(void)
{
    char path[128];
    long r = 0;
    int fd;

    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset", p.bdf);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, "1", 1) != 1)
        r = -errno;
    close(fd);
    return r;
}

static void cap_eff(char *buf, size_t size)
{
    char line[128];
    FILE *f = fopen("/proc/self/status", "re");

    snprintf(buf, size, "?");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "CapEff:", 7) == 0)
            snprintf(buf, size, "%.16s", line + 8 + strspn(line + 8, "\t "));
    fclose(f);
}

/* 3a. Root, capabilities dropped. */
static void child_sysfs_root(struct probe *pr)
{
    pr->v[0] =
        lockdown(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP, keep_caps);
    if (pr->v[0] < 0)
        return;
    cap_eff(pr->s[0], sizeof(pr->s[0]));
    pr->v[1] = geteuid();
    pr->v[2] = sysfs_reset();
}

/* 3b. Remedy: a non-root uid (the service's User=). */
static void child_sysfs_nonroot(struct probe *pr)
{
    pr->v[0] =
        setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0
            ? -errno
            : 0;
    if (pr->v[0] < 0)
        return;
    /* Capabilities went with uid 0; the filter needs none. */
    pr->v[1] = lockdown(CPRKIT_LOCKDOWN_SECCOMP, 0);
    if (pr->v[1] < 0)
        return;
    pr->v[2] = sysfs_reset();
}

/* 3c. Remedy: /sys read-only in the process's own mount namespace, as
 * systemd's ProtectKernelTunables= does before the program starts. */
static void child_sysfs_readonly(struct probe *pr)
{
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
        pr->v[0] = -errno;
        return;
    }
    pr->v[1] =
        lockdown(CPRKIT_LOCKDOWN_CAPS | CPRKIT_LOCKDOWN_SECCOMP, keep_caps);
    if (pr->v[1] < 0)
        return;
    pr->v[2] = sysfs_reset();
}

static const char *err(long r)
{
    return r < 0 ? strerror((int)-r) : "success";
}

/* ---- the tests -------------------------------------------------------- */

static void test_flr(void)
{
    struct probe pr;
    uint16_t cmd_before, cmd_after;
    uint32_t devcap = 0;
    int r;

    pcie_cap = pci_cap(PCI_CAP_ID_EXP);
    if (!pcie_cap)
        tap_bail("the NVMe has no PCIe capability");
    TAP_CHECK(pci_config_read(p.device, pcie_cap + PCI_EXP_DEVCAP, &devcap,
                              sizeof(devcap)));
    tap_diag("PCIe capability at 0x%x, DEVCAP 0x%08x (FLR %s)", pcie_cap,
             devcap, devcap & PCI_EXP_DEVCAP_FLR ? "yes" : "no");
    cmd_before = command_reg();
    tap_ok(csts() & NVME_CSTS_RDY && identify(EVENT_TIMEOUT_MS) == 0,
           "flr: controller ready and answering IDENTIFY before");

    r = in_child(child_flr, &pr);
    if (r < 0)
        tap_bail("flr child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0, "flr: lockdown CAPS|SECCOMP (%s)", err(pr.v[0]));
    tap_ok(pr.v[1] == -EPERM, "flr: VFIO_DEVICE_RESET fails with EPERM (%s)",
           err(pr.v[1]));
    tap_ok(pr.v[2] == 0,
           "flr: config write of DEVCTL.BCR_FLR is not denied (%s)",
           err(pr.v[2]));

    cmd_after = command_reg();
    tap_diag("after the FLR write: CSTS 0x%x CC 0x%x AQA 0x%x, command "
             "0x%04x (before 0x%04x)",
             csts(), bar_read32(&c.bar, NVME_REG_CC),
             bar_read32(&c.bar, NVME_REG_AQA), cmd_after, cmd_before);
    tap_ok(!(csts() & NVME_CSTS_RDY) &&
               !(bar_read32(&c.bar, NVME_REG_CC) & NVME_CC_EN),
           "flr: the controller was reset (CSTS.RDY 0, CC.EN 0)");
    r = identify(500);
    tap_ok(r == -ETIMEDOUT, "flr: the admin queue no longer answers (%s)",
           err(r));
    /* pci_try_reset_function() saves and restores config space. */
    tap_ok(cmd_after == cmd_before,
           "flr: command register restored by the PCI core (0x%04x)",
           cmd_after);
    r = ctrl_restart();
    if (r < 0)
        tap_bail("restart after FLR: %s", strerror(-r));
}

static void test_low_power(void)
{
    uint16_t pmcsr = 0;
    unsigned pm_cap;
    char control[32];
    struct probe pr;
    int r;

    pm_cap = pci_cap(PCI_CAP_ID_PM);
    if (pm_cap)
        TAP_CHECK(pci_config_read(p.device, pm_cap + PCI_PM_CTRL, &pmcsr,
                                  sizeof(pmcsr)));
    sysfs_read("power/control", control, sizeof(control));
    tap_diag("PM capability at 0x%x, PMCSR 0x%04x (NoSoftRst %d); runtime "
             "PM control '%s'",
             pm_cap, pmcsr, !!(pmcsr & PCI_PM_CTRL_NO_SOFT_RESET), control);
    r = in_child(child_low_power, &pr);
    if (r < 0)
        tap_bail("low-power child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0, "low-power: lockdown CAPS|SECCOMP (%s)", err(pr.v[0]));
    tap_ok(pr.v[1] == 0, "low-power: LOW_POWER_ENTRY allowed (%s)",
           err(pr.v[1]));
    tap_diag("low-power: after entry power_state '%s'; the mapping "
             "inherited over fork %s",
             pr.s[1], pr.v[8] ? "faults" : "still reads the BAR");
    if (strcmp(pr.s[0], "?") == 0)
        /* No power/runtime_status: a kernel without runtime PM
         * (CONFIG_PM off, the 7.3-iommufd build): vfio-pci accepts the
         * entry and blocks the mmap, the device stays powered. */
        tap_ok(strcmp(pr.s[1], "D0") == 0,
               "low-power: kernel without runtime PM: the device stays in D0 "
               "(power_state '%s'), only its mmap is blocked",
               pr.s[1]);
    else
        tap_ok(strcmp(pr.s[0], "suspended") == 0,
               "low-power: the device in use is runtime-suspended "
               "(runtime_status '%s', power_state '%s')",
               pr.s[0], pr.s[1]);
    tap_ok(pr.v[2] == 1, "low-power: mmap'd BAR access raises SIGBUS");
    tap_ok(pr.v[3] >= 0 && (pr.v[3] & NVME_CSTS_RDY),
           "low-power: pread() of the BAR wakes it (CSTS 0x%lx)", pr.v[3]);
    tap_ok(pr.v[4] == 0 && pr.v[5] >= 0,
           "low-power: LOW_POWER_EXIT opens the mmap again (%s, CSTS 0x%lx)",
           err(pr.v[4]), pr.v[5]);
    tap_ok(pr.v[6] == 0 && pr.v[7] == 0,
           "low-power: LOW_POWER_ENTRY_WITH_WAKEUP and exit (%s, %s; "
           "runtime_status '%s', wake-ups %s)",
           err(pr.v[6]), err(pr.v[7]), pr.s[2], pr.s[3]);
    r = identify(EVENT_TIMEOUT_MS);
    tap_ok(csts() & NVME_CSTS_RDY && r == 0,
           "low-power: after exit the controller kept its state, ready and "
           "answering IDENTIFY (CSTS 0x%x, %s)",
           csts(), err(r));
    if (r < 0 && ctrl_restart() < 0)
        tap_bail("restart after low power");

    r = in_child(child_low_power_denied, &pr);
    if (r < 0)
        tap_bail("low-power-denied child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0,
           "device-feature: lockdown CAPS|SECCOMP|"
           "DEVICE_FEATURE (%s)",
           err(pr.v[0]));
    tap_ok(pr.v[1] == -EPERM && pr.v[2] == -EPERM && pr.v[3] == -EPERM,
           "device-feature: LOW_POWER_ENTRY, _WITH_WAKEUP and a PROBE fail "
           "with EPERM (%s, %s, %s)",
           err(pr.v[1]), err(pr.v[2]), err(pr.v[3]));
    r = identify(EVENT_TIMEOUT_MS);
    tap_ok(csts() & NVME_CSTS_RDY && r == 0 &&
               mmap_read_faults(&c.bar, &(uint32_t){ 0 }) == 0,
           "device-feature: the device keeps working (runtime_status '%s', "
           "IDENTIFY %s)",
           pr.s[0], err(r));
}

static void test_sysfs_reset(void)
{
    struct probe pr;
    int r;

    r = in_child(child_sysfs_root, &pr);
    if (r < 0)
        tap_bail("sysfs child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0 && pr.v[1] == 0,
           "sysfs: lockdown CAPS|SECCOMP as root (%s, CapEff %s)", err(pr.v[0]),
           pr.s[0]);
    tap_ok(pr.v[2] == 0, "sysfs: root without capabilities writes 'reset' (%s)",
           err(pr.v[2]));
    r = identify(500);
    tap_ok(!(csts() & NVME_CSTS_RDY) && r == -ETIMEDOUT,
           "sysfs: the controller was reset (CSTS 0x%x, IDENTIFY %s)", csts(),
           err(r));
    r = ctrl_restart();
    if (r < 0)
        tap_bail("restart after sysfs reset: %s", strerror(-r));

    r = in_child(child_sysfs_nonroot, &pr);
    if (r < 0)
        tap_bail("sysfs non-root child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0 && pr.v[1] == 0 && pr.v[2] == -EACCES,
           "sysfs: uid 65534 cannot open 'reset' (%s; setresuid %s, "
           "lockdown %s)",
           err(pr.v[2]), err(pr.v[0]), err(pr.v[1]));
    r = in_child(child_sysfs_readonly, &pr);
    if (r < 0)
        tap_bail("sysfs read-only child: %s", strerror(-r));
    tap_ok(pr.v[0] == 0 && pr.v[1] == 0 && pr.v[2] == -EROFS,
           "sysfs: with /sys read-only root gets EROFS (%s; mount %s, "
           "lockdown %s)",
           err(pr.v[2]), err(pr.v[0]), err(pr.v[1]));
    r = identify(EVENT_TIMEOUT_MS);
    tap_ok(csts() & NVME_CSTS_RDY && r == 0,
           "sysfs: after the refused writes the controller still answers "
           "(%s)",
           err(r));
}

int main(void)
{
    int r;

    tap_plan(PLAN);
    r = vfio_pci_open(NVME_VENDOR, NVME_DEVICE, &p);
    if (!tap_ok(r == 0, "nvme %s opened through vfio-pci", p.bdf))
        tap_bail("vfio_pci_open: %s", strerror(-r));
    r = ctrl_start();
    if (!tap_ok(r == 0, "controller enabled (%s)", err(r)))
        tap_bail("controller did not start");

    test_flr();
    test_low_power();
    test_sysfs_reset();

    nvme_ctrl_fini(&c, p.container);
    vfio_pci_close(&p);
    tap_exit();
}
