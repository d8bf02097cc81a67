/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What VFIO type1 lets a "keeper" do when the process that made a DMA
 * mapping dies while the keeper holds dups of the container, group and
 * device fds and of the memfd behind the mapping.
 *
 * Process A (a forked child) opens edu, maps a memfd MAP_SHARED, DMA-maps
 * it, wires MSI to an eventfd and hands container/group/device/memfd/
 * eventfd to the parent (the keeper) with SCM_RIGHTS; then the parent
 * SIGKILLs it. Child B is a fresh process forked by the keeper after A
 * died (it inherits the keeper's fds, as a restarted program would get
 * them). Only the parent prints TAP; children report their ioctl results
 * through pipes.
 *
 * The test documents facts: a kernel answer that differs from what the
 * source reading predicts is still "ok", with a diag line saying
 * "DIFFERS". A check fails only when the test itself is broken, e.g. the
 * kernel accepted something and DMA then did not land.
 *
 *   Q1  A dies with its vaddr valid: DMA lands, MSI arrives (keeper side)
 *   Q6  ... and the keeper can fully unmap that mapping
 *   Q2a the keeper (never mapped) suspends the dead mapper's vaddr, B remaps
 *   Q2b B suspends it itself and remaps; VmLck of B
 *   Q3  A suspends, then dies; DMA while suspended; B remaps; VmLck of B
 *   Q3r as Q3 with B lacking CAP_IPC_LOCK: RLIMIT_MEMLOCK applies to B
 *   Q4  suspend of an invalid range; UNMAP_ALL|VADDR with one invalid
 *   Q5  steady-state suspension: DMA, new maps, group attach, full unmap
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "edu.h"
#include "tap.h"
#include "vfio-util.h"

#define IOVA 0x1000000ull   /* the mapping A makes */
#define IOVA_NEW 0x2000000ull /* a fresh range mapped during a suspension */
#define MEM_SIZE 0x10000ul  /* 16 pages: VmLck 64 kB when pinned */
#define MEM_KB ((long)(MEM_SIZE / 1024))
#define XFER 1024u
#define OFF_SRC 0x0000
#define OFF_DST 0x1000
#define NRANGES 3           /* Q4: three mappings of one memfd */
#define PLAN 45

static char kernel[128];
static uint8_t next_seed = 0x11;

/* ---------------------------------------------------------------------
 * Small helpers
 */

static const char *errname(int r)
{
    static char buf[32];

    switch (-r) {
    case 0: return "0";
    case EINVAL: return "-EINVAL";
    case EBUSY: return "-EBUSY";
    case ENOENT: return "-ENOENT";
    case EEXIST: return "-EEXIST";
    case ENOMEM: return "-ENOMEM";
    case ESRCH: return "-ESRCH";
    case EPERM: return "-EPERM";
    case EFAULT: return "-EFAULT";
    case ENODEV: return "-ENODEV";
    case EIO: return "-EIO";
    case EAGAIN: return "-EAGAIN";
    case ENOTTY: return "-ENOTTY";
    case ENXIO: return "-ENXIO";
    default:
        snprintf(buf, sizeof(buf), "%d", r);
        return buf;
    }
}

/*
 * One fact: always "ok" (the kernel's answer is the finding), with a diag
 * line giving the answer, the expectation from the source reading and the
 * kernel it ran on.
 */
__attribute__((format(printf, 3, 4)))
static void fact(int r, int expected, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    tap_ok(true, "%s: %s", what, errname(r));
    tap_diag("  kernel %s returned %s, expected %s%s", kernel, errname(r),
             errname(expected),
             r == expected ? "" : "  <== DIFFERS from the source reading");
}

static long vmlck_kb(void)
{
    return proc_status_kb("VmLck");
}

/* Raw type1 ioctls: the kernel's errno and the size it reports. */
static int dma_map_raw(int container, uint32_t flags, uint64_t iova,
                       const void *vaddr, uint64_t size)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = flags,
        .vaddr = (uintptr_t)vaddr,
        .iova = iova,
        .size = size,
    };

    return ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0 ? -errno : 0;
}

