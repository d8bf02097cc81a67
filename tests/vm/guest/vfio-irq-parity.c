/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Interrupt state that QEMU's vfio CPR preserves, through the cprkit hooks
 * on real devices, across an update and a rollback (issue 15):
 *
 *  - what the kernel offers for the error (ERR) and request (REQ)
 *    notifiers of edu, nvme and e1000e, both set up through
 *    cprkit_vfio_irq_enable() and handed back without SET_IRQS;
 *  - NVMe MSI-X enabled sparse (vectors 0 and 2 of 3, vector 1 without an
 *    eventfd), an I/O completion queue on vector 2;
 *  - the index grown afterwards to vector 5 (in place where the kernel
 *    reports no NORESIZE, disable + enable where it does), a second I/O
 *    queue on it;
 *  - e1000e MSI-X enabled sparse the same way (vectors 0 and 2 of its 5),
 *    grown to vector 4; the NIC's RX queue 0 cause is routed to vector 2
 *    and its "other" cause (link status) to vector 4, raised on demand;
 *  - edu INTx masked by the application, with an interrupt pending;
 *  - an AER error (uncorrectable, non-fatal) at the PCIe root port the
 *    e1000e sits behind: the host injects it into QEMU when the test asks
 *    (tests/vm/host-requests), the guest kernel's AER service reports it
 *    to the drivers below the port, and vfio-pci signals the e1000e's
 *    preserved ERR eventfd.
 *
 * Generation 0 sets everything up, submits an NVMe FLUSH on each I/O
 * queue and execs itself while they complete. Generation 1 reclaims,
 * finds both completions' interrupts in the preserved eventfds, sees the
 * INTx line still masked, and vetoes: the rollback runs generation 0's
 * binary again, which reclaims once more, commits, unmasks INTx (the
 * pending interrupt arrives), and unbinds e1000e from vfio-pci, which
 * makes the kernel signal the preserved request eventfd. Both later
 * generations have the host inject an AER error at the e1000e's port.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-vfio.h>

#include "edu.h"
#include "nvme.h"
#include "tap.h"
#include "vfio-util.h"

#define NVME_IOVA 0x200000u
#define NVME_RAM 0x10000u
#define PROT (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define QDEPTH 16
#define VEC_SPARSE 2 /* vector 1 has no eventfd */
#define VEC_GROWN 5  /* added after the first enable */
#define QUIET_MS 300 /* "no interrupt" window */
#define NIC_VEC_RX 2    /* RX queue 0 cause; vector 1 has no eventfd */
#define NIC_VEC_OTHER 4 /* link status change; added after the first enable */

/* e1000e (82574L) registers and interrupt causes. */
#define E1000_ICR 0x00c0  /* cause read; write 1s to clear */
#define E1000_ICS 0x00c8  /* cause set */
#define E1000_IMS 0x00d0  /* mask set */
#define E1000_IVAR 0x00e4 /* cause -> MSI-X vector: 4 bits each, bit 3 valid */
#define E1000_ICR_LSC (1u << 2)
#define E1000_ICR_RXQ0 (1u << 20)
#define E1000_ICR_OTHER (1u << 24) /* set with LSC in MSI-X mode */
#define IVAR_VALID 0x8u

enum { EDU, NVME, E1000E, NDEV };
static const struct {
    const char *name;
    uint16_t vendor, device;
} ids[NDEV] = {
    [EDU] = {"edu", EDU_VENDOR, EDU_DEVICE},
    [NVME] = {"nvme", NVME_VENDOR, NVME_DEVICE},
    [E1000E] = {"e1000e", E1000E_VENDOR, E1000E_DEVICE},
};

/* An NVMe queue pair; kept in the preserved RAM so every generation
 * continues where the previous one stopped. */
struct queue {
    uint16_t qid, sq_tail, cq_head, phase;
    uint32_t sq_off, cq_off;
};

struct nvme_state {
    struct queue q[3]; /* admin, I/O 1 (vector 2), I/O 2 (vector 5) */
    uint16_t next_cid;
};
#define STATE_OFF 0xf000u

struct dev {
    char bdf[16];
    int fd;
    int err, req; /* eventfds, -1 if none */
};

