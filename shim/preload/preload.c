/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcprkit-preload.so: runs a VFIO program that does not link libcprkit
 * under cprkit (see shim/README.md and docs/operations.md,
 * "Programs that do not link libcprkit").
 *
 * It maps the program's raw VFIO calls onto libcprkit's find-or-create
 * hooks (linked in statically, hidden):
 *   open("/dev/vfio/vfio")            cprkit_vfio_container_open (n-th open = id n)
 *   open("/dev/vfio/N")               real open; reclaim on the incoming side
 *   VFIO_GROUP_SET_CONTAINER          cprkit_vfio_group_open (sets the IOMMU)
 *   VFIO_SET_IOMMU                    no-op (type1v2 was set by the library)
 *   VFIO_GROUP_GET_DEVICE_FD          cprkit_vfio_device_open
 *   VFIO_DEVICE_RESET                 cprkit_vfio_device_reset (no-op on reclaim)
 *   VFIO_IOMMU_MAP_DMA                anonymous memory is moved into a memfd
 *                                     (cprkit_ram_open) at the same address,
 *                                     then cprkit_vfio_dma_map
 *   VFIO_IOMMU_UNMAP_DMA              cprkit_vfio_dma_unmap
 *   VFIO_DEVICE_SET_IRQS (eventfds)   cprkit_vfio_irq_enable, the library's
 *                                     eventfds dup'ed over the program's
 *   execve by the program itself      an update (cprkit_exec)
 * A control thread serves the control socket ($CPRKIT_CONTROL_SOCKET); an
 * "upgrade" request execs the new binary from that thread.
 *
 * Every library call runs with in_lib set: the library's own open/ioctl/
 * close/execve calls come back through these wrappers and must pass
 * straight to libc.
 */
/* open and open64 (openat, openat64) are separate symbols to interpose;
 * with 64-bit file offsets the headers would make them one. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-control.h>
#include <cprkit/cprkit-vfio.h>

#include "preload-util.h"

#define EXPORT __attribute__((visibility("default")))
#define SECTION_NAME "cprkit-preload"
#define MAX_FDS 64

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static int (*real_execve)(const char *, char *const[], char *const[]);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_lib;
static bool active;
static pid_t owner;
static int log_max = LOG_INFO;
static cprkit_ctx *ctx;
static cprkit_control *control;

/* Incoming side: what the previous binary recorded and what was
 * re-created so far; init is complete when everything was claimed. */
static bool incoming;
static struct preload_item expected[PRELOAD_MAX_ITEMS];
static size_t n_expected;
static uint64_t commit_deadline_ns;

/* What this process has (written into the section before every exec). */
static struct preload_item items[PRELOAD_MAX_ITEMS];
static size_t n_items;

/* Why updates are refused, if the program did something the shim cannot
 * preserve (set once, never cleared). */
static char tainted[256];

/* The program's signal mask at start: the control thread blocks every
 * signal, and execve passes the calling thread's mask on, so the exec runs
 * with this one. */
static sigset_t program_sigmask;

struct container { int fd, id; };
struct group { int prog_fd, lib_fd, number, container_id; };
struct device { int fd; char bdf[32]; };
static struct container containers[MAX_FDS];
static struct group groups[MAX_FDS];
static struct device devices[MAX_FDS];
static size_t n_containers, n_groups, n_devices;
static int container_opens; /* ids in open order */
/* fds the shim holds that the program never saw: not closed for it. */
static int private_fds[MAX_FDS * 4];
static size_t n_private;

static void plog(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void plog(int prio, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (prio > log_max)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "<%d>cprkit-preload[%d]: %s\n", prio, (int)getpid(),
            buf);
}

static void lib_log(void *userdata, int priority, const char *msg)
{
    plog(priority, "%s", msg);
}

