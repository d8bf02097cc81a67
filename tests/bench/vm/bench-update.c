/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-update — the blackout benchmark, run inside the test VM against
 * real vfio-pci devices. A benchmark, not a test: it prints numbers.
 *
 * One configuration = DMA-mapped memory (--mem-mib), number of mappings it
 * is split into (--mappings), NVMe MSI-X vectors (--vectors), devices
 * (--devices: 1 = nvme, 2 = + edu, 3 = + e1000e, each in its own group, one
 * container). For each configuration three modes run --runs times:
 *
 *   cprkit  live update with libcprkit: suspend, exec, reclaim, remap, the
 *           first NVMe command (IDENTIFY: 4 KiB DMA + MSI-X completion)
 *           serviced by the new binary, commit;
 *   bare    exec of the same binary with nothing preserved: the floor any
 *           exec-based update pays (exec + dynamic loading to main());
 *   naive   what a restart without cprkit costs: close everything (vfio-pci
 *           resets the NVMe), exec, reopen, re-pin and re-map all DMA
 *           memory, re-initialise the controller, first command serviced;
 *   iommufd the cprkit live update on iommufd instead of type1: device
 *           cdevs bound to an iommufd, the memfds mapped with
 *           IOMMU_IOAS_MAP_FILE; nothing to suspend, one
 *           IOMMU_IOAS_CHANGE_PROCESS in the new binary's load, the
 *           mappings reclaimed without an ioctl (kernel 7.3-iommufd);
 *   rollback an update the new binary refuses right after its load: the
 *           previous binary comes back with the same blob, reclaims,
 *           services the first NVMe command and commits; measured from
 *           the suspend to that command (base configuration in --sweep);
 *   crash   a crash restart under the keeper: the program runs under
 *           `cpr-exec run --restart-delay 0` (the real cpr-exec, put into
 *           the guest by run-bench with run-vm --extra), hands the keeper
 *           its state (cprkit_keeper_sync), keeps the NVMe queue positions
 *           in a preserved memfd and SIGKILLs itself; the keeper restarts
 *           it with what it kept, and the restarted process reclaims,
 *           remaps, services the first NVMe command and commits. Measured
 *           from the kill to that first command.
 *
 * --no-aslr runs every process without address-space randomisation.
 * Under TCG (no KVM here) QEMU translates guest code the first time it
 * runs at a virtual address; with randomisation every new binary runs its
 * code at new addresses and pays that translation again, a cost of the
 * emulator that real hardware does not have. Without it, the translations
 * of the previous generation are found again: exec and everything the new
 * binary runs for the first time cost what they would cost natively,
 * scaled.
 *
 * Each run appends a sample line to --out; the last run of a mode prints
 * a "BENCH ..." summary line (median, min, max). --sweep runs the
 * configuration list of docs/performance.md, each in a child process;
 * --sweep-iommufd the base configuration and the mappings sweep in modes
 * cprkit (type1), iommufd and bare, for the table that sets them side by
 * side (run-bench --kernel 7.3-iommufd).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-iommufd.h>
#include <cprkit/cprkit-vfio.h>

#include "nvme.h"
#include "vfio-util.h"

#define IOVA_ADMIN 0x100000ull
#define IOVA_BULK 0x40000000ull /* the swept DMA memory */
#define PROT (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define MAX_RUNS 64

/* Taken first thing in main(): the end of exec + dynamic loading. */
static uint64_t t_main;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct config {
    unsigned mem_mib;
    unsigned mappings;
    unsigned vectors;
    unsigned devices;
    unsigned runs;
    const char *mode; /* "cprkit", "iommufd", "bare", "naive", "crash" */
    const char *out;  /* sample file */
    unsigned run;     /* 0 = first start; n = after the n-th exec */
    bool under_keeper; /* crash mode: the program, not the driver */
};

/* The driver's state that crosses exec (cprkit mode), as a section. */
struct nvme_state {
    uint16_t sq_tail, cq_head, phase;
};

struct rig {
    cprkit_ctx *ctx;
    bool iommufd;   /* mode iommufd: container is the iommufd */
    uint32_t ioas;
    int container;
    struct nvme_ctrl nvme;
    int nvme_vectors[64];
    uint8_t *bulk;
    uint64_t bulk_size;
    bool reclaimed;
};

static void die(const char *what, cprkit_ctx *ctx)
{
    fprintf(stderr, "bench-update: %s: %s\n", what,
            ctx ? cprkit_last_error(ctx) : strerror(errno));
    exit(1);
}

/* The PCI address of a device: found in sysfs by the first generation,
 * then handed to the next ones in BENCH_DEVICES ("vendor:device=bdf ..."),
 * as a VMM has its devices' addresses on its command line: scanning sysfs
 * is not part of an update. */