static cprkit_ctx *ctx;
static int container;
static struct dev devs[NDEV];
static struct nvme_ctrl nc;
static uint8_t *ram;
static struct nvme_state *ns;
static int msix[VEC_GROWN + 1];
static int nic_msix[NIC_VEC_OTHER + 1];
/* Vectors 0..2 of both MSI-X devices: 1 has no eventfd. */
static const bool sparse_use[3] = {true, false, true};
static struct vfio_bar edu_bar, nic_bar;
static int intx;

static void log_fn(void *userdata, int priority, const char *msg)
{
    (void)userdata;
    if (priority <= 6)
        tap_diag("cprkit: %s", msg);
}

/* ---- NVMe queues -------------------------------------------------------- */

static void doorbell(unsigned n, uint32_t val)
{
    bar_write32(&nc.bar, NVME_REG_DOORBELL + n * nc.doorbell_stride, val);
}

static void submit(struct queue *q, struct nvme_sqe sqe)
{
    struct nvme_sqe *sq = (struct nvme_sqe *)(ram + q->sq_off);

    sqe.cid = ns->next_cid++;
    sq[q->sq_tail] = sqe;
    q->sq_tail = (q->sq_tail + 1) % QDEPTH;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    doorbell(2u * q->qid, q->sq_tail);
}

/* The next completion within timeout_ms: its status field, or < 0. */
static int reap(struct queue *q, int timeout_ms)
{
    volatile struct nvme_cqe *cq = (struct nvme_cqe *)(ram + q->cq_off);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int status;

    while ((cq[q->cq_head].status & 1) != q->phase) {
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        usleep(1000);
    }
    status = cq[q->cq_head].status >> 1;
    q->cq_head = (q->cq_head + 1) % QDEPTH;
    if (q->cq_head == 0)
        q->phase ^= 1;
    doorbell(2u * q->qid + 1, q->cq_head);
    return status;
}

static int admin(struct nvme_sqe sqe)
{
    submit(&ns->q[0], sqe);
    return reap(&ns->q[0], nc.timeout_ms);
}

static void flush(struct queue *q)
{
    submit(q, (struct nvme_sqe){.opcode = 0x00 /* FLUSH */, .nsid = 1});
}

/* An I/O queue pair whose completions raise MSI-X vector vec. */
static int io_queue_create(struct queue *q, uint16_t qid, uint16_t vec)
{
    int r;

    *q = (struct queue){.qid = qid,
                        .phase = 1,
                        .sq_off = 0x1000u + 0x2000u * qid,
                        .cq_off = 0x2000u + 0x2000u * qid};
    memset(ram + q->sq_off, 0, 0x2000);
    r = admin((struct nvme_sqe){
        .opcode = NVME_ADMIN_CREATE_CQ,
        .prp1 = NVME_IOVA + q->cq_off,
        .cdw10 = (QDEPTH - 1) << 16 | qid,
        .cdw11 = (uint32_t)vec << 16 | 0x2 | 0x1, /* IEN, contiguous */
    });
    if (r != 0)
        return r < 0 ? r : -EIO;
    r = admin((struct nvme_sqe){
        .opcode = NVME_ADMIN_CREATE_SQ,
        .prp1 = NVME_IOVA + q->sq_off,
        .cdw10 = (QDEPTH - 1) << 16 | qid,
        .cdw11 = (uint32_t)qid << 16 | 0x1,
    });
    return r == 0 ? 0 : r < 0 ? r : -EIO;
}

/* A FLUSH on q: it completes with success and its interrupt reaches
 * eventfd efd. */
static bool flush_interrupts(struct queue *q, int efd, const char *what)
{
    uint64_t n = 0;
    int st, r;

    flush(q);
    r = eventfd_count_until(efd, 1, EVENT_TIMEOUT_MS, &n);
    st = reap(q, EVENT_TIMEOUT_MS);
    return tap_ok(r == 0 && n >= 1 && st == 0,
                  "%s: FLUSH on I/O queue %u completed (status %d), its "
                  "interrupt reached the eventfd (%llu)",
                  what, q->qid, st, (unsigned long long)n);
}

/* ---- e1000e MSI-X -------------------------------------------------------- */