static void resolve(void)
{
    if (real_open)
        return;
    real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    real_execve = (int (*)(const char *, char *const[], char *const[]))dlsym(
        RTLD_NEXT, "execve");
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Interposed call paths run the shim only in the process that started it
 * (not in forked children) and not for the library's own calls. */
static bool shim_on(void)
{
    return active && !in_lib && getpid() == owner;
}

static void private_add(int fd)
{
    for (size_t i = 0; i < n_private; i++)
        if (private_fds[i] == fd)
            return;
    if (n_private < sizeof(private_fds) / sizeof(private_fds[0]))
        private_fds[n_private++] = fd;
}

static bool private_has(int fd)
{
    for (size_t i = 0; i < n_private; i++)
        if (private_fds[i] == fd)
            return true;
    return false;
}

static void taint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void taint(const char *fmt, ...)
{
    va_list ap;

    if (tainted[0])
        return;
    va_start(ap, fmt);
    vsnprintf(tainted, sizeof(tainted), fmt, ap);
    va_end(ap);
    plog(LOG_WARNING, "updates are refused from now on: %s", tainted);
}

/* ---- records ---------------------------------------------------------- */

static void item_add(const struct preload_item *it)
{
    if (preload_items_find(items, n_items, it) >= 0)
        return;
    if (n_items == PRELOAD_MAX_ITEMS) {
        taint("more than %d VFIO resources", PRELOAD_MAX_ITEMS);
        return;
    }
    items[n_items++] = *it;
}

static void item_remove(const struct preload_item *it)
{
    int i = preload_items_find(items, n_items, it);

    if (i >= 0)
        items[i] = items[--n_items];
}

static int save_section(void)
{
    char buf[PRELOAD_MAX_ITEMS * 96];
    int len = preload_items_format(items, n_items, buf, sizeof(buf));

    if (len < 0)
        return len;
    in_lib++;
    len = cprkit_section_put(ctx, SECTION_NAME, buf, (size_t)len);
    in_lib--;
    return len;
}

static struct container *container_by_fd(int fd)
{
    for (size_t i = 0; i < n_containers; i++)
        if (containers[i].fd == fd)
            return &containers[i];
    return NULL;
}

static struct group *group_by_fd(int fd)
{
    for (size_t i = 0; i < n_groups; i++)
        if (groups[i].prog_fd == fd || groups[i].lib_fd == fd)
            return &groups[i];
    return NULL;
}

static struct device *device_by_fd(int fd)
{
    for (size_t i = 0; i < n_devices; i++)
        if (devices[i].fd == fd)
            return &devices[i];
    return NULL;
}

/* ---- incoming: rollback and commit ------------------------------------ */

/* Hands the state back to the previous binary. Returns only if that
 * failed; the caller fails the program's call then. */
static void rollback(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void rollback(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    int r;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    plog(LOG_ERR, "the new binary cannot take over the preserved devices: "
                  "%s; rolling back",
         why);
    in_lib++;
    r = cprkit_rollback(ctx, why);
    plog(LOG_ERR, "rollback failed: %s (%s)", strerror(-r),
         cprkit_last_error(ctx));
    in_lib--;
}

static void claim(const struct preload_item *it)
{
    int i = preload_items_find(expected, n_expected, it);

    if (i >= 0)
        expected[i].claimed = true;
    item_add(it);
}

/* Init is complete when every recorded resource was re-created: commit
 * then, before the program's next instruction after the claiming call. */
static void maybe_commit(void)
{
    int r;

    if (!incoming)
        return;
    for (size_t i = 0; i < n_expected; i++)
        if (!expected[i].claimed)
            return;
    in_lib++;
    r = cprkit_commit(ctx);
    if (r < 0) {
        char why[512];

        snprintf(why, sizeof(why), "commit: %s", cprkit_last_error(ctx));
        in_lib--;
        rollback("%s", why);
        return;
    }
    incoming = false;
    plog(LOG_INFO, "committed: generation %" PRIu64 ", every preserved VFIO "
                   "resource was taken over",
         cprkit_generation(ctx));
    cprkit_control_mark_serving(control);
    in_lib--;
}

/* The new binary did not re-create everything in time. */
static void check_deadline(void)
{
    char what[128] = "";

    if (!incoming || now_ns() < commit_deadline_ns)
        return;
    for (size_t i = 0; i < n_expected; i++)
        if (!expected[i].claimed) {
            preload_item_describe(&expected[i], what, sizeof(what));
            break;
        }
    rollback("initialisation did not re-create %s within "
             "CPRKIT_PRELOAD_INIT_TIMEOUT",
             what);
}

/* ---- open ------------------------------------------------------------- */

static int errno_ret(int r)
{
    errno = -r;
    return -1;
}

/* Called with the lock held. Returns the fd for the program or < 0. */
static int vfio_open(const char *path, int flags, int (*opener)(void *),
                     void *opener_data)
{
    bool is_container;
    int number = preload_vfio_path(path, &is_container);
    int fd, r;

    if (is_container) {
        int id = container_opens;
        bool reclaimed = false;

        in_lib++;
        fd = cprkit_vfio_container_open(ctx, id, &reclaimed);
        in_lib--;
        if (fd < 0) {
            if (incoming)
                rollback("open /dev/vfio/vfio (container %d): %s", id,
                         cprkit_last_error(ctx));
            return fd;
        }
        container_opens++;
        if (!(flags & O_CLOEXEC))
            plog(LOG_DEBUG, "container fd %d stays O_CLOEXEC (cprkit's rule)", fd);
        containers[n_containers++] = (struct container){fd, id};
        if (incoming && !reclaimed)
            rollback("container %d was not preserved", id);
        claim(&(struct preload_item){.kind = PRELOAD_ITEM_CONTAINER,
                                     .a = (uint64_t)id});
        maybe_commit();
        return fd;
    }
    if (number < 0)
        return opener(opener_data);

    if (n_groups == MAX_FDS)
        return -EMFILE;
    /* Incoming: the preserved group fd, found by number, in the container
     * it was preserved in (opening it again would fail with EBUSY). */
    for (size_t i = 0; incoming && i < n_expected; i++) {
        const struct preload_item *it = &expected[i];
        int cfd = -1;

        if (it->kind != PRELOAD_ITEM_GROUP || it->a != (uint64_t)number)
            continue;
        for (size_t k = 0; k < n_containers; k++)
            if (containers[k].id == (int)it->b)
                cfd = containers[k].fd;
        if (cfd < 0) {
            rollback("/dev/vfio/%d opened before its container %" PRIu64
                     " (the shim needs the program to open /dev/vfio/vfio "
                     "first)",
                     number, it->b);
            return -EINVAL;
        }
        in_lib++;
        fd = cprkit_vfio_group_open(ctx, cfd, (unsigned)number, NULL);
        in_lib--;
        if (fd < 0) {
            rollback("reclaim VFIO group %d: %s", number, cprkit_last_error(ctx));
            return fd;
        }
        groups[n_groups++] = (struct group){fd, fd, number, (int)it->b};
        claim(it);
        maybe_commit();
        return fd;
    }
    if (incoming) {
        rollback("the new binary opens VFIO group %d, which was not preserved",
                 number);
        return -EBUSY;
    }
    r = opener(opener_data);
    if (r < 0)
        return r;
    groups[n_groups++] = (struct group){r, -1, number, -1};
    return r;
}

struct open_args {
    int dirfd;
    const char *path;
    int flags;
    mode_t mode;
};

static int do_real_openat(void *data)
{
    struct open_args *a = data;
    int fd = real_openat(a->dirfd, a->path, a->flags, a->mode);

    return fd < 0 ? -errno : fd;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_args a = {dirfd, path, flags, mode};
    bool is_container;
    int r;

    resolve();
    if (!shim_on() || !path || preload_vfio_path(path, &is_container) < 0)
        return real_openat(dirfd, path, flags, mode);
    pthread_mutex_lock(&lock);
    r = vfio_open(path, flags, do_real_openat, &a);
    pthread_mutex_unlock(&lock);
    return r < 0 ? errno_ret(r) : r;
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

/* ---- ioctl ------------------------------------------------------------ */

/* Puts the file of lib_fd under the program's fd number, keeping the
 * program's FD_CLOEXEC and O_NONBLOCK choices. */
static int replace_fd(int lib_fd, int prog_fd)
{
    int fdflags = fcntl(prog_fd, F_GETFD);
    int flflags = fcntl(prog_fd, F_GETFL);

    if (fdflags < 0 || flflags < 0)
        return -EBADF;
    if (lib_fd == prog_fd)
        return 0;
    if (dup3(lib_fd, prog_fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
        return -errno;
    if (fcntl(prog_fd, F_SETFL, flflags & O_NONBLOCK) < 0)
        return -errno;
    private_add(lib_fd);
    return 0;
}

static int group_set_container(struct group *g, int container_fd)
{
    struct container *c = container_by_fd(container_fd);
    int fd, r;

    if (!c)
        return -EINVAL;
    if (g->lib_fd >= 0) {
        /* Incoming: attached since the previous binary. */
        if (g->container_id != c->id) {
            rollback("VFIO group %d is attached to container %d in the new "
                     "binary, %d before",
                     g->number, c->id, g->container_id);
            return -EINVAL;
        }
        return 0;
    }
    /* A group opens once: close the program's fd, let the library open
     * and attach it, and put it back under the program's number. */
    real_close(g->prog_fd);
    in_lib++;
    fd = cprkit_vfio_group_open(ctx, container_fd, (unsigned)g->number, NULL);
    in_lib--;
    if (fd < 0) {
        plog(LOG_ERR, "VFIO group %d: %s", g->number, cprkit_last_error(ctx));
        return fd;
    }
    /* The library's open usually gets the number just closed. */
    if (fd != g->prog_fd) {
        if (dup3(fd, g->prog_fd, O_CLOEXEC) < 0) {
            r = -errno;
            plog(LOG_ERR, "VFIO group %d: dup3: %s", g->number, strerror(-r));
            return r;
        }
        private_add(fd);
    }
    g->lib_fd = fd;
    g->container_id = c->id;
    item_add(&(struct preload_item){.kind = PRELOAD_ITEM_GROUP,
                                    .a = (uint64_t)g->number,
                                    .b = (uint64_t)c->id});
    return 0;
}

static int group_get_device(struct group *g, const char *bdf)
{
    bool reclaimed = false;
    int fd;

    if (g->lib_fd < 0)
        return -EINVAL; /* the kernel says the same without a container */
    if (n_devices == MAX_FDS || strlen(bdf) >= sizeof(devices[0].bdf))
        return -EINVAL;
    in_lib++;
    fd = cprkit_vfio_device_open(ctx, g->lib_fd, bdf, &reclaimed);
    in_lib--;
    if (fd < 0) {
        if (incoming)
            rollback("device %s: %s", bdf, cprkit_last_error(ctx));
        else
            plog(LOG_ERR, "device %s: %s", bdf, cprkit_last_error(ctx));
        return fd;
    }
    devices[n_devices].fd = fd;
    snprintf(devices[n_devices].bdf, sizeof(devices[0].bdf), "%s", bdf);
    n_devices++;
    {
        struct preload_item it = {.kind = PRELOAD_ITEM_DEVICE};

        snprintf(it.bdf, sizeof(it.bdf), "%s", bdf);
        claim(&it);
    }
    maybe_commit();
    return fd;
}

static int read_self_maps(char **ret)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int fd;

    if (!buf)
        return -ENOMEM;
    fd = real_openat(AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        free(buf);
        return -errno;
    }
    for (;;) {
        ssize_t n;

        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);

            if (!nb) {
                free(buf);
                real_close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    real_close(fd);
    buf[len] = '\0';
    *ret = buf;
    return 0;
}

/* Moves [vaddr, vaddr + size) into the memfd (copying the contents when
 * fresh; the preserved contents win when reclaimed) at the same address. */
static int move_into_memfd(int memfd, void *vaddr, uint64_t size, int prot,
                           bool copy)
{
    void *p;

    if (copy) {
        void *tmp = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);

        if (tmp == MAP_FAILED)
            return -errno;
        if (prot & PROT_READ)
            memcpy(tmp, vaddr, size);
        munmap(tmp, size);
    }
    p = mmap(vaddr, size, prot, MAP_SHARED | MAP_FIXED, memfd, 0);
    if (p == MAP_FAILED)
        return -errno;
    return 0;
}

static int map_dma(struct container *c, struct vfio_iommu_type1_dma_map *m)
{
    struct preload_item it = {.kind = PRELOAD_ITEM_DMA,
                              .a = (uint64_t)c->id,
                              .b = m->iova,
                              .c = m->size};
    void *vaddr = (void *)(uintptr_t)m->vaddr;
    uint32_t prot = m->flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    char what[256], name[64];
    enum preload_backing backing;
    bool reclaimed = false;
    char *maps = NULL;
    int r, mprot = 0, memfd;

    if (m->flags & ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) {
        plog(LOG_ERR, "VFIO_IOMMU_MAP_DMA with flags 0x%x is not supported "
                      "under the shim",
             m->flags);
        return -EINVAL;
    }
    r = read_self_maps(&maps);
    if (r < 0)
        return r;
    backing = preload_classify_range(maps, m->vaddr, m->size, &mprot, what,
                                     sizeof(what));
    free(maps);
    if (backing == PRELOAD_BACKING_OTHER) {
        plog(LOG_ERR, "DMA memory %s at iova 0x%llx cannot be preserved: the "
                      "shim needs anonymous memory (or a shared file mapping)",
             what, (unsigned long long)m->iova);
        if (incoming)
            rollback("DMA memory %s cannot be preserved", what);
        return -EINVAL;
    }
    if (backing == PRELOAD_BACKING_ANON) {
        snprintf(name, sizeof(name), "preload-dma-%d-%llx", c->id,
                 (unsigned long long)m->iova);
        in_lib++;
        memfd = cprkit_ram_open(ctx, name, m->size, &reclaimed);
        in_lib--;
        if (memfd < 0) {
            if (incoming)
                rollback("DMA mapping iova 0x%llx size 0x%llx: %s",
                         (unsigned long long)m->iova,
                         (unsigned long long)m->size, cprkit_last_error(ctx));
            return memfd;
        }
        private_add(memfd);
        r = move_into_memfd(memfd, vaddr, m->size, mprot, !reclaimed);
        if (r < 0) {
            plog(LOG_ERR, "cannot move DMA memory %s into a memfd: %s", what,
                 strerror(-r));
            if (incoming)
                rollback("moving DMA memory %s into the preserved memfd: %s",
                         what, strerror(-r));
            return r;
        }
    } else {
        plog(LOG_WARNING, "DMA memory %s is a shared file mapping the shim "
                          "cannot re-open in the new binary: updates will be "
                          "refused",
             what);
        taint("DMA memory %s is a shared file mapping", what);
    }
    in_lib++;
    r = cprkit_vfio_dma_map(ctx, c->fd, m->iova, m->size, vaddr, prot);
    in_lib--;
    if (r < 0) {
        if (incoming)
            rollback("DMA mapping iova 0x%llx size 0x%llx: %s",
                     (unsigned long long)m->iova, (unsigned long long)m->size,
                     cprkit_last_error(ctx));
        plog(LOG_ERR, "VFIO_IOMMU_MAP_DMA: %s", cprkit_last_error(ctx));
        return r;
    }
    claim(&it);
    maybe_commit();
    return 0;
}

static int unmap_dma(struct container *c, struct vfio_iommu_type1_dma_unmap *u)
{
    char name[64];
    int r;

    if (u->flags != 0) {
        plog(LOG_ERR, "VFIO_IOMMU_UNMAP_DMA with flags 0x%x is not supported "
                      "under the shim",
             u->flags);
        return -EINVAL;
    }
    if (incoming) {
        rollback("the new binary unmaps DMA at iova 0x%llx during its "
                 "initialisation",
                 (unsigned long long)u->iova);
        return -EBUSY;
    }
    in_lib++;
    r = cprkit_vfio_dma_unmap(ctx, c->fd, u->iova, u->size);
    if (r < 0)
        plog(LOG_ERR, "VFIO_IOMMU_UNMAP_DMA: %s", cprkit_last_error(ctx));
    snprintf(name, sizeof(name), "ram:preload-dma-%d-%llx", c->id,
             (unsigned long long)u->iova);
    if (r == 0) {
        /* The memfd stays mapped at the program's address; it is just no
         * longer preserved. */
        int fd = cprkit_fd_find(ctx, name, 0, CPRKIT_FD_ANY);

        if (fd >= 0 && cprkit_fd_remove(ctx, name, 0) == 0)
            real_close(fd);
    }
    in_lib--;
    if (r < 0)
        return r;
    item_remove(&(struct preload_item){.kind = PRELOAD_ITEM_DMA,
                                       .a = (uint64_t)c->id,
                                       .b = u->iova,
                                       .c = u->size});
    return 0;
}

static int set_irqs(struct device *d, struct vfio_irq_set *s)
{
    uint32_t action = s->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    uint32_t data = s->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    const int32_t *prog_fds = (const int32_t *)s->data;
    struct preload_item it = {.kind = PRELOAD_ITEM_IRQ, .a = s->index,
                              .b = s->count};
    int lib_fds[256];
    int r;

    snprintf(it.bdf, sizeof(it.bdf), "%s", d->bdf);
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER && data == VFIO_IRQ_SET_DATA_EVENTFD &&
        s->start == 0 && s->count > 0 && s->count <= 256) {
        for (uint32_t i = 0; i < s->count; i++)
            if (prog_fds[i] < 0) {
                plog(LOG_ERR, "VFIO_DEVICE_SET_IRQS with fd -1 (partial "
                              "vector set-up) is not supported under the shim");
                return -EINVAL;
            }
        in_lib++;
        r = cprkit_vfio_irq_enable(ctx, d->fd, s->index, s->count, lib_fds);
        in_lib--;
        if (r < 0) {
            if (incoming)
                rollback("IRQ index %u x%u of %s: %s", s->index, s->count,
                         d->bdf, cprkit_last_error(ctx));
            plog(LOG_ERR, "VFIO_DEVICE_SET_IRQS: %s", cprkit_last_error(ctx));
            return r;
        }
        /* The program's eventfd numbers now name the kernel-wired
         * eventfds: on the incoming side they hold the interrupts raised
         * during the update. */
        for (uint32_t i = 0; i < s->count; i++) {
            r = replace_fd(lib_fds[i], prog_fds[i]);
            if (r < 0) {
                if (incoming)
                    rollback("cannot put the preserved eventfd under fd %d: %s",
                             prog_fds[i], strerror(-r));
                return r;
            }
        }
        claim(&it);
        maybe_commit();
        return 0;
    }
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER && data == VFIO_IRQ_SET_DATA_NONE &&
        s->count == 0) {
        if (incoming) {
            rollback("the new binary disables IRQ index %u of %s during its "
                     "initialisation",
                     s->index, d->bdf);
            return -EBUSY;
        }
        in_lib++;
        r = cprkit_vfio_irq_disable(ctx, d->fd, s->index);
        in_lib--;
        if (r < 0 && r != -ENOENT)
            return r;
        for (size_t i = 0; i < n_items; i++)
            if (items[i].kind == PRELOAD_ITEM_IRQ && items[i].a == s->index &&
                strcmp(items[i].bdf, d->bdf) == 0)
                items[i--] = items[--n_items];
        if (r == -ENOENT) /* not enabled through the shim: the kernel's say */
            return real_ioctl(d->fd, VFIO_DEVICE_SET_IRQS, s) < 0 ? -errno : 0;
        return 0;
    }
    if (action == VFIO_IRQ_SET_ACTION_UNMASK && data == VFIO_IRQ_SET_DATA_EVENTFD &&
        s->index == VFIO_PCI_INTX_IRQ_INDEX && s->count == 1) {
        in_lib++;
        r = cprkit_vfio_intx_unmask_fd(ctx, d->fd);
        in_lib--;
        if (r < 0)
            return r;
        return replace_fd(r, prog_fds[0]);
    }
    if (data != VFIO_IRQ_SET_DATA_EVENTFD)
        /* Masking, unmasking, loopback triggers: runtime operations that
         * do not change what is preserved. */
        return real_ioctl(d->fd, VFIO_DEVICE_SET_IRQS, s) < 0 ? -errno : 0;
    plog(LOG_ERR, "VFIO_DEVICE_SET_IRQS flags 0x%x start %u count %u on %s is "
                  "not supported under the shim",
         s->flags, s->start, s->count, d->bdf);
    return -EINVAL;
}

/* Returns 1 if the request was not the shim's business. */
static int vfio_ioctl(int fd, unsigned long req, void *arg)
{
    struct container *c = container_by_fd(fd);
    struct group *g = c ? NULL : group_by_fd(fd);
    struct device *d = c || g ? NULL : device_by_fd(fd);

    if (c) {
        switch (req) {
        case VFIO_SET_IOMMU:
            /* The library set VFIO_TYPE1v2_IOMMU with the first group. */
            if ((uintptr_t)arg == VFIO_TYPE1v2_IOMMU ||
                (uintptr_t)arg == VFIO_TYPE1_IOMMU)
                return 0;
            plog(LOG_ERR, "VFIO_SET_IOMMU type %lu: only type1 IOMMUs are "
                          "supported under the shim",
                 (unsigned long)(uintptr_t)arg);
            return -EINVAL;
        case VFIO_IOMMU_MAP_DMA:
            return map_dma(c, arg);
        case VFIO_IOMMU_UNMAP_DMA:
            return unmap_dma(c, arg);
        }
        return 1;
    }
    if (g) {
        switch (req) {
        case VFIO_GROUP_SET_CONTAINER:
            return group_set_container(g, *(const int *)arg);
        case VFIO_GROUP_GET_DEVICE_FD:
            return group_get_device(g, arg);
        case VFIO_GROUP_UNSET_CONTAINER:
            taint("the program detached VFIO group %d from its container",
                  g->number);
            return 1;
        }
        return 1;
    }
    if (d) {
        switch (req) {
        case VFIO_DEVICE_RESET: {
            int r;

            in_lib++;
            r = cprkit_vfio_device_reset(ctx, fd);
            in_lib--;
            if (r == 0 && incoming)
                plog(LOG_DEBUG, "VFIO_DEVICE_RESET of %s skipped: the device "
                                "is preserved",
                     d->bdf);
            return r;
        }
        case VFIO_DEVICE_SET_IRQS:
            return set_irqs(d, arg);
        }
    }
    return 1;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;
    int r;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    resolve();
    if (_IOC_TYPE(req) != VFIO_TYPE || !shim_on())
        return real_ioctl(fd, req, arg);
    pthread_mutex_lock(&lock);
    r = vfio_ioctl(fd, req, arg);
    pthread_mutex_unlock(&lock);
    if (r == 1)
        return real_ioctl(fd, req, arg);
    return r < 0 ? errno_ret(r) : r;
}

/* ---- close ------------------------------------------------------------ */

EXPORT int close(int fd)
{
    resolve();
    if (!shim_on())
        return real_close(fd);
    pthread_mutex_lock(&lock);
    /* fds the program never saw (the library's copies, memfds, the
     * control socket) survive programs that close every fd. */
    if (private_has(fd)) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    if (container_by_fd(fd) || device_by_fd(fd))
        taint("the program closed its VFIO fd %d", fd);
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

/* ---- execve ----------------------------------------------------------- */

static int upgrade_fn(void *userdata, cprkit_ctx *c, const char *binary,
                      char *const argv[]);

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    static const char *const drop[] = {CPRKIT_CONTROL_SOCKET_ENV,
                                       CPRKIT_STATE_FD_ENV, NULL};
    char **env;
    int r;

    resolve();
    if (!active || in_lib)
        return real_execve(path, argv, envp);
    if (getpid() != owner) {
        /* A child of the program: it must not take over the control
         * socket or the state (the shim stays passive there). */
        env = preload_env_without(envp, drop);
        if (!env)
            return errno_ret(-ENOMEM);
        r = real_execve(path, argv, env);
        free(env);
        return r;
    }
    /* The program replaces itself: that is an update. */
    pthread_mutex_lock(&lock);
    r = upgrade_fn(NULL, ctx, path, argv);
    pthread_mutex_unlock(&lock);
    return errno_ret(r);
}

/* glibc's execv and execvp call its internal execve, not the exported
 * one: they are interposed too (execl* are not: docs/limits.md). */
EXPORT int execv(const char *path, char *const argv[])
{
    extern char **environ;

    return execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    const char *path_env = getenv("PATH");
    char buf[4096];
    int saved = ENOENT;

    if (!*file)
        return errno_ret(-ENOENT);
    if (strchr(file, '/') || !active || in_lib)
        return strchr(file, '/') ? execve(file, argv, envp)
                                 : ((int (*)(const char *, char *const[],
                                             char *const[]))dlsym(RTLD_NEXT,
                                                                  "execvpe"))(
                                       file, argv, envp);
    if (!path_env)
        path_env = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path_env;; p++) {
        const char *end = strchrnul(p, ':');
        int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(end - p), p,
                         end == p ? "" : "/", file);

        if (n > 0 && (size_t)n < sizeof(buf) && access(buf, X_OK) == 0) {
            execve(buf, argv, envp);
            if (errno != ENOENT && errno != EACCES)
                return -1;
            saved = errno;
        }
        if (!*end)
            break;
        p = end;
    }
    return errno_ret(-saved);
}