static void device_bdf(uint16_t vendor, uint16_t device, char bdf[static 16])
{
    const char *known = getenv("BENCH_DEVICES");
    char key[16], *p;

    snprintf(key, sizeof(key), "%04x:%04x=", vendor, device);
    p = known ? strstr(known, key) : NULL;
    if (p && sscanf(p + strlen(key), "%15[0-9a-f:.]", bdf) == 1)
        return;
    if (pci_find(vendor, device, bdf) < 0)
        die("device not found", NULL);
    {
        char all[512];

        snprintf(all, sizeof(all), "%s%s%s%s", known ? known : "",
                 known ? " " : "", key, bdf);
        setenv("BENCH_DEVICES", all, 1);
    }
}

static int open_device(struct rig *rig, uint16_t vendor, uint16_t device,
                       bool *ret_reclaimed)
{
    char bdf[16];
    int group, fd;

    device_bdf(vendor, device, bdf);
    if (rig->iommufd) {
        fd = cprkit_iommufd_device_open(rig->ctx, rig->container, rig->ioas,
                                        bdf, ret_reclaimed);
        if (fd < 0)
            die("device cdev", rig->ctx);
        return fd;
    }
    group = cprkit_vfio_group_open(rig->ctx, rig->container,
                                   (unsigned)pci_iommu_group(bdf), NULL);
    if (group < 0)
        die("group", rig->ctx);
    fd = cprkit_vfio_device_open(rig->ctx, group, bdf, ret_reclaimed);
    if (fd < 0)
        die("device", rig->ctx);
    return fd;
}

/* [offset, offset + size) of memfd @fd, mapped at @vaddr: type1 maps by
 * address, iommufd by file. */
static int dma_map(struct rig *rig, int fd, uint64_t offset, uint64_t iova,
                   uint64_t size, void *vaddr)
{
    if (rig->iommufd)
        return cprkit_iommufd_map_file(rig->ctx, rig->container, rig->ioas,
                                       fd, offset, size, iova,
                                       CPRKIT_IOMMUFD_READ |
                                           CPRKIT_IOMMUFD_WRITE);
    return cprkit_vfio_dma_map(rig->ctx, rig->container, iova, size, vaddr,
                               PROT);
}

/* Opens (or reclaims) everything of a configuration. Timestamps for the
 * phases: *t_remapped after devices + DMA, *t_irq after interrupts. */
static void rig_setup(struct rig *rig, const struct config *cfg,
                      uint64_t *t_remapped, uint64_t *t_irq)
{
    uint64_t chunk;
    bool reclaimed = false;
    int edu_fd = -1, nvme_fd, ram, evfd;

    rig->iommufd = strcmp(cfg->mode, "iommufd") == 0;
    if (rig->iommufd) {
        rig->container = cprkit_iommufd_open(rig->ctx, 0, NULL);
        if (rig->container < 0 ||
            cprkit_iommufd_ioas_alloc(rig->ctx, rig->container, 0, &rig->ioas,
                                      NULL) < 0)
            die("iommufd", rig->ctx);
    } else {
        rig->container = cprkit_vfio_container_open(rig->ctx, 0, NULL);
        if (rig->container < 0)
            die("container", rig->ctx);
    }
    nvme_fd = open_device(rig, 0x1b36, 0x0010, &reclaimed);
    rig->reclaimed = reclaimed;
    /* Maps BAR0 and reads CAP; touches no controller state. */
    if (nvme_ctrl_init(&rig->nvme, nvme_fd) < 0)
        die("nvme BAR", NULL);
    if (cfg->devices >= 2)
        edu_fd = open_device(rig, 0x1234, 0x11e8, NULL);
    if (cfg->devices >= 3)
        open_device(rig, 0x8086, 0x10d3, NULL);

    /* Admin queue memory and the swept bulk memory, both memfds. */
    ram = cprkit_ram_open(rig->ctx, "nvme-admin", NVME_MEM_SIZE, NULL);
    if (ram < 0)
        die("admin RAM", rig->ctx);
    rig->nvme.mem = mmap(NULL, NVME_MEM_SIZE, PROT_READ | PROT_WRITE,
                         MAP_SHARED, ram, 0);
    if (rig->nvme.mem == MAP_FAILED)
        die("mmap admin RAM", NULL);
    rig->nvme.memfd = ram;
    rig->nvme.iova = IOVA_ADMIN;
    if (dma_map(rig, ram, 0, IOVA_ADMIN, NVME_MEM_SIZE, rig->nvme.mem) < 0)
        die("admin DMA map", rig->ctx);
    rig->bulk_size = (uint64_t)cfg->mem_mib << 20;
    ram = cprkit_ram_open(rig->ctx, "bulk", rig->bulk_size, NULL);
    if (ram < 0)
        die("bulk RAM", rig->ctx);
    rig->bulk = mmap(NULL, rig->bulk_size, PROT_READ | PROT_WRITE,
                     MAP_SHARED, ram, 0);
    if (rig->bulk == MAP_FAILED)
        die("mmap bulk", NULL);
    chunk = rig->bulk_size / cfg->mappings;
    for (unsigned i = 0; i < cfg->mappings; i++)
        if (dma_map(rig, ram, chunk * i, IOVA_BULK + chunk * i, chunk,
                    rig->bulk + chunk * i) < 0)
            die("bulk DMA map", rig->ctx);
    *t_remapped = now_ns();

    if (cprkit_vfio_irq_enable(rig->ctx, nvme_fd, VFIO_PCI_MSIX_IRQ_INDEX,
                               cfg->vectors, rig->nvme_vectors) < 0)
        die("nvme MSI-X", rig->ctx);
    if (cfg->devices >= 2 &&
        cprkit_vfio_irq_enable(rig->ctx, edu_fd, VFIO_PCI_MSI_IRQ_INDEX, 1,
                               &evfd) < 0)
        die("edu MSI", rig->ctx);
    *t_irq = now_ns();
}