/* Cause @cause raised through ICS arrives on vector @vec's eventfd. */
static bool nic_interrupt(uint32_t cause, int vec, const char *what)
{
    uint64_t n = 0;
    int r;

    bar_write32(&nic_bar, E1000_ICS, cause);
    r = eventfd_count_until(nic_msix[vec], 1, EVENT_TIMEOUT_MS, &n);
    /* Write-1-to-clear, or the cause never fires again. */
    bar_write32(&nic_bar, E1000_ICR, cause | E1000_ICR_OTHER);
    return tap_ok(r == 0 && n >= 1,
                  "%s: e1000e cause 0x%x raised, its interrupt reached the "
                  "eventfd of MSI-X vector %d (%llu)",
                  what, cause, vec, (unsigned long long)n);
}

static void nic_interrupts(const char *what)
{
    nic_interrupt(E1000_ICR_RXQ0, NIC_VEC_RX, what);
    nic_interrupt(E1000_ICR_LSC, NIC_VEC_OTHER, what);
}

static void nic_vectors_reclaim(void)
{
    const bool yes = true;
    int r, got[3];

    TAP_CHECK(vfio_bar_open(devs[E1000E].fd, 0, &nic_bar));
    r = cprkit_vfio_irq_set_vectors(ctx, devs[E1000E].fd,
                                    VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, sparse_use,
                                    got);
    tap_ok(r == 0 && got[0] == nic_msix[0] && got[1] == -1 &&
               got[2] == nic_msix[NIC_VEC_RX],
           "e1000e MSI-X vectors 0..2 handed back sparse (%d, %d, %d)%s%s",
           got[0], got[1], got[2], r ? ": " : "",
           r ? cprkit_last_error(ctx) : "");
    r = cprkit_vfio_irq_set_vectors(ctx, devs[E1000E].fd,
                                    VFIO_PCI_MSIX_IRQ_INDEX, NIC_VEC_OTHER, 1,
                                    &yes, got);
    tap_ok(r == 0 && got[0] == nic_msix[NIC_VEC_OTHER],
           "e1000e grown MSI-X vector %d handed back (%d)%s%s", NIC_VEC_OTHER,
           got[0], r ? ": " : "", r ? cprkit_last_error(ctx) : "");
}

/* Raised before the exec: both interrupts wait in the preserved
 * eventfds. */
static void nic_in_flight_arrived(const char *who)
{
    uint64_t rx = 0, other = 0;

    eventfd_count_until(nic_msix[NIC_VEC_RX], 1, EVENT_TIMEOUT_MS, &rx);
    eventfd_count_until(nic_msix[NIC_VEC_OTHER], 1, EVENT_TIMEOUT_MS, &other);
    bar_write32(&nic_bar, E1000_ICR,
                E1000_ICR_RXQ0 | E1000_ICR_LSC | E1000_ICR_OTHER);
    tap_ok(rx >= 1 && other >= 1,
           "%s: the e1000e interrupts raised before the exec were in the "
           "eventfds of vector %d (%llu) and %d (%llu)",
           who, NIC_VEC_RX, (unsigned long long)rx, NIC_VEC_OTHER,
           (unsigned long long)other);
}

static void nic_raise_in_flight(void)
{
    bar_write32(&nic_bar, E1000_ICS, E1000_ICR_RXQ0 | E1000_ICR_LSC);
}

/* ---- AER ----------------------------------------------------------------- */

/* The host injects an uncorrectable, non-fatal error (Unsupported
 * Request) at the root port above the e1000e: the guest's AER service
 * runs recovery on everything below the port and vfio-pci signals the
 * e1000e's ERR eventfd. No reset: a non-fatal error is recovered without
 * one. (Not at the e1000e itself: QEMU's e1000e does not let its Device
 * Control error-reporting bits be set, so it never sends an error
 * message upstream.) */
static void aer_error(const char *who)
{
    char what[96];
    uint64_t n = 0;
    int r;

    eventfd_drain(devs[E1000E].err, &n);
    printf("CPRKIT-VM host aer-inject e1000e-port UNSUP\n");
    fflush(stdout);
    r = eventfd_wait(devs[E1000E].err, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n >= 1,
           "%s: an AER error at the e1000e's root port was signalled on "
           "the e1000e's ERR eventfd %d (%llu)",
           who, devs[E1000E].err, (unsigned long long)n);
    /* Recovered without a reset: the NIC still interrupts. */
    snprintf(what, sizeof(what), "%s, after the AER error", who);
    nic_interrupts(what);
}