EXPORT int execvp(const char *file, char *const argv[])
{
    extern char **environ;

    return execvpe(file, argv, environ);
}

/* ---- control thread and start-up -------------------------------------- */

static int upgrade_fn(void *userdata, cprkit_ctx *c, const char *binary,
                      char *const argv[])
{
    sigset_t old;
    int r;

    /* The reasons go to the operator too, through the control endpoint. */
    if (tainted[0]) {
        plog(LOG_ERR, "update to %s refused: %s", binary, tainted);
        return cprkit_set_error(c, -EOPNOTSUPP, "refused by the preload shim: %s",
                                tainted);
    }
    if (incoming) {
        plog(LOG_ERR, "update to %s refused: the previous update is not "
                      "committed yet",
             binary);
        return cprkit_set_error(c, -EBUSY,
                                "refused by the preload shim: the previous "
                                "update is not committed yet");
    }
    r = save_section();
    if (r < 0)
        return r;
    plog(LOG_INFO, "exec %s: the program's threads stop here, the new binary "
                   "re-runs its initialisation",
         binary);
    in_lib++;
    pthread_sigmask(SIG_SETMASK, &program_sigmask, &old);
    r = cprkit_exec(c, binary, argv, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    in_lib--;
    plog(LOG_ERR, "update to %s failed, this binary keeps serving: %s", binary,
         cprkit_last_error(c));
    return r;
}

static void *control_thread(void *arg)
{
    /* This thread only runs shim and library code. */
    in_lib = 1;
    for (;;) {
        struct pollfd p = {.fd = cprkit_control_fd(control), .events = POLLIN};

        poll(&p, 1, 100);
        pthread_mutex_lock(&lock);
        cprkit_control_dispatch(control);
        check_deadline();
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void after_fork_child(void)
{
    /* The child has copies of the fds, not the devices' future: it never
     * acts for the shim. The lock may have been held by another thread. */
    active = false;
    pthread_mutex_init(&lock, NULL);
}

static int load_section(void)
{
    const void *data;
    size_t size;
    int r;

    r = cprkit_section_get(ctx, SECTION_NAME, &data, &size);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    r = preload_items_parse(data, size, expected, PRELOAD_MAX_ITEMS);
    if (r < 0)
        return r;
    n_expected = (size_t)r;
    return 0;
}

__attribute__((constructor)) static void preload_init(void)
{
    const char *debug = getenv("CPRKIT_PRELOAD_DEBUG");
    const char *timeout = getenv("CPRKIT_PRELOAD_INIT_TIMEOUT");
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t thread;
    int r;

    resolve();
    if (debug && *debug && strcmp(debug, "0") != 0)
        log_max = LOG_DEBUG;
    if (!getenv(CPRKIT_CONTROL_SOCKET_ENV))
        return; /* not under cpr-exec run (or a child of the program) */
    if (dlsym(RTLD_DEFAULT, "cprkit_control_listen")) {
        plog(LOG_WARNING, "the program links libcprkit itself: the shim "
                          "stays out of the way");
        return;
    }
    in_lib = 1;
    r = cprkit_new(&ctx);
    if (r < 0) {
        plog(LOG_ERR, "cannot create a cprkit context: %s", strerror(-r));
        _exit(EXIT_FAILURE);
    }
    cprkit_set_log_fn(ctx, lib_log, NULL);
    cprkit_set_log_priority(ctx, log_max);
    r = cprkit_load_incoming(ctx);
    if (r < 0) {
        plog(LOG_ERR, "the state from the previous binary is unusable: %s",
             cprkit_last_error(ctx));
        cprkit_rollback(ctx, cprkit_last_error(ctx));
        plog(LOG_ERR, "rollback failed: %s", cprkit_last_error(ctx));
        _exit(EXIT_FAILURE);
    }
    incoming = r == 1;
    if (incoming) {
        r = load_section();
        if (r < 0) {
            plog(LOG_ERR, "section %s: %s", SECTION_NAME, strerror(-r));
            cprkit_rollback(ctx, "the shim's record of the VFIO resources "
                                 "is unreadable");
            _exit(EXIT_FAILURE);
        }
        commit_deadline_ns =
            now_ns() + (uint64_t)(timeout ? atoi(timeout) : 30) * 1000000000ull;
        plog(LOG_INFO, "started by an update (generation %" PRIu64 "%s): "
                       "expecting the program to re-create %zu VFIO resources",
             cprkit_generation(ctx),
             cprkit_is_rollback(ctx) ? ", rolled back" : "", n_expected);
    }
    r = cprkit_control_listen(ctx, NULL, &control);
    if (r < 0) {
        plog(LOG_ERR, "control socket: %s", cprkit_last_error(ctx));
        if (incoming) {
            cprkit_rollback(ctx, "the control socket cannot be taken over");
            _exit(EXIT_FAILURE);
        }
        cprkit_free(ctx);
        ctx = NULL;
        in_lib = 0;
        return;
    }
    cprkit_control_set_upgrade_fn(control, upgrade_fn, NULL);
    r = cprkit_fd_find(ctx, "cprkit-control", 0, CPRKIT_FD_ANY);
    if (r >= 0)
        private_add(r);
    private_add(cprkit_control_fd(control));
    owner = getpid();
    active = true;
    pthread_atfork(NULL, NULL, after_fork_child);
    if (!incoming)
        cprkit_control_mark_serving(control);
    else
        maybe_commit(); /* nothing to re-create */

    /* Signals are the program's business, not the control thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    program_sigmask = old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&thread, &attr, control_thread, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    in_lib = 0;
    if (r != 0) {
        plog(LOG_ERR, "cannot start the control thread: %s", strerror(r));
        if (incoming)
            rollback("cannot start the control thread");
        active = false;
    }
}