static int dma_unmap_raw(int container, uint32_t flags, uint64_t iova,
                         uint64_t size, uint64_t *ret_size)
{
    struct vfio_iommu_type1_dma_unmap unmap = {
        .argsz = sizeof(unmap),
        .flags = flags,
        .iova = iova,
        .size = size,
    };
    int r;

    r = ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0 ? -errno : 0;
    if (ret_size)
        *ret_size = unmap.size;
    return r;
}

static int suspend(int container, uint64_t iova, uint64_t size)
{
    return dma_unmap_raw(container, VFIO_DMA_UNMAP_FLAG_VADDR, iova, size,
                         NULL);
}

static int remap(int container, uint64_t iova, const void *vaddr,
                 uint64_t size)
{
    return dma_map_raw(container, VFIO_DMA_MAP_FLAG_VADDR, iova, vaddr,
                       size);
}

static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * What the keeper holds: dups of A's fds, its own mmap of the memfd and
 * of BAR0.
 */
struct held {
    int container, group, device, memfd, efd;
    uint8_t *mem;           /* the keeper's own mapping of the memfd */
    struct vfio_bar bar;
    pid_t a_pid;
    long a_vmlck;           /* A's VmLck right before it died */
    int a_suspend;          /* A's own UNMAP_DMA|VADDR (if asked) */
};

/* A's report, sent with the fds. */
struct a_msg {
    int err;                /* < 0: set-up step failed (a broken test) */
    int line;
    int update_vaddr;       /* VFIO_CHECK_EXTENSION(VFIO_UPDATE_VADDR) */
    int suspend;
    long vmlck;
};

#define A_TRY(expr)                                                         \
    do {                                                                    \
        int _r = (expr);                                                    \
        if (_r < 0) {                                                       \
            msg.err = _r;                                                   \
            msg.line = __LINE__;                                            \
            goto send;                                                      \
        }                                                                   \
    } while (0)

/*
 * Process A: opens everything itself, maps, wires MSI, optionally
 * suspends its vaddr, reports and hands the fds over, then waits to be
 * killed (its mapping of the memfd stays in place until it dies).
 */
static noreturn void a_main(int sock, bool do_suspend)
{
    struct a_msg msg = { 0 };
    struct vfio_pci p = { .container = -1, .group = -1, .device = -1 };
    void *mem = NULL;
    int memfd = -1, efd = -1, nfds = 0;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(5 * sizeof(int))];
    } cbuf;
    struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    char c;

    A_TRY(vfio_pci_open(EDU_VENDOR, EDU_DEVICE, &p));
    msg.update_vaddr = vfio_check_extension(p.container, VFIO_UPDATE_VADDR);
    A_TRY(pci_enable_bus_master(p.device));
    A_TRY(memfd_buffer("keeper-facts", MEM_SIZE, &memfd, &mem));
    memset(mem, 0, MEM_SIZE);
    A_TRY(vfio_dma_map(p.container, IOVA, mem, MEM_SIZE));
    efd = eventfd_new();
    A_TRY(efd);
    A_TRY(vfio_irq_set_eventfds(p.device, VFIO_PCI_MSI_IRQ_INDEX, 0, 1,
                                &efd));
    if (do_suspend)
        msg.suspend = suspend(p.container, IOVA, MEM_SIZE);
    msg.vmlck = vmlck_kb();
    nfds = 5;
send:
    if (nfds) {
        int fds[5] = { p.container, p.group, p.device, memfd, efd };

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    }
    if (sendmsg(sock, &mh, 0) < 0)
        _exit(2);
    /* Wait for the SIGKILL; EOF (the keeper went away) ends it too. */
    while (read(sock, &c, 1) < 0 && errno == EINTR)
        ;
    _exit(0);
}

/*
 * Fork A, take over its fds, map the memfd and BAR0 in the keeper, kill
 * A. Bails out when A could not set up: nothing can be learned then.
 */