/* ---- set-up and reclaim, shared by every generation --------------------- */

static void open_devices(bool expect_reclaim)
{
    bool reclaimed = !expect_reclaim;

    container = cprkit_vfio_container_open(ctx, 0, &reclaimed);
    if (container < 0 || reclaimed != expect_reclaim)
        tap_bail("container: %s", cprkit_last_error(ctx));
    for (int i = 0; i < NDEV; i++) {
        int group;

        TAP_CHECK(pci_find(ids[i].vendor, ids[i].device, devs[i].bdf));
        group = cprkit_vfio_group_open(
            ctx, container, (unsigned)pci_iommu_group(devs[i].bdf), NULL);
        if (group < 0)
            tap_bail("group of %s: %s", ids[i].name, cprkit_last_error(ctx));
        devs[i].fd =
            cprkit_vfio_device_open(ctx, group, devs[i].bdf, &reclaimed);
        if (devs[i].fd < 0 || reclaimed != expect_reclaim)
            tap_bail("device %s: %s", ids[i].name, cprkit_last_error(ctx));
        devs[i].err = devs[i].req = -1;
    }
    tap_ok(true, "container, groups and devices %s",
           expect_reclaim ? "reclaimed" : "opened");
}

static void nvme_ram(bool expect_reclaim)
{
    bool reclaimed = !expect_reclaim;
    int fd = cprkit_ram_open(ctx, "nvme", NVME_RAM, &reclaimed);
    int r;

    if (fd < 0 || reclaimed != expect_reclaim)
        tap_bail("RAM: %s", cprkit_last_error(ctx));
    ram = mmap(NULL, NVME_RAM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ram == MAP_FAILED)
        tap_bail("mmap RAM");
    ns = (struct nvme_state *)(ram + STATE_OFF);
    r = cprkit_vfio_dma_map(ctx, container, NVME_IOVA, NVME_RAM, ram, PROT);
    if (r < 0)
        tap_bail("dma map: %s", cprkit_last_error(ctx));
}

/* ERR/REQ of every device: enabled fresh, or handed back. */
static void notifiers(bool reclaim, const int *old_fds)
{
    for (int i = 0; i < NDEV; i++) {
        struct vfio_irq_info info;
        int r, fd = -1, err_count = 0;

        if (vfio_irq_info(devs[i].fd, VFIO_PCI_ERR_IRQ_INDEX, &info) == 0)
            err_count = (int)info.count;
        r = cprkit_vfio_irq_enable(ctx, devs[i].fd, VFIO_PCI_REQ_IRQ_INDEX, 1,
                                   &fd);
        tap_ok(r == 0 && (!reclaim || fd == old_fds[2 * i + 1]),
               "%s: REQ notifier %s (eventfd %d)%s%s", ids[i].name,
               reclaim ? "handed back" : "set up", fd, r ? ": " : "",
               r ? cprkit_last_error(ctx) : "");
        devs[i].req = fd;
        fd = -1;
        r = cprkit_vfio_irq_enable(ctx, devs[i].fd, VFIO_PCI_ERR_IRQ_INDEX, 1,
                                   &fd);
        if (err_count == 1) {
            tap_ok(r == 0 && (!reclaim || fd == old_fds[2 * i]),
                   "%s: ERR notifier %s (eventfd %d)%s%s", ids[i].name,
                   reclaim ? "handed back" : "set up", fd, r ? ": " : "",
                   r ? cprkit_last_error(ctx) : "");
            devs[i].err = fd;
        } else if (!reclaim) {
            tap_ok(r == -EINVAL &&
                       strstr(cprkit_last_error(ctx), "PCI Express"),
                   "%s: no ERR vector, refused: %s", ids[i].name,
                   cprkit_last_error(ctx));
        } else {
            tap_ok(r == -EBUSY &&
                       strstr(cprkit_last_error(ctx), "was not preserved"),
                   "%s: no ERR vector, nothing preserved: %s", ids[i].name,
                   cprkit_last_error(ctx));
        }
    }
}

