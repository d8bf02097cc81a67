/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu-raw: a userspace edu driver that knows nothing about cprkit. It does
 * not link libcprkit; it opens the container, group and device with raw
 * open()/ioctl() calls, maps an anonymous MAP_PRIVATE buffer for DMA,
 * wires MSI to an eventfd and then runs a DMA loop (RAM -> device ->
 * RAM with an interrupt at the end) until SIGTERM. Its initialisation is
 * idempotent with respect to a running device, which is what the
 * LD_PRELOAD shim needs (docs/operations.md): it resets the device (a
 * no-op under the shim on the incoming side), enables bus mastering
 * (already on), and keeps its state in the DMA buffer: a header saying
 * which DMA was in flight, so that after a live update it finishes that
 * DMA (the data landed during the blackout, the interrupt waits in the
 * eventfd) instead of starting over.
 *
 * Report lines on stdout (the VM test reads them; stderr with --standalone):
 *   init pid=P tag=T preserved=0|1 bus_master_at_open=0|1 count_reg=N last_count=N
 *   pending seq=N landed=0|1 irq=N
 *   serving pid=P tag=T
 *   exit pid=P tag=T ok=N bad=N
 * --iova=HEX maps the buffer elsewhere (a "new version" whose DMA layout
 * differs: the shim must roll back). --standalone runs three DMAs without
 * the shim and reports TAP (the VM harness runs it so).
 *
 * Like DPDK, it also enables the device-request notifier (VFIO IRQ index
 * 4) of the edu, and drives a second device in the same container: the
 * e1000e, its MSI-X set up sparse as drivers do (vectors 0 and 2 of 3 in
 * one VFIO_DEVICE_SET_IRQS with fd -1 for vector 1) and grown later
 * (vector 4 alone, start 4; where the kernel reports NORESIZE, 6.1, all
 * five at once with fd -1 for 1 and 3), two interrupt causes routed to
 * vectors 2 and 4 and raised every round (nic_ok / nic_bad in the exit
 * line).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edu.h"
#include "tap.h"
#include "vfio-util.h"

#define BUF_SIZE (1u << 20)
#define SRC_OFF 0x1000u
#define DST_OFF 0x2000u
#define MAGIC 0x6564757261770001ull

struct header {
    uint64_t magic;
    uint64_t seq;       /* last DMA started */
    uint64_t pending;   /* DMA seq started, its interrupt not yet read */
    uint64_t last_count; /* what the count register must hold */
    uint64_t ok, bad;
    uint64_t nic_ok, nic_bad;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    stop = 1;
}

static uint32_t xfer_len(uint64_t seq)
{
    return 512u + (uint32_t)(seq % 64) * 8u;
}

static uint8_t pattern(uint32_t i)
{
    return (uint8_t)(i * 7u + 3u);
}

static bool dst_matches(const uint8_t *mem, uint64_t seq)
{
    for (uint32_t i = 0; i < xfer_len(seq); i++)
        if (mem[DST_OFF + i] != pattern(i))
            return false;
    return true;
}

static FILE *out;

/* e1000e (82574L): interrupt causes and where they go (IVAR: 4 bits per
 * cause, bit 3 valid). */
#define E1000_ICR 0x00c0
#define E1000_ICS 0x00c8
#define E1000_IMS 0x00d0
#define E1000_IVAR 0x00e4
#define E1000_ICR_LSC (1u << 2)
#define E1000_ICR_RXQ0 (1u << 20)
#define E1000_ICR_OTHER (1u << 24)
#define NIC_VEC_RX 2
#define NIC_VEC_OTHER 4

struct nic {
    int device;
    struct vfio_bar bar;
    int efd[NIC_VEC_OTHER + 1]; /* -1: vector without an eventfd */
};

static void die(const char *what);

static int set_irqs(int device, uint32_t index, uint32_t start,
                    uint32_t count, const int32_t *fds)
{
    char buf[sizeof(struct vfio_irq_set) + 8 * sizeof(int32_t)];
    struct vfio_irq_set *irqs = (struct vfio_irq_set *)buf;

    irqs->argsz = (uint32_t)(sizeof(*irqs) + count * sizeof(int32_t));
    irqs->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    irqs->index = index;
    irqs->start = start;
    irqs->count = count;
    memcpy(irqs->data, fds, count * sizeof(int32_t));
    return ioctl(device, VFIO_DEVICE_SET_IRQS, irqs);
}

static int eventfd_or_die(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (fd < 0)
        die("eventfd");
    return fd;
}

/* Opens the group of @bdf and attaches it to @container unless it says
 * it is attached already, which DPDK, SPDK and QEMU take as "set up"
 * (container, IOMMU, DMA mappings): the shim must show a reclaimed group
 * as not attached, or nothing would be re-created after an update.
 * Returns the group fd; *ret_attached_here: it was attached here. */