static void a_run_and_kill(struct held *h, bool do_suspend)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(5 * sizeof(int))];
    } cbuf;
    struct a_msg msg;
    struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
    };
    struct cmsghdr *cm;
    int sv[2], fds[5], status;
    void *addr;
    ssize_t n;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        tap_bail("socketpair: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        tap_bail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(sv[0]);
        a_main(sv[1], do_suspend);
    }
    close(sv[1]);
    do
        n = recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg))
        tap_bail("no report from process A (%zd: %s)", n, strerror(errno));
    if (msg.err < 0)
        tap_bail("process A: set-up failed at line %d: %s", msg.line,
                 strerror(-msg.err));
    if (msg.update_vaddr != 1)
        tap_bail("container lacks VFIO_UPDATE_VADDR (%d)", msg.update_vaddr);
    cm = CMSG_FIRSTHDR(&mh);
    if (!cm || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(fds)))
        tap_bail("process A sent no fds");
    memcpy(fds, CMSG_DATA(cm), sizeof(fds));
    h->container = fds[0];
    h->group = fds[1];
    h->device = fds[2];
    h->memfd = fds[3];
    h->efd = fds[4];
    h->a_pid = pid;
    h->a_vmlck = msg.vmlck;
    h->a_suspend = msg.suspend;

    TAP_CHECK(memfd_map(h->memfd, MEM_SIZE, &addr));
    h->mem = addr;
    TAP_CHECK(vfio_bar_open(h->device, VFIO_PCI_BAR0_REGION_INDEX, &h->bar));

    /* A is blocked in read(): its vaddr is as it left it. */
    if (kill(pid, SIGKILL) < 0)
        tap_bail("kill A: %s", strerror(errno));
    if (waitpid(pid, &status, 0) != pid)
        tap_bail("waitpid A: %s", strerror(errno));
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        tap_bail("process A did not die of SIGKILL (status 0x%x)", status);
    close(sv[0]);
}

static void held_close(struct held *h)
{
    vfio_bar_close(&h->bar);
    if (h->mem)
        munmap(h->mem, MEM_SIZE);
    h->mem = NULL;
    close(h->efd);
    close(h->memfd);
    close(h->device);
    close(h->group);
    close(h->container);
}

/*
 * Device DMA through the mapping at @iova: RAM -> device -> RAM with a
 * fresh pattern, the second transfer raising an MSI. The memory is read
 * and written through @mem, the keeper's own mapping of the same pages.
 * Returns whether the data landed; *ret_msi is the eventfd count seen.
 */
static bool dma_round_trip(const struct held *h, uint64_t iova, uint8_t *mem,
                           uint64_t *ret_msi)
{
    uint8_t seed = next_seed++;
    uint64_t n = 0;
    uint32_t st;
    int r;

    eventfd_drain(h->efd, &n);
    bytes_fill(mem + OFF_SRC, XFER, seed);
    memset(mem + OFF_DST, 0, XFER);
    r = edu_dma_to_device(&h->bar, iova + OFF_SRC, 0, XFER);
    if (r == 0)
        r = edu_dma_start(&h->bar, EDU_BUF_ADDR, iova + OFF_DST, XFER,
                          EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ);
    if (r == 0)
        r = edu_dma_wait(&h->bar, EVENT_TIMEOUT_MS);
    n = 0;
    if (r == 0)
        eventfd_count_until(h->efd, 1, EVENT_TIMEOUT_MS, &n);
    st = bar_read32(&h->bar, EDU_REG_IRQ_STATUS);
    if (st)
        bar_write32(&h->bar, EDU_REG_IRQ_ACK, st);
    *ret_msi = n;
    return r == 0 && bytes_check(mem + OFF_DST, XFER, seed);
}