static void nvme_vectors_reclaim(void)
{
    const bool yes = true;
    int r, got[3];

    r = cprkit_vfio_irq_enable(ctx, devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX,
                               VEC_GROWN + 1, got);
    tap_ok(r == -EBUSY, "MSI-X with gaps is not reclaimed as a dense index: %s",
           cprkit_last_error(ctx));
    r = cprkit_vfio_irq_set_vectors(ctx, devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX,
                                    0, 3, sparse_use, got);
    tap_ok(r == 0 && got[0] == msix[0] && got[1] == -1 &&
               got[2] == msix[VEC_SPARSE],
           "MSI-X vectors 0..2 handed back sparse (%d, %d, %d)%s%s", got[0],
           got[1], got[2], r ? ": " : "", r ? cprkit_last_error(ctx) : "");
    r = cprkit_vfio_irq_set_vectors(ctx, devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX,
                                    VEC_GROWN, 1, &yes, got);
    tap_ok(r == 0 && got[0] == msix[VEC_GROWN],
           "grown MSI-X vector %d handed back (%d)%s%s", VEC_GROWN, got[0],
           r ? ": " : "", r ? cprkit_last_error(ctx) : "");
}

static void edu_intx_reclaim(void)
{
    uint64_t n = 0;
    int fd = -1, r;

    TAP_CHECK(vfio_bar_open(devs[EDU].fd, 0, &edu_bar));
    r = cprkit_vfio_irq_enable(ctx, devs[EDU].fd, VFIO_PCI_INTX_IRQ_INDEX, 1,
                               &fd);
    tap_ok(r == 0 && fd == intx, "edu INTx eventfd handed back (%d)", fd);
    tap_ok(cprkit_vfio_intx_is_masked(ctx, devs[EDU].fd) == 1,
           "edu INTx is recorded as masked by the application");
    r = eventfd_wait(intx, QUIET_MS, &n);
    tap_ok(r == -ETIMEDOUT && (bar_read32(&edu_bar, EDU_REG_IRQ_STATUS) & 1),
           "edu INTx still masked after the reclaim: the pending interrupt "
           "did not fire (%s)",
           r == 0 ? "it fired" : "quiet");
}

/* Everything the previous binary preserved, reclaimed; interrupts raised
 * on the sparse and the grown vector reach their eventfds. */
static void reclaim_all(const char *who, const int *old)
{
    uint64_t n2 = 0, n5 = 0;

    open_devices(true);
    notifiers(true, old);
    nvme_ram(true);
    TAP_CHECK(vfio_bar_open(devs[NVME].fd, 0, &nc.bar));
    nc.doorbell_stride = 4u
                         << ((bar_read64(&nc.bar, NVME_REG_CAP) >> 32) & 0xf);
    nc.timeout_ms = EVENT_TIMEOUT_MS;
    nvme_vectors_reclaim();
    /* The FLUSHes submitted before the exec: completed, their interrupts
     * waiting in the counters. */
    eventfd_count_until(msix[VEC_SPARSE], 1, EVENT_TIMEOUT_MS, &n2);
    eventfd_count_until(msix[VEC_GROWN], 1, EVENT_TIMEOUT_MS, &n5);
    tap_ok(n2 >= 1 && n5 >= 1 && reap(&ns->q[1], EVENT_TIMEOUT_MS) == 0 &&
               reap(&ns->q[2], EVENT_TIMEOUT_MS) == 0,
           "%s: the FLUSHes in flight across the exec completed; their "
           "interrupts were in the eventfds of vector %d (%llu) and %d (%llu)",
           who, VEC_SPARSE, (unsigned long long)n2, VEC_GROWN,
           (unsigned long long)n5);
    flush_interrupts(&ns->q[1], msix[VEC_SPARSE], who);
    flush_interrupts(&ns->q[2], msix[VEC_GROWN], who);
    nic_vectors_reclaim();
    nic_in_flight_arrived(who);
    nic_interrupts(who);
    edu_intx_reclaim();
}

/* ---- generations -------------------------------------------------------- */

static void save_counts(const char *var)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%u:%u", tap_count(), tap_failed());

    for (int i = 0; i < NDEV; i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, ":%d:%d", devs[i].err,
                      devs[i].req);
    for (int v = 0; v <= VEC_GROWN; v++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, ":%d", msix[v]);
    for (int v = 0; v <= NIC_VEC_OTHER; v++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, ":%d", nic_msix[v]);
    snprintf(buf + n, sizeof(buf) - (size_t)n, ":%d", intx);
    setenv(var, buf, 1);
}