static int group_open(const char *bdf, int container, bool *ret_attached_here)
{
    struct vfio_group_status gs = {.argsz = sizeof(gs)};
    char path[64];
    int group;

    snprintf(path, sizeof(path), "/dev/vfio/%d", pci_iommu_group(bdf));
    group = open(path, O_RDWR | O_CLOEXEC);
    if (group < 0)
        die(path);
    if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) < 0 ||
        !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
        die("group not viable");
    *ret_attached_here = !(gs.flags & VFIO_GROUP_FLAGS_CONTAINER_SET);
    if (*ret_attached_here &&
        ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0)
        die("VFIO_GROUP_SET_CONTAINER");
    return group;
}

/* The e1000e in the same container: sparse, then grown MSI-X. */
static void nic_open(struct nic *n, int container)
{
    struct vfio_irq_info info;
    char bdf[16];
    bool attached_here;
    int group;

    if (pci_find(0x8086, 0x10d3, bdf) < 0)
        die("no e1000e");
    group = group_open(bdf, container, &attached_here);
    n->device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (n->device < 0)
        die("VFIO_GROUP_GET_DEVICE_FD (e1000e)");
    if (vfio_bar_open(n->device, 0, &n->bar) < 0 ||
        pci_enable_bus_master(n->device) < 0)
        die("e1000e BAR0/bus master");
    bar_write32(&n->bar, E1000_IVAR,
                (0x8u | NIC_VEC_RX) | (0x8u | NIC_VEC_OTHER) << 16);
    bar_write32(&n->bar, E1000_IMS,
                E1000_ICR_RXQ0 | E1000_ICR_LSC | E1000_ICR_OTHER);
    for (int v = 0; v <= NIC_VEC_OTHER; v++)
        n->efd[v] = v == 0 || v == NIC_VEC_RX || v == NIC_VEC_OTHER
                        ? eventfd_or_die()
                        : -1;
    if (vfio_irq_info(n->device, VFIO_PCI_MSIX_IRQ_INDEX, &info) < 0)
        die("e1000e MSI-X info");
    if (info.flags & VFIO_IRQ_INFO_NORESIZE) {
        /* The kernel cannot add vectors to an enabled index (before Linux
         * 6.5): the whole layout at once, as drivers do there. */
        if (set_irqs(n->device, VFIO_PCI_MSIX_IRQ_INDEX, 0,
                     NIC_VEC_OTHER + 1, n->efd) < 0)
            die("e1000e MSI-X vectors 0..4 (1 and 3 without an eventfd)");
        return;
    }
    if (set_irqs(n->device, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, n->efd) < 0)
        die("e1000e MSI-X vectors 0..2 (1 without an eventfd)");
    if (set_irqs(n->device, VFIO_PCI_MSIX_IRQ_INDEX, NIC_VEC_OTHER, 1,
                 &n->efd[NIC_VEC_OTHER]) < 0)
        die("e1000e MSI-X vector 4 added");
}

/* Both causes raised; each interrupt must reach its vector's eventfd. */
static bool nic_round(struct nic *n)
{
    uint64_t rx = 0, other = 0;

    bar_write32(&n->bar, E1000_ICS, E1000_ICR_RXQ0 | E1000_ICR_LSC);
    eventfd_count_until(n->efd[NIC_VEC_RX], 1, EVENT_TIMEOUT_MS, &rx);
    eventfd_count_until(n->efd[NIC_VEC_OTHER], 1, EVENT_TIMEOUT_MS, &other);
    /* Write-1-to-clear, or the causes never fire again. */
    bar_write32(&n->bar, E1000_ICR,
                E1000_ICR_RXQ0 | E1000_ICR_LSC | E1000_ICR_OTHER);
    return rx >= 1 && other >= 1;
}