/* Fresh controller bring-up: what the naive path pays on every update. */
static void nvme_bring_up(struct rig *rig, uint8_t *admin_mem)
{
    struct nvme_ctrl *c = &rig->nvme;

    c->mem = admin_mem;
    c->iova = IOVA_ADMIN;
    if (pci_enable_bus_master(c->bar.device) < 0 || nvme_disable(c) < 0)
        die("nvme disable", NULL);
    memset(c->mem, 0, NVME_MEM_SIZE);
    c->sq_tail = c->cq_head = 0;
    c->phase = 1;
    bar_write32(&c->bar, NVME_REG_AQA,
                (NVME_QUEUE_DEPTH - 1) << 16 | (NVME_QUEUE_DEPTH - 1));
    bar_write64(&c->bar, NVME_REG_ASQ, IOVA_ADMIN + NVME_MEM_SQ);
    bar_write64(&c->bar, NVME_REG_ACQ, IOVA_ADMIN + NVME_MEM_CQ);
    if (nvme_enable(c) < 0)
        die("nvme enable", NULL);
}

/* IDENTIFY CONTROLLER: the device DMAs 4 KiB and raises MSI-X vector 0.
 * Returns once the interrupt was handled and the completion reaped. */
static void nvme_first_command(struct rig *rig)
{
    struct nvme_ctrl *c = &rig->nvme;
    struct nvme_sqe sqe = {0};
    struct nvme_cqe cqe;
    struct pollfd p = {.fd = rig->nvme_vectors[0], .events = POLLIN};
    uint64_t count;

    sqe.opcode = NVME_ADMIN_IDENTIFY;
    sqe.cid = (uint16_t)(now_ns() & 0xffff);
    sqe.prp1 = IOVA_ADMIN + NVME_MEM_DATA;
    sqe.cdw10 = NVME_IDENTIFY_CNS_CTRL;
    nvme_admin_submit(c, &sqe);
    if (poll(&p, 1, 10000) != 1 ||
        read(rig->nvme_vectors[0], &count, sizeof(count)) != sizeof(count))
        die("no MSI-X completion interrupt", NULL);
    if (nvme_admin_reap(c, &cqe) != 1 || (cqe.status >> 1) != 0)
        die("IDENTIFY did not complete", NULL);
}