static void load_counts(const char *var, int *old)
{
    const char *s = getenv(var);
    unsigned done, failed;
    char *end;

    if (!s || sscanf(s, "%u:%u", &done, &failed) != 2)
        tap_bail("no %s", var);
    tap_resume(done, failed);
    s = strchr(strchr(s, ':') + 1, ':');
    for (int i = 0; i < 2 * NDEV; i++, s = end) {
        old[i] = (int)strtol(s + 1, &end, 10);
    }
    for (int v = 0; v <= VEC_GROWN; v++, s = end)
        msix[v] = (int)strtol(s + 1, &end, 10);
    for (int v = 0; v <= NIC_VEC_OTHER; v++, s = end)
        nic_msix[v] = (int)strtol(s + 1, &end, 10);
    intx = (int)strtol(s + 1, &end, 10);
}

static void self_path(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);

    buf[n > 0 ? n : 0] = '\0';
}

static noreturn void fresh(char **argv)
{
    const bool yes = true;
    struct vfio_irq_info info;
    uint64_t n = 0;
    char self[256];
    int r, got[3];

    open_devices(false);
    for (int i = 0; i < NDEV; i++) {
        for (unsigned idx = VFIO_PCI_ERR_IRQ_INDEX;
             idx <= VFIO_PCI_REQ_IRQ_INDEX; idx++) {
            r = vfio_irq_info(devs[i].fd, idx, &info);
            tap_diag("%s %s: GET_IRQ_INFO %s count %u flags 0x%x", ids[i].name,
                     idx == VFIO_PCI_ERR_IRQ_INDEX ? "ERR" : "REQ",
                     r ? strerror(-r) : "ok", r ? 0 : info.count,
                     r ? 0 : info.flags);
            if (idx == VFIO_PCI_REQ_IRQ_INDEX)
                tap_ok(r == 0 && info.count == 1, "%s offers one REQ vector",
                       ids[i].name);
        }
    }
    notifiers(false, NULL);

    /* NVMe: MSI-X enabled before the controller starts (QEMU's nvme binds
     * the admin CQ to a vector only then), sparse. */
    TAP_CHECK(nvme_ctrl_init(&nc, devs[NVME].fd));
    TAP_CHECK(nvme_disable(&nc));
    nvme_ram(false);
    memset(ram, 0, NVME_RAM);
    ns->next_cid = 1;
    ns->q[0] =
        (struct queue){.qid = 0, .phase = 1, .sq_off = 0, .cq_off = 0x1000};
    r = cprkit_vfio_irq_set_vectors(ctx, devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX,
                                    0, 3, sparse_use, got);
    tap_ok(r == 0 && got[0] >= 0 && got[1] == -1 && got[2] >= 0,
           "NVMe MSI-X enabled sparse: vectors 0 and %d, not 1%s%s", VEC_SPARSE,
           r ? ": " : "", r ? cprkit_last_error(ctx) : "");
    for (int v = 0; v <= VEC_GROWN; v++)
        msix[v] = v < 3 ? got[v] : -1;
    bar_write32(&nc.bar, NVME_REG_AQA, (QDEPTH - 1) << 16 | (QDEPTH - 1));
    bar_write64(&nc.bar, NVME_REG_ASQ, NVME_IOVA);
    bar_write64(&nc.bar, NVME_REG_ACQ, NVME_IOVA + 0x1000);
    TAP_CHECK(nvme_enable(&nc));
    TAP_CHECK(io_queue_create(&ns->q[1], 1, VEC_SPARSE));
    flush_interrupts(&ns->q[1], msix[VEC_SPARSE], "fresh");

    /* Grow the enabled index. */
    TAP_CHECK(vfio_irq_info(devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX, &info));
    tap_diag("NVMe MSI-X: %u vectors, %s", info.count,
             info.flags & VFIO_IRQ_INFO_NORESIZE
                 ? "NORESIZE: growing disables and enables the index"
                 : "resizable: vectors are added in place");
    r = cprkit_vfio_irq_set_vectors(ctx, devs[NVME].fd, VFIO_PCI_MSIX_IRQ_INDEX,
                                    VEC_GROWN, 1, &yes, &msix[VEC_GROWN]);
    tap_ok(r == 0 && msix[VEC_GROWN] >= 0,
           "MSI-X grown to vector %d after the first enable%s%s", VEC_GROWN,
           r ? ": " : "", r ? cprkit_last_error(ctx) : "");
    TAP_CHECK(io_queue_create(&ns->q[2], 2, VEC_GROWN));
    flush_interrupts(&ns->q[2], msix[VEC_GROWN], "fresh");
    flush_interrupts(&ns->q[1], msix[VEC_SPARSE], "fresh, after the growth");

    /* e1000e: sparse MSI-X, the causes routed, then grown. */
    TAP_CHECK(pci_enable_bus_master(devs[E1000E].fd));
    TAP_CHECK(vfio_bar_open(devs[E1000E].fd, 0, &nic_bar));
    r = cprkit_vfio_irq_set_vectors(ctx, devs[E1000E].fd,
                                    VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, sparse_use,
                                    got);
    tap_ok(r == 0 && got[0] >= 0 && got[1] == -1 && got[2] >= 0,
           "e1000e MSI-X enabled sparse: vectors 0 and %d, not 1%s%s",
           NIC_VEC_RX, r ? ": " : "", r ? cprkit_last_error(ctx) : "");
    for (int v = 0; v <= NIC_VEC_OTHER; v++)
        nic_msix[v] = v < 3 ? got[v] : -1;
    bar_write32(&nic_bar, E1000_IVAR,
                (IVAR_VALID | NIC_VEC_RX) |
                    (IVAR_VALID | NIC_VEC_OTHER) << 16);
    bar_write32(&nic_bar, E1000_IMS,
                E1000_ICR_RXQ0 | E1000_ICR_LSC | E1000_ICR_OTHER);
    nic_interrupt(E1000_ICR_RXQ0, NIC_VEC_RX, "fresh");
    TAP_CHECK(vfio_irq_info(devs[E1000E].fd, VFIO_PCI_MSIX_IRQ_INDEX, &info));
    tap_diag("e1000e MSI-X: %u vectors, %s", info.count,
             info.flags & VFIO_IRQ_INFO_NORESIZE ? "NORESIZE" : "resizable");
    r = cprkit_vfio_irq_set_vectors(ctx, devs[E1000E].fd,
                                    VFIO_PCI_MSIX_IRQ_INDEX, NIC_VEC_OTHER, 1,
                                    &yes, &nic_msix[NIC_VEC_OTHER]);
    tap_ok(r == 0 && nic_msix[NIC_VEC_OTHER] >= 0,
           "e1000e MSI-X grown to vector %d after the first enable%s%s",
           NIC_VEC_OTHER, r ? ": " : "", r ? cprkit_last_error(ctx) : "");
    nic_interrupts("fresh, after the growth");

    /* edu INTx, masked by the application, an interrupt pending. */
    TAP_CHECK(vfio_bar_open(devs[EDU].fd, 0, &edu_bar));
    r = cprkit_vfio_irq_enable(ctx, devs[EDU].fd, VFIO_PCI_INTX_IRQ_INDEX, 1,
                               &intx);
    tap_ok(r == 0, "edu INTx enabled");
    r = cprkit_vfio_intx_mask(ctx, devs[EDU].fd, true);
    tap_ok(r == 0, "edu INTx masked by the application");
    bar_write32(&edu_bar, EDU_REG_IRQ_RAISE, 1);
    r = eventfd_wait(intx, QUIET_MS, &n);
    tap_ok(r == -ETIMEDOUT, "edu interrupt raised while masked: not delivered");

    /* In flight across the exec. */
    flush(&ns->q[1]);
    flush(&ns->q[2]);
    nic_raise_in_flight();
    self_path(self, sizeof(self));
    save_counts("IRQ_PARITY_TAP");
    {
        char *nargv[] = {argv[0], NULL};

        cprkit_exec(ctx, self, nargv, NULL);
    }
    tap_bail("cprkit_exec: %s", cprkit_last_error(ctx));
}