/* A DMA check: must pass whenever the kernel said the mapping is there. */
__attribute__((format(printf, 4, 5)))
static bool check_dma(const struct held *h, uint64_t iova, uint8_t *mem,
                      const char *fmt, ...)
{
    char what[256];
    uint64_t msi;
    va_list ap;
    bool ok;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    ok = dma_round_trip(h, iova, mem, &msi);
    tap_ok(ok, "%s: device DMA lands in the memfd pages", what);
    tap_ok(msi == 1, "%s: the DMA-completion MSI reaches the eventfd the "
           "keeper holds (count=%llu)", what, (unsigned long long)msi);
    return ok;
}

/* ---------------------------------------------------------------------
 * Child B: a fresh process forked by the keeper (it has the keeper's fds).
 * It runs one function, reports, and stays alive until told to go.
 */
struct b_result {
    int r[4];
    long vmlck_before, vmlck_after;
};

typedef void b_fn(const struct held *h, struct b_result *res);

struct b_proc {
    pid_t pid;
    int hold;               /* closing it lets B exit */
};

static void b_start(const struct held *h, b_fn *fn, struct b_result *res,
                    struct b_proc *bp)
{
    int rp[2], hp[2];
    pid_t pid;
    char c;

    if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(hp, O_CLOEXEC) < 0)
        tap_bail("pipe2: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        tap_bail("fork: %s", strerror(errno));
    if (pid == 0) {
        struct b_result out;

        close(rp[0]);
        close(hp[1]);
        for (size_t i = 0; i < 4; i++)
            out.r[i] = -EPIPE;
        out.vmlck_before = out.vmlck_after = -1;
        fn(h, &out);
        if (write_full(rp[1], &out, sizeof(out)) < 0)
            _exit(2);
        while (read(hp[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(rp[1]);
    close(hp[0]);
    if (read_full(rp[0], res, sizeof(*res)) < 0)
        tap_bail("no report from process B");
    close(rp[0]);
    bp->pid = pid;
    bp->hold = hp[1];
}

static void b_end(struct b_proc *bp)
{
    int status;

    close(bp->hold);
    if (waitpid(bp->pid, &status, 0) != bp->pid)
        tap_bail("waitpid B: %s", strerror(errno));
}

/* B maps the memfd (anywhere) and gives the mapping that address. */
static void b_remap(const struct held *h, struct b_result *res)
{
    void *addr;
    int r;

    r = memfd_map(h->memfd, MEM_SIZE, &addr);
    if (r < 0) {
        res->r[0] = r;
        return;
    }
    res->vmlck_before = vmlck_kb();
    res->r[0] = remap(h->container, IOVA, addr, MEM_SIZE);
    res->vmlck_after = vmlck_kb();
}

/* B first tries to remap the still-valid range, then suspends, remaps. */
static void b_suspend_remap(const struct held *h, struct b_result *res)
{
    void *addr;
    int r;

    r = memfd_map(h->memfd, MEM_SIZE, &addr);
    if (r < 0) {
        res->r[0] = r;
        return;
    }
    res->vmlck_before = vmlck_kb();
    res->r[0] = remap(h->container, IOVA, addr, MEM_SIZE);
    res->r[1] = suspend(h->container, IOVA, MEM_SIZE);
    res->r[2] = remap(h->container, IOVA, addr, MEM_SIZE);
    res->vmlck_after = vmlck_kb();
}

static int set_memlock(rlim_t bytes)
{
    struct rlimit rl = { .rlim_cur = bytes, .rlim_max = bytes };

    return setrlimit(RLIMIT_MEMLOCK, &rl) < 0 ? -errno : 0;
}

/*
 * B without CAP_IPC_LOCK: remap with RLIMIT_MEMLOCK at half the mapping,
 * then with the limit covering it.
 */
static void b_remap_rlimit(const struct held *h, struct b_result *res)
{
    void *addr;
    int r;

    r = memfd_map(h->memfd, MEM_SIZE, &addr);
    if (r < 0) {
        res->r[0] = res->r[3] = r;
        return;
    }
    r = cap_ipc_lock_drop(false);
    r = r ?: set_memlock(MEM_SIZE / 2);
    if (r < 0) {
        res->r[3] = r;
        return;
    }
    res->r[3] = 0;
    res->vmlck_before = vmlck_kb();
    res->r[0] = remap(h->container, IOVA, addr, MEM_SIZE);
    /* CAP_SYS_RESOURCE is still there: the hard limit may go up again. */
    r = set_memlock(MEM_SIZE + (rlim_t)res->vmlck_before * 1024);
    res->r[1] = r < 0 ? r : remap(h->container, IOVA, addr, MEM_SIZE);
    res->vmlck_after = vmlck_kb();
}

static void vmlck_fact(const struct b_result *res, const char *q)
{
    long delta = res->vmlck_after - res->vmlck_before;

    tap_ok(res->vmlck_before >= 0 && res->vmlck_after >= 0,
           "%s: VmLck of B %ld -> %ld kB (delta %ld kB, mapping %ld kB)", q,
           res->vmlck_before, res->vmlck_after, delta, MEM_KB);
    tap_diag("  kernel %s: pinned pages %s to B (expected: moved, "
             "vfio_change_dma_owner)%s", kernel,
             delta == MEM_KB ? "ARE charged" :
             delta == 0 ? "are NOT charged" : "charged oddly",
             delta == MEM_KB ? "" : "  <== DIFFERS from the source reading");
}

/* ---------------------------------------------------------------------
 * The scenarios
 */

/* Q1 + Q6: A dies with a valid vaddr; then the keeper unmaps. */
static void q1_q6(void)
{
    struct held h;
    uint64_t size = 0;
    void *addr;
    int r;

    tap_diag("Q1/Q6: A maps and dies with its vaddr valid; the keeper holds "
             "dups of container/group/device/memfd/eventfd");
    a_run_and_kill(&h, false);
    tap_ok(h.a_vmlck == MEM_KB, "Q1: A's VmLck before it died: %ld kB "
           "(the mapping is %ld kB)", h.a_vmlck, MEM_KB);
    check_dma(&h, IOVA, h.mem, "Q1: after A died (vaddr valid)");

    r = dma_unmap_raw(h.container, 0, IOVA, MEM_SIZE, &size);
    fact(r, 0, "Q6: keeper fully unmaps the dead mapper's range (plain "
         "UNMAP_DMA), reported size 0x%llx", (unsigned long long)size);
    tap_ok(r != 0 || size == MEM_SIZE, "Q6: the unmap covered the whole "
           "mapping (0x%llx of 0x%lx)", (unsigned long long)size, MEM_SIZE);
    /* Proof it is gone: the iova can be mapped afresh (else -EEXIST). */
    TAP_CHECK(memfd_map(h.memfd, MEM_SIZE, &addr));
    r = dma_map_raw(h.container,
                    VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, IOVA,
                    addr, MEM_SIZE);
    fact(r, 0, "Q6: keeper maps the same iova afresh afterwards");
    if (r == 0) {
        check_dma(&h, IOVA, h.mem, "Q6: keeper's new mapping");
        TAP_CHECK(vfio_dma_unmap(h.container, IOVA, MEM_SIZE));
    } else {
        tap_ok(true, "Q6: keeper's new mapping: DMA # SKIP not mapped");
        tap_ok(true, "Q6: keeper's new mapping: MSI # SKIP not mapped");
    }
    munmap(addr, MEM_SIZE);
    held_close(&h);
}

/* Q2a: the keeper (never mapped) suspends; B remaps. */
static void q2a(void)
{
    struct b_result res;
    struct b_proc bp;
    struct held h;
    long k0, k1;
    int r;

    tap_diag("Q2a: A dies with its vaddr valid; the keeper suspends it, "
             "child B remaps");
    a_run_and_kill(&h, false);
    k0 = vmlck_kb();
    r = suspend(h.container, IOVA, MEM_SIZE);
    k1 = vmlck_kb();
    fact(r, 0, "Q2a: keeper (never mapped) UNMAP_DMA|VADDR of the dead "
         "mapper's range");
    tap_ok(k0 == k1, "Q2a: keeper's VmLck unchanged by its suspend (%ld -> "
           "%ld kB)", k0, k1);
    b_start(&h, b_remap, &res, &bp);
    fact(res.r[0], 0, "Q2a: B (fresh process, memfd mapped anew) "
         "MAP_DMA|VADDR");
    vmlck_fact(&res, "Q2a");
    if (res.r[0] == 0) {
        check_dma(&h, IOVA, h.mem, "Q2a: after B's remap");
    } else {
        tap_ok(true, "Q2a: DMA after remap # SKIP remap refused");
        tap_ok(true, "Q2a: MSI after remap # SKIP remap refused");
    }
    b_end(&bp);
    held_close(&h);
}

/* Q2b: B suspends the dead mapper's vaddr itself, then remaps. */
static void q2b(void)
{
    struct b_result res;
    struct b_proc bp;
    struct held h;

    tap_diag("Q2b: A dies with its vaddr valid; child B suspends it and "
             "remaps");
    a_run_and_kill(&h, false);
    b_start(&h, b_suspend_remap, &res, &bp);
    fact(res.r[0], -EINVAL, "Q2b: B MAP_DMA|VADDR while the range is still "
         "valid");
    fact(res.r[1], 0, "Q2b: B UNMAP_DMA|VADDR of the dead mapper's range");
    fact(res.r[2], 0, "Q2b: B MAP_DMA|VADDR afterwards");
    vmlck_fact(&res, "Q2b");
    if (res.r[2] == 0) {
        check_dma(&h, IOVA, h.mem, "Q2b: after B's remap");
    } else {
        tap_ok(true, "Q2b: DMA after remap # SKIP remap refused");
        tap_ok(true, "Q2b: MSI after remap # SKIP remap refused");
    }
    b_end(&bp);
    held_close(&h);
}

/* Q3: A suspends, then dies; B remaps. */
static void q3(void)
{
    struct b_result res;
    struct b_proc bp;
    struct held h;

    tap_diag("Q3: A suspends its vaddr, then dies; child B remaps");
    a_run_and_kill(&h, true);
    fact(h.a_suspend, 0, "Q3: A's own UNMAP_DMA|VADDR before dying");
    check_dma(&h, IOVA, h.mem, "Q3: suspended, mapper dead, not yet "
              "remapped");
    b_start(&h, b_remap, &res, &bp);
    fact(res.r[0], 0, "Q3: B MAP_DMA|VADDR of the range A suspended");
    vmlck_fact(&res, "Q3");
    if (res.r[0] == 0) {
        check_dma(&h, IOVA, h.mem, "Q3: after B's remap");
    } else {
        tap_ok(true, "Q3: DMA after remap # SKIP remap refused");
        tap_ok(true, "Q3: MSI after remap # SKIP remap refused");
    }
    b_end(&bp);
    held_close(&h);
}

/* Q3r: as Q3, B without CAP_IPC_LOCK: does RLIMIT_MEMLOCK apply? */
static void q3_rlimit(void)
{
    struct b_result res;
    struct b_proc bp;
    struct held h;

    tap_diag("Q3r: as Q3, but B has no CAP_IPC_LOCK and RLIMIT_MEMLOCK of "
             "%ld kB, then %ld kB more", MEM_KB / 2, MEM_KB);
    a_run_and_kill(&h, true);
    b_start(&h, b_remap_rlimit, &res, &bp);
    if (!tap_ok(res.r[3] == 0, "Q3r: B dropped CAP_IPC_LOCK and lowered "
                "RLIMIT_MEMLOCK (%s)", errname(res.r[3])))
        tap_bail("cannot set up the RLIMIT_MEMLOCK case");
    fact(res.r[0], -ENOMEM, "Q3r: B MAP_DMA|VADDR with RLIMIT_MEMLOCK "
         "below the pinned size");
    fact(res.r[1], 0, "Q3r: B MAP_DMA|VADDR again with the limit covering "
         "it");
    vmlck_fact(&res, "Q3r");
    b_end(&bp);
    held_close(&h);
}

/* Q4: suspending what is already suspended; UNMAP_ALL|VADDR. */
static void q4(void)
{
    struct vfio_pci p;
    uint64_t size = 0;
    uint8_t *mem;
    void *addr;
    int memfd, r;

    tap_diag("Q4: one process, %d mappings of one memfd", NRANGES);
    TAP_CHECK(vfio_pci_open(EDU_VENDOR, EDU_DEVICE, &p));
    TAP_CHECK(memfd_buffer("keeper-facts-q4", NRANGES * MEM_SIZE, &memfd,
                           &addr));
    mem = addr;
    for (int i = 0; i < NRANGES; i++)
        TAP_CHECK(vfio_dma_map(p.container, IOVA + (uint64_t)i * 0x100000,
                               mem + i * MEM_SIZE, MEM_SIZE));
#define RANGE(i) (IOVA + (uint64_t)(i) * 0x100000)

    TAP_CHECK(suspend(p.container, RANGE(1), MEM_SIZE));
    /* On an error the kernel does not write the struct back: no size. */
    r = suspend(p.container, RANGE(1), MEM_SIZE);
    fact(r, -EINVAL, "Q4: UNMAP_DMA|VADDR of an already suspended range");

    r = dma_unmap_raw(p.container,
                      VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL, 0,
                      0, NULL);
    fact(r, -EINVAL, "Q4: UNMAP_DMA|VADDR|ALL with the middle of %d ranges "
         "already suspended", NRANGES);
    /* Were the others left valid? A valid range suspends (0), then remap. */
    for (int i = 0; i < NRANGES; i += 2) {
        r = suspend(p.container, RANGE(i), MEM_SIZE);
        fact(r, 0, "Q4: range %d (%s the invalid one) is still valid "
             "afterwards: its own UNMAP_DMA|VADDR", i,
             i == 0 ? "before" : "after");
        if (r == 0)
            TAP_CHECK(remap(p.container, RANGE(i), mem + i * MEM_SIZE,
                            MEM_SIZE));
    }
    r = remap(p.container, RANGE(1), mem + MEM_SIZE, MEM_SIZE);
    fact(r, 0, "Q4: the invalid range stayed invalid: MAP_DMA|VADDR of it");

    /* With nothing invalid, the same ALL suspend works and remaps. */
    r = dma_unmap_raw(p.container,
                      VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL, 0,
                      0, &size);
    fact(r, 0, "Q4: UNMAP_DMA|VADDR|ALL with all ranges valid (reported "
         "size 0x%llx)", (unsigned long long)size);
    for (int i = 0; i < NRANGES && r == 0; i++)
        TAP_CHECK(remap(p.container, RANGE(i), mem + i * MEM_SIZE,
                        MEM_SIZE));
#undef RANGE
    munmap(mem, NRANGES * MEM_SIZE);
    close(memfd);
    vfio_pci_close(&p);
}

/* Open the group of the first of nvme/e1000e found (not attached). */
static int second_group(char ret_what[static 16])
{
    static const struct { uint16_t v, d; const char *name; } devs[] = {
        { NVME_VENDOR, NVME_DEVICE, "nvme" },
        { E1000E_VENDOR, E1000E_DEVICE, "e1000e" },
    };
    char bdf[16];

    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        int id;

        if (pci_find(devs[i].v, devs[i].d, bdf) < 0)
            continue;
        id = pci_iommu_group(bdf);
        if (id < 0)
            continue;
        snprintf(ret_what, 16, "%s", devs[i].name);
        return vfio_group_open(id);
    }
    return -ENODEV;
}

static int group_attach(int group, int container)
{
    return ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0 ? -errno
                                                                  : 0;
}

/* Q5: steady-state suspension, process alive. */
static void q5(void)
{
    struct vfio_pci p;
    struct held h;
    char what[16] = "";
    void *addr, *addr2;
    uint64_t size = 0;
    int memfd, memfd2, group2, r;

    tap_diag("Q5: one process keeps a range suspended");
    TAP_CHECK(vfio_pci_open(EDU_VENDOR, EDU_DEVICE, &p));
    TAP_CHECK(pci_enable_bus_master(p.device));
    TAP_CHECK(memfd_buffer("keeper-facts-q5", MEM_SIZE, &memfd, &addr));
    TAP_CHECK(memfd_buffer("keeper-facts-q5b", MEM_SIZE, &memfd2, &addr2));
    memset(addr, 0, MEM_SIZE);
    memset(addr2, 0, MEM_SIZE);
    h = (struct held){ .container = p.container, .group = p.group,
                       .device = p.device, .memfd = memfd };
    h.efd = TAP_CHECK(eventfd_new());
    TAP_CHECK(vfio_irq_set_eventfds(p.device, VFIO_PCI_MSI_IRQ_INDEX, 0, 1,
                                    &h.efd));
    TAP_CHECK(vfio_bar_open(p.device, VFIO_PCI_BAR0_REGION_INDEX, &h.bar));
    TAP_CHECK(vfio_dma_map(p.container, IOVA, addr, MEM_SIZE));
    TAP_CHECK(suspend(p.container, IOVA, MEM_SIZE));

    check_dma(&h, IOVA, addr, "Q5: while suspended");

    r = vfio_dma_map(p.container, IOVA_NEW, addr2, MEM_SIZE);
    fact(r, 0, "Q5: plain MAP_DMA of a new range while another is "
         "suspended");
    if (r == 0) {
        check_dma(&h, IOVA_NEW, addr2, "Q5: the new range");
    } else {
        tap_ok(true, "Q5: DMA to the new range # SKIP not mapped");
        tap_ok(true, "Q5: MSI for the new range # SKIP not mapped");
    }

    group2 = second_group(what);
    if (group2 >= 0) {
        r = group_attach(group2, p.container);
        fact(r, -EBUSY, "Q5: VFIO_GROUP_SET_CONTAINER of a second group "
             "(%s) while a vaddr is invalid", what);
        if (r == 0)
            ioctl(group2, VFIO_GROUP_UNSET_CONTAINER);
    } else {
        tap_ok(true, "Q5: attach a second group # SKIP no second group "
               "(%s)", errname(group2));
    }

    r = dma_unmap_raw(p.container, 0, IOVA, MEM_SIZE, &size);
    fact(r, 0, "Q5: plain UNMAP_DMA of the suspended range (reported size "
         "0x%llx)", (unsigned long long)size);

    if (group2 >= 0) {
        r = group_attach(group2, p.container);
        fact(r, 0,
             "Q5: the same attach once nothing is invalid (control)");
        if (r == 0)
            ioctl(group2, VFIO_GROUP_UNSET_CONTAINER);
        close(group2);
    } else {
        tap_ok(true, "Q5: attach control # SKIP no second group");
    }
    if (vfio_dma_unmap(p.container, IOVA_NEW, MEM_SIZE) < 0)
        tap_diag("Q5: unmapping the new range failed");
    vfio_irq_disable(p.device, VFIO_PCI_MSI_IRQ_INDEX);
    vfio_bar_close(&h.bar);
    munmap(addr, MEM_SIZE);
    munmap(addr2, MEM_SIZE);
    close(h.efd);
    close(memfd);
    close(memfd2);
    vfio_pci_close(&p);
}

int main(void)
{
    struct utsname u;

    if (uname(&u) == 0)
        snprintf(kernel, sizeof(kernel), "%s", u.release);
    else
        snprintf(kernel, sizeof(kernel), "unknown");
    tap_plan(PLAN);
    tap_diag("uname -r: %s", kernel);

    q1_q6();
    q2a();
    q2b();
    q3();
    q3_rlimit();
    q4();
    q5();
    tap_exit();
}