static void die(const char *what)
{
    fprintf(out ? out : stdout, "error pid=%d %s: %s\n", (int)getpid(), what,
            strerror(errno));
    fflush(out ? out : stdout);
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t iova = 0x100000;
    const char *tag = "v1";
    bool standalone = false;
    struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map)};
    char irq_buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
    struct vfio_irq_set *irqs = (struct vfio_irq_set *)irq_buf;
    struct vfio_bar bar;
    struct nic nic;
    struct header *h;
    char bdf[16];
    uint16_t cmd = 0;
    uint8_t *mem;
    int container, group, device, evfd, req, iterations = 0;
    bool set_up;

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--iova=", 7) == 0)
            iova = strtoull(argv[i] + 7, NULL, 16);
        else if (strncmp(argv[i], "--tag=", 6) == 0)
            tag = argv[i] + 6;
        else if (strcmp(argv[i], "--standalone") == 0)
            standalone = true;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    out = standalone ? stderr : stdout; /* stdout carries TAP then */
    signal(SIGTERM, on_term);
    if (standalone)
        tap_plan(1);

    if (pci_find(EDU_VENDOR, EDU_DEVICE, bdf) < 0)
        die("no edu device");
    container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (container < 0)
        die("open /dev/vfio/vfio");
    if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
        ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
        die("VFIO API");
    group = group_open(bdf, container, &set_up);
    if (set_up && ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
        die("VFIO_SET_IOMMU");
    device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (device < 0)
        die("VFIO_GROUP_GET_DEVICE_FD");
    if (pci_config_read(device, 0x04, &cmd, sizeof(cmd)) < 0 ||
        vfio_bar_open(device, 0, &bar) < 0)
        die("config/BAR0");
    /* Idempotent start: a reset is what a fresh driver does; under the
     * shim's incoming side it is skipped. edu has no reset method (EINVAL). */
    if (ioctl(device, VFIO_DEVICE_RESET) < 0 && errno != EINVAL)
        die("VFIO_DEVICE_RESET");

    mem = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    map.vaddr = (uintptr_t)mem;
    map.iova = iova;
    map.size = BUF_SIZE;
    if (set_up && ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0)
        die("VFIO_IOMMU_MAP_DMA");
    evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (evfd < 0)
        die("eventfd");
    irqs->argsz = sizeof(irq_buf);
    irqs->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    irqs->index = VFIO_PCI_MSI_IRQ_INDEX;
    irqs->start = 0;
    irqs->count = 1;
    memcpy(irqs->data, &evfd, sizeof(int32_t));
    if (ioctl(device, VFIO_DEVICE_SET_IRQS, irqs) < 0)
        die("VFIO_DEVICE_SET_IRQS");
    if (pci_enable_bus_master(device) < 0)
        die("bus master");
    req = eventfd_or_die();
    if (set_irqs(device, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &req) < 0)
        die("VFIO_DEVICE_SET_IRQS: request notifier");
    nic_open(&nic, container);

    h = (struct header *)mem;
    fprintf(out, "init pid=%d tag=%s preserved=%d bus_master_at_open=%d "
           "count_reg=%" PRIu64 " last_count=%" PRIu64 "\n",
           (int)getpid(), tag, h->magic == MAGIC, (cmd & 0x4) != 0,
           (uint64_t)bar_read32(&bar, EDU_REG_DMA_COUNT), h->last_count);
    if (h->magic == MAGIC && h->pending) {
        uint64_t count = 0;
        int r = eventfd_count_until(evfd, 1, EVENT_TIMEOUT_MS, &count);

        fprintf(out, "pending seq=%" PRIu64 " landed=%d irq=%" PRIu64 "\n",
               h->pending, dst_matches(mem, h->pending), r < 0 ? 0 : count);
        bar_write32(&bar, EDU_REG_IRQ_ACK, EDU_DMA_IRQ_VALUE);
        h->pending = 0;
    }
    h->magic = MAGIC;
    /* The device buffer holds the pattern; every DMA below copies it to
     * RAM. Writing it again on the incoming side changes nothing. */
    for (uint32_t i = 0; i < EDU_DMA_MAX; i++)
        mem[SRC_OFF + i] = pattern(i);
    if (edu_dma_to_device(&bar, iova + SRC_OFF, 0, EDU_DMA_MAX) < 0)
        die("DMA to the device");
    fprintf(out, "serving pid=%d tag=%s\n", (int)getpid(), tag);

    while (!stop && !(standalone && iterations == 3)) {
        uint64_t seq = h->seq + 1, count = 0;
        uint32_t len = xfer_len(seq);

        iterations++;
        memset(mem + DST_OFF, 0, EDU_DMA_MAX);
        h->last_count = len;
        h->seq = seq;
        h->pending = seq;
        if (edu_dma_start(&bar, EDU_BUF_ADDR, iova + DST_OFF, len,
                          EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ) < 0 ||
            eventfd_count_until(evfd, 1, EVENT_TIMEOUT_MS, &count) < 0) {
            h->pending = 0;
            h->bad++;
            continue;
        }
        h->pending = 0;
        bar_write32(&bar, EDU_REG_IRQ_ACK, EDU_DMA_IRQ_VALUE);
        if (dst_matches(mem, seq))
            h->ok++;
        else
            h->bad++;
        if (nic_round(&nic))
            h->nic_ok++;
        else
            h->nic_bad++;
    }
    fprintf(out,
            "exit pid=%d tag=%s ok=%" PRIu64 " bad=%" PRIu64
            " nic_ok=%" PRIu64 " nic_bad=%" PRIu64 "\n",
            (int)getpid(), tag, h->ok, h->bad, h->nic_ok, h->nic_bad);
    if (standalone) {
        tap_ok(h->ok == 3 && h->bad == 0 && h->nic_ok == 3 && h->nic_bad == 0,
               "edu-raw runs without the shim: %" PRIu64 " DMAs with MSI "
               "ok, %" PRIu64 " e1000e rounds on sparse and grown MSI-X ok",
               h->ok, h->nic_ok);
        tap_exit();
    }
    return h->bad == 0 && h->nic_bad == 0 ? 0 : 1;
}