static noreturn void restored(void)
{
    int old[2 * NDEV];

    load_counts("IRQ_PARITY_TAP", old);
    tap_ok(cprkit_generation(ctx) == 1, "new binary: generation 1");
    reclaim_all("after the update", old);
    aer_error("after the update");
    /* Queued for the rolled-back binary to find. */
    flush(&ns->q[1]);
    flush(&ns->q[2]);
    nic_raise_in_flight();
    tap_ok(true, "vetoing the update: rolling back");
    save_counts("IRQ_PARITY_TAP");
    cprkit_rollback(ctx, "irq-parity test veto");
    tap_bail("cprkit_rollback: %s", cprkit_last_error(ctx));
}

/* e1000e unbound from vfio-pci while its fd is open: the kernel asks for
 * it through the REQ eventfd and waits until the fd is closed. */
static void request_notifier(void)
{
    char path[128];
    uint64_t n = 0;
    pid_t child;
    int status = -1, r;

    /* A BAR mapping holds the device file too, and the child would
     * inherit it: the unbind would wait for itself. */
    vfio_bar_close(&nic_bar);
    child = fork();
    if (child == 0) {
        /* Not a copy of the device fd: the unbind would wait for it. */
        int fd = close_range(3, ~0u, 0) < 0
                     ? -1
                     : open("/sys/bus/pci/drivers/vfio-pci/unbind",
                            O_WRONLY | O_CLOEXEC);

        _exit(fd >= 0 &&
                      write(fd, devs[E1000E].bdf, strlen(devs[E1000E].bdf)) > 0
                  ? 0
                  : 1);
    }
    r = eventfd_wait(devs[E1000E].req, EVENT_TIMEOUT_MS, &n);
    tap_ok(r == 0 && n >= 1,
           "e1000e unbind: the kernel signalled the preserved REQ eventfd "
           "%d (%llu)",
           devs[E1000E].req, (unsigned long long)n);
    /* Give the device back: the unbind completes when its fd closes. */
    close(devs[E1000E].fd);
    waitpid(child, &status, 0);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "e1000e unbind completed once the device fd was closed");
    snprintf(path, sizeof(path), "/sys/bus/pci/drivers_probe");
    {
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd >= 0) {
            if (write(fd, devs[E1000E].bdf, strlen(devs[E1000E].bdf)) < 0)
                tap_diag("drivers_probe: %m");
            close(fd);
        }
    }
    snprintf(path, sizeof(path), "/sys/bus/pci/drivers/vfio-pci/%s",
             devs[E1000E].bdf);
    tap_ok(access(path, F_OK) == 0, "e1000e bound to vfio-pci again");
}