static void append_sample(const struct config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void append_sample(const struct config *cfg, const char *fmt, ...)
{
    FILE *f = fopen(cfg->out, "ae");
    va_list ap;

    if (!f)
        die("results file", NULL);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

/* Summary lines are TAP results too, so run-vm can tell a finished
 * benchmark from a crashed one. */
static unsigned bench_results;

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Reads the samples back and prints one BENCH line: for each column the
 * median, min and max in microseconds. */
static void summarize(const struct config *cfg, const char *const cols[],
                      unsigned ncols)
{
    uint64_t samples[16][MAX_RUNS];
    unsigned n = 0;
    char line[1024];
    FILE *f = fopen(cfg->out, "re");

    if (!f)
        die("results file", NULL);
    while (n < MAX_RUNS && fgets(line, sizeof(line), f)) {
        char *p = line;

        for (unsigned c = 0; c < ncols; c++)
            samples[c][n] = strtoull(p, &p, 10);
        n++;
    }
    fclose(f);
    printf("ok %u - BENCH mode=%s mem_mib=%u mappings=%u vectors=%u devices=%u "
           "runs=%u",
           ++bench_results,
           cfg->mode, cfg->mem_mib, cfg->mappings, cfg->vectors, cfg->devices,
           n);
    for (unsigned c = 0; c < ncols && n; c++) {
        qsort(samples[c], n, sizeof(uint64_t), compare_u64);
        printf(" %s=%.1f/%.1f/%.1f", cols[c], samples[c][n / 2] / 1e3,
               samples[c][0] / 1e3, samples[c][n - 1] / 1e3);
    }
    printf("\n");
    unlink(cfg->out);
    /* Alone, this summary is the whole TAP stream; in a sweep the parent
     * prints the plan. */
    if (!getenv("BENCH_IN_SWEEP"))
        printf("1..1\n");
}

static void exec_next(const struct config *cfg, cprkit_ctx *ctx,
                      const char *extra)
{
    char run[16], mem[16], maps[16], vec[16], dev[16], runs[16];
    char *argv[20];
    int i = 0;

    snprintf(run, sizeof(run), "%u", cfg->run + 1);
    snprintf(mem, sizeof(mem), "%u", cfg->mem_mib);
    snprintf(maps, sizeof(maps), "%u", cfg->mappings);
    snprintf(vec, sizeof(vec), "%u", cfg->vectors);
    snprintf(dev, sizeof(dev), "%u", cfg->devices);
    snprintf(runs, sizeof(runs), "%u", cfg->runs);
    argv[i++] = "/proc/self/exe";
    argv[i++] = "--mode";
    argv[i++] = (char *)cfg->mode;
    argv[i++] = "--mem-mib";
    argv[i++] = mem;
    argv[i++] = "--mappings";
    argv[i++] = maps;
    argv[i++] = "--vectors";
    argv[i++] = vec;
    argv[i++] = "--devices";
    argv[i++] = dev;
    argv[i++] = "--runs";
    argv[i++] = runs;
    argv[i++] = "--out";
    argv[i++] = (char *)cfg->out;
    argv[i++] = "--run";
    argv[i++] = run;
    argv[i++] = (char *)extra;
    argv[i] = NULL;
    if (ctx) {
        char self[256];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

        self[n > 0 ? n : 0] = '\0';
        argv[0] = self;
        cprkit_exec(ctx, self, argv, NULL);
        die("cprkit_exec", ctx);
    }
    execv("/proc/self/exe", argv);
    die("execv", NULL);
}

/* The new binary (or the rolled-back one) takes the controller over where
 * the previous one left its queues, and services the first command. */
static void nvme_resume(struct rig *rig)
{
    const void *data;
    size_t size;
    struct nvme_state st;

    if (!rig->reclaimed ||
        cprkit_section_get(rig->ctx, "nvme", &data, &size) < 0 ||
        size != sizeof(st))
        die("nvme state not preserved", rig->ctx);
    memcpy(&st, data, sizeof(st));
    rig->nvme.sq_tail = st.sq_tail;
    rig->nvme.cq_head = st.cq_head;
    rig->nvme.phase = st.phase;
    nvme_first_command(rig);
}

/* The queue positions go into the blob; the next update starts. */
static void nvme_save_and_exec(const struct config *cfg,
                               struct rig *rig)
{
    struct nvme_state st = {rig->nvme.sq_tail, rig->nvme.cq_head,
                            rig->nvme.phase};

    if (cprkit_section_put(rig->ctx, "nvme", &st, sizeof(st)) < 0)
        die("section", rig->ctx);
    exec_next(cfg, rig->ctx, NULL);
}

/* A generation of modes cprkit and rollback starts: load, reclaim or set
 * up, and the first NVMe command serviced. With refuse_update, a binary
 * started by an update (not by its rollback) rolls it back right after
 * the load. Returns what cprkit_load_incoming() did (0: fresh start). */
static int generation_start(struct rig *rig, const struct config *cfg,
                            bool refuse_update, uint64_t *t_remapped,
                            uint64_t *t_irq)
{
    int r;

    if (cprkit_new(&rig->ctx) < 0)
        die("cprkit_new", NULL);
    r = cprkit_load_incoming(rig->ctx);
    if (r < 0)
        die("load", rig->ctx);
    if (refuse_update && r > 0 && !cprkit_is_rollback(rig->ctx)) {
        cprkit_rollback(rig->ctx, "benchmark: the new binary refuses");
        die("rollback", rig->ctx);
    }
    rig_setup(rig, cfg, t_remapped, t_irq);
    if (r == 0) {
        /* First start: bring the controller up, serve once. */
        nvme_bring_up(rig, rig->nvme.mem);
        nvme_first_command(rig);
    } else {
        nvme_resume(rig);
    }
    return r;
}

/* Samples in the results file so far. */
static unsigned samples_taken(const struct config *cfg)
{
    FILE *f = fopen(cfg->out, "re");
    unsigned n = 0;
    int c;

    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static const char *const rollback_cols[] = {
    "blackout_us", "to_rollback_us", "back_us",
};

/* Mode rollback: the new binary refuses the update right after its load
 * (a failed health check), the previous binary comes back with the same
 * blob, reclaims, services the first NVMe command and commits. Measured
 * from the suspend to that command: the whole outage of a refused update.
 * Every update starts in the same binary (the one rolled back to), so the
 * run count is the number of samples. */
static int run_rollback(struct config *cfg)
{
    struct rig rig = {0};
    uint64_t t_remapped, t_irq, t_first;

    if (generation_start(&rig, cfg, true, &t_remapped, &t_irq) > 0) {
        t_first = now_ns();
        if (cprkit_commit(rig.ctx) < 0)
            die("commit", rig.ctx);
        /* "execve" is the rollback's exec; "suspend" the update's. */
        append_sample(cfg, "%" PRIu64 " %" PRIu64 " %" PRIu64,
                      t_first - cprkit_timestamp(rig.ctx, "suspend"),
                      cprkit_timestamp(rig.ctx, "execve") -
                          cprkit_timestamp(rig.ctx, "suspend"),
                      t_first - cprkit_timestamp(rig.ctx, "execve"));
    }
    if (samples_taken(cfg) >= cfg->runs) {
        summarize(cfg, rollback_cols, 3);
        return 0;
    }
    nvme_save_and_exec(cfg, &rig);
    return 1;
}

static const char *const cprkit_cols[] = {
    "blackout_us", "suspend_us", "blob_us", "exec_us", "load_us",
    "remap_us",    "irq_us",     "first_us", "commit_us",
    /* load_us split: main() -> cprkit_load_incoming(), blob read and
     * unpacked, state (registry, records, device checks), fd checks. */
    "load_new_us", "load_read_us", "load_state_us", "load_validate_us",
};

static int run_cprkit(struct config *cfg)
{
    struct rig rig = {0};
    uint64_t t_remapped, t_irq, t_first, t_commit;

    if (generation_start(&rig, cfg, false, &t_remapped, &t_irq) > 0) {
        t_first = now_ns();
        if (cprkit_commit(rig.ctx) < 0)
            die("commit", rig.ctx);
        t_commit = now_ns();
        append_sample(cfg,
                      "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                      " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                      " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
                      t_first - cprkit_timestamp(rig.ctx, "suspend"),
                      cprkit_timestamp(rig.ctx, "suspended") -
                          cprkit_timestamp(rig.ctx, "suspend"),
                      cprkit_timestamp(rig.ctx, "execve") -
                          cprkit_timestamp(rig.ctx, "suspended"),
                      t_main - cprkit_timestamp(rig.ctx, "execve"),
                      cprkit_timestamp(rig.ctx, "loaded") - t_main,
                      t_remapped - cprkit_timestamp(rig.ctx, "loaded"),
                      t_irq - t_remapped, t_first - t_irq, t_commit - t_first,
                      cprkit_timestamp(rig.ctx, "load-start") - t_main,
                      cprkit_timestamp(rig.ctx, "blob-read") -
                          cprkit_timestamp(rig.ctx, "load-start"),
                      cprkit_timestamp(rig.ctx, "state-loaded") -
                          cprkit_timestamp(rig.ctx, "blob-read"),
                      cprkit_timestamp(rig.ctx, "loaded") -
                          cprkit_timestamp(rig.ctx, "state-loaded"));
    }
    if (cfg->run >= cfg->runs) {
        summarize(cfg, cprkit_cols, 13);
        return 0;
    }
    nvme_save_and_exec(cfg, &rig);
    return 1;
}

static int run_bare(struct config *cfg, uint64_t t_exec)
{
    char t[32];

    if (cfg->run > 0)
        append_sample(cfg, "%" PRIu64, t_main - t_exec);
    if (cfg->run >= cfg->runs) {
        static const char *const cols[] = {"exec_us"};

        summarize(cfg, cols, 1);
        return 0;
    }
    snprintf(t, sizeof(t), "--t0=%" PRIu64, now_ns());
    exec_next(cfg, NULL, t);
    return 1;
}

static int run_naive(struct config *cfg, uint64_t t_stop)
{
    struct rig rig = {0};
    uint64_t t_remapped, t_irq;
    char t[32];

    if (cprkit_new(&rig.ctx) < 0)
        die("cprkit_new", NULL);
    /* Nothing is preserved: every open is fresh, the device fd was closed
     * by the exec (vfio-pci resets the NVMe), all memory is pinned and
     * mapped again, the controller brought up from scratch. */
    rig_setup(&rig, cfg, &t_remapped, &t_irq);
    nvme_bring_up(&rig, rig.nvme.mem);
    nvme_first_command(&rig);
    if (cfg->run > 0)
        append_sample(cfg, "%" PRIu64, now_ns() - t_stop);
    if (cfg->run >= cfg->runs) {
        static const char *const cols[] = {"restart_us"};

        summarize(cfg, cols, 1);
        return 0;
    }
    snprintf(t, sizeof(t), "--t0=%" PRIu64, now_ns());
    /* The fds are all O_CLOEXEC: exec closes them, as a restart would. */
    exec_next(cfg, NULL, t);
    return 1;
}

/* ---- crash: restart by the keeper after a SIGKILL ------------------------ */

/* Where the driver finds cpr-exec: $BENCH_CPR_EXEC, else the build tree's
 * (meson passes its path; run-bench puts it into the guest). */
#ifndef BENCH_CPR_EXEC
#define BENCH_CPR_EXEC "cpr-exec"
#endif

/* The live state a restarted process continues from: a preserved memfd
 * the program updates as it goes (a crash restart gets the records of the
 * last sync, not later sections). */
struct crash_state {
    uint64_t magic;
    uint64_t t_kill; /* CLOCK_MONOTONIC just before raise(SIGKILL) */
    uint32_t run;    /* restarts so far */
    uint16_t sq_tail, cq_head, phase;
};
#define CRASH_MAGIC 0x6372617368737431ull

static const char *const crash_cols[] = {
    "blackout_us", "reap_us",  "restart_us", "load_us",   "remap_us",
    "irq_us",      "first_us", "commit_us",  "died_us",
};

static void crash_kill_self(struct crash_state *st, const struct rig *rig)
{
    st->sq_tail = rig->nvme.sq_tail;
    st->cq_head = rig->nvme.cq_head;
    st->phase = rig->nvme.phase;
    st->magic = CRASH_MAGIC;
    st->t_kill = now_ns();
    raise(SIGKILL);
    _exit(1);
}

/* The program under the keeper: first start or restart. */
static int run_crash_child(struct config *cfg)
{
    struct rig rig = {0};
    struct crash_state *st;
    uint64_t t_remapped, t_irq, t_first, t_commit, t_loaded, died;
    int r, fd;

    if (cprkit_new(&rig.ctx) < 0)
        die("cprkit_new", NULL);
    r = cprkit_load_incoming(rig.ctx);
    if (r < 0)
        die("load", rig.ctx);
    t_loaded = now_ns();
    rig_setup(&rig, cfg, &t_remapped, &t_irq);
    fd = cprkit_ram_open(rig.ctx, "bench-crash", 4096, NULL);
    if (fd < 0)
        die("state memfd", rig.ctx);
    st = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (st == MAP_FAILED)
        die("mmap state memfd", NULL);
    if (r == 0) {
        /* First start: bring the controller up, serve once, hand the
         * keeper the state, die. */
        if (cprkit_is_restart(rig.ctx))
            die("restart without state", NULL);
        nvme_bring_up(&rig, rig.nvme.mem);
        nvme_first_command(&rig);
        memset(st, 0, sizeof(*st));
        if (cprkit_keeper_sync(rig.ctx) < 0)
            die("keeper sync", rig.ctx);
        crash_kill_self(st, &rig);
    }
    if (!cprkit_is_restart(rig.ctx) || !rig.reclaimed ||
        st->magic != CRASH_MAGIC)
        die("not restarted by the keeper with the state", NULL);
    rig.nvme.sq_tail = st->sq_tail;
    rig.nvme.cq_head = st->cq_head;
    rig.nvme.phase = st->phase;
    nvme_first_command(&rig);
    t_first = now_ns();
    if (cprkit_commit(rig.ctx) < 0)
        die("commit", rig.ctx);
    t_commit = now_ns();
    died = cprkit_timestamp(rig.ctx, "died");
    if (!died)
        die("no \"died\" timestamp from the keeper", NULL);
    /* t_loaded is taken here rather than from the "loaded" timestamp so
     * both ends are this binary's clock reads. */
    append_sample(cfg,
                  "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                  " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
                  t_first - st->t_kill, died - st->t_kill, t_main - died,
                  t_loaded - t_main, t_remapped - t_loaded, t_irq - t_remapped,
                  t_first - t_irq, t_commit - t_first, t_first - died);
    st->run++;
    if (st->run >= cfg->runs)
        return 0; /* status 0: the keeper ends too */
    crash_kill_self(st, &rig);
    return 1;
}

/* The driver: runs the program under the real keeper and waits for it. */
static int run_crash(struct config *cfg)
{
    char mem[16], maps[16], vec[16], dev[16], runs[16], self[512];
    char sock[64], burst[16];
    const char *cpr_exec =
        getenv("BENCH_CPR_EXEC") ? getenv("BENCH_CPR_EXEC") : BENCH_CPR_EXEC;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    int status;
    pid_t pid;

    if (cfg->under_keeper)
        return run_crash_child(cfg);
    if (n <= 0)
        die("readlink /proc/self/exe", NULL);
    self[n] = '\0';
    snprintf(mem, sizeof(mem), "%u", cfg->mem_mib);
    snprintf(maps, sizeof(maps), "%u", cfg->mappings);
    snprintf(vec, sizeof(vec), "%u", cfg->vectors);
    snprintf(dev, sizeof(dev), "%u", cfg->devices);
    snprintf(runs, sizeof(runs), "%u", cfg->runs);
    snprintf(sock, sizeof(sock), "/tmp/bench-crash-%d.sock", (int)getpid());
    /* One restart per run and no more: a restarted process that fails
     * (exit 1 before its commit) would otherwise be restarted again and
     * again; past the burst the keeper gives up and ends non-zero. */
    snprintf(burst, sizeof(burst), "%u", cfg->runs + 1);
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        char *argv[] = {
            (char *)cpr_exec, "run", "--no-check", "--socket", sock,
            "--restart-delay", "0", "--restart-burst", burst, "--",
            self, "--mode", "crash", "--mem-mib", mem, "--mappings", maps,
            "--vectors", vec, "--devices", dev, "--runs", runs,
            "--out", (char *)cfg->out, "--under-keeper", NULL};
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        /* cpr-exec run prints the socket path: keep it off the TAP
         * stream (the program prints nothing on stdout either). */
        if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
            _exit(127);
        execv(cpr_exec, argv);
        fprintf(stderr, "bench-update: exec %s: %s\n", cpr_exec,
                strerror(errno));
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid", NULL);
    unlink(sock);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench-update: the keeper ended with status 0x%x\n",
                status);
        return 1;
    }
    summarize(cfg, crash_cols, 9);
    return 0;
}

/* The configurations of docs/performance.md, each mode in a child. */
/* iommufd: the same configurations as type1 (base and mappings sweep),
 * type1 and iommufd from one run, and the floor. */
static int run_sweep(unsigned runs, bool iommufd)
{
    static const unsigned mem[] = {64, 256, 1024};
    static const unsigned maps[] = {1, 16, 256, 4096};
    static const unsigned vecs[] = {1, 8, 64};
    static const char *const all_modes[] = {"cprkit", "crash", "naive", "bare",
                                            "rollback"};
    static const char *const iommufd_modes[] = {"cprkit", "iommufd", "bare"};
    const char *const *modes = iommufd ? iommufd_modes : all_modes;
    const unsigned nmodes = iommufd ? 3 : 5;
    struct config base = {64, 1, 1, 1, runs, NULL, NULL, 0, false};
    struct config list[32];
    unsigned n = 0, done = 0;
    char bdf[16];

    /* Every configuration's processes, the keeper's restarts included,
     * get the addresses from here (device_bdf). */
    device_bdf(0x1b36, 0x0010, bdf);
    device_bdf(0x1234, 0x11e8, bdf);
    device_bdf(0x8086, 0x10d3, bdf);

    setenv("BENCH_IN_SWEEP", "1", 1);
    for (unsigned i = 0; i < 3 && !iommufd; i++) {
        list[n] = base;
        list[n++].mem_mib = mem[i];
    }
    for (unsigned i = iommufd ? 0 : 1; i < 4; i++) {
        list[n] = base;
        list[n++].mappings = maps[i];
    }
    for (unsigned i = 1; i < 3 && !iommufd; i++) {
        list[n] = base;
        list[n++].vectors = vecs[i];
    }
    for (unsigned d = 2; d <= 3 && !iommufd; d++) {
        list[n] = base;
        list[n++].devices = d;
    }
    setenv("BENCH_RESULTS", "0", 1);
    for (unsigned i = 0; i < n; i++) {
        for (unsigned m = 0; m < nmodes; m++) {
            char mem_s[16], maps_s[16], vec_s[16], dev_s[16], runs_s[16];
            char out[] = "/tmp/bench-XXXXXX";
            int fd = mkstemp(out), status;
            pid_t pid;

            /* bare does not depend on the configuration: once is enough;
             * a refused update, in the base configuration */
            if ((!strcmp(modes[m], "bare") || !strcmp(modes[m], "rollback")) &&
                i > 0)
                continue;
            close(fd);
            unlink(out);
            snprintf(mem_s, sizeof(mem_s), "%u", list[i].mem_mib);
            snprintf(maps_s, sizeof(maps_s), "%u", list[i].mappings);
            snprintf(vec_s, sizeof(vec_s), "%u", list[i].vectors);
            snprintf(dev_s, sizeof(dev_s), "%u", list[i].devices);
            snprintf(runs_s, sizeof(runs_s), "%u", runs);
            fflush(stdout);
            pid = fork();
            if (pid == 0) {
                char *argv[] = {"/proc/self/exe", "--mode", (char *)modes[m],
                                "--mem-mib", mem_s, "--mappings", maps_s,
                                "--vectors", vec_s, "--devices", dev_s,
                                "--runs", runs_s, "--out", out, NULL};

                execv("/proc/self/exe", argv);
                _exit(127);
            }
            if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0) {
                printf("not ok %u - BENCH-FAILED mode=%s mem_mib=%u "
                       "mappings=%u vectors=%u devices=%u\n",
                       done + 1, modes[m], list[i].mem_mib,
                       list[i].mappings, list[i].vectors, list[i].devices);
                printf("1..%u\n", done + 1);
                return 1;
            }
            done++;
            {
                char next[16];

                snprintf(next, sizeof(next), "%u", done);
                setenv("BENCH_RESULTS", next, 1);
            }
        }
    }
    printf("1..%u\n", done);
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {64, 1, 1, 1, 5, "cprkit", NULL, 0, false};
    uint64_t t0 = 0;
    unsigned sweep_runs = 0;
    bool sweep_iommufd = false;

    t_main = now_ns();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("BENCH_RESULTS"))
        bench_results = (unsigned)atoi(getenv("BENCH_RESULTS"));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strncmp(a, "--t0=", 5) == 0) {
            t0 = strtoull(a + 5, NULL, 10);
            continue;
        }
        if (strcmp(a, "--under-keeper") == 0) {
            cfg.under_keeper = true;
            continue;
        }
        if (strcmp(a, "--no-aslr") == 0) {
            /* Inherited by every process the sweep forks and execs. */
            if (personality(ADDR_NO_RANDOMIZE) < 0)
                die("personality", NULL);
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench-update: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--mode") == 0)
            cfg.mode = v;
        else if (strcmp(a, "--mem-mib") == 0)
            cfg.mem_mib = (unsigned)atoi(v);
        else if (strcmp(a, "--mappings") == 0)
            cfg.mappings = (unsigned)atoi(v);
        else if (strcmp(a, "--vectors") == 0)
            cfg.vectors = (unsigned)atoi(v);
        else if (strcmp(a, "--devices") == 0)
            cfg.devices = (unsigned)atoi(v);
        else if (strcmp(a, "--runs") == 0)
            cfg.runs = (unsigned)atoi(v);
        else if (strcmp(a, "--out") == 0)
            cfg.out = v;
        else if (strcmp(a, "--run") == 0)
            cfg.run = (unsigned)atoi(v);
        else if (strcmp(a, "--sweep") == 0)
            sweep_runs = (unsigned)atoi(v);
        else if (strcmp(a, "--sweep-iommufd") == 0) {
            sweep_runs = (unsigned)atoi(v);
            sweep_iommufd = true;
        }
        else {
            fprintf(stderr, "bench-update: unknown option %s\n", a);
            return 2;
        }
    }
    if (sweep_runs)
        return run_sweep(sweep_runs, sweep_iommufd);
    if (!cfg.out || cfg.runs == 0 || cfg.runs >= MAX_RUNS ||
        cfg.mappings == 0 || cfg.vectors == 0 || cfg.vectors > 64 ||
        cfg.devices == 0 || cfg.devices > 3 ||
        (((uint64_t)cfg.mem_mib << 20) / cfg.mappings) % 4096)
        return fprintf(stderr, "bench-update: bad configuration\n"), 2;
    if (strcmp(cfg.mode, "cprkit") == 0 || strcmp(cfg.mode, "iommufd") == 0)
        return run_cprkit(&cfg);
    if (strcmp(cfg.mode, "bare") == 0)
        return run_bare(&cfg, t0);
    if (strcmp(cfg.mode, "rollback") == 0)
        return run_rollback(&cfg);
    if (strcmp(cfg.mode, "naive") == 0)
        return run_naive(&cfg, t0);
    if (strcmp(cfg.mode, "crash") == 0)
        return run_crash(&cfg);
    fprintf(stderr, "bench-update: unknown mode %s\n", cfg.mode);
    return 2;
}