static noreturn void rolled_back(void)
{
    int old[2 * NDEV], r;
    uint64_t n = 0;

    load_counts("IRQ_PARITY_TAP", old);
    tap_ok(cprkit_is_rollback(ctx) && cprkit_generation(ctx) == 0,
           "the first binary runs again after the rollback: %s",
           cprkit_rollback_reason(ctx));
    reclaim_all("after the rollback", old);
    r = cprkit_commit(ctx);
    tap_ok(r == 0, "commit (%s)", r ? cprkit_last_error(ctx) : "ok");

    /* Now the line may change: the pending edu interrupt arrives. */
    r = cprkit_vfio_intx_mask(ctx, devs[EDU].fd, false);
    tap_ok(r == 0 && eventfd_wait(intx, EVENT_TIMEOUT_MS, &n) == 0 && n >= 1,
           "edu INTx unmasked after commit: the pending interrupt arrived");
    bar_write32(&edu_bar, EDU_REG_IRQ_ACK, 1);
    TAP_CHECK(eventfd_drain(intx, &n));
    aer_error("after the rollback");
    request_notifier();
    tap_plan(tap_count());
    tap_exit();
}

int main(int argc, char **argv)
{
    int r;

    (void)argc;
    if (cprkit_new(&ctx) < 0)
        tap_bail("cprkit_new");
    cprkit_set_log_fn(ctx, log_fn, NULL);
    r = cprkit_load_incoming(ctx);
    if (r < 0)
        tap_bail("load: %s", cprkit_last_error(ctx));
    if (r == 0)
        fresh(argv);
    if (cprkit_is_rollback(ctx))
        rolled_back();
    restored();
}
