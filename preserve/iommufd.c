/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Find-or-create hooks of the iommufd backend (cprkit-iommufd.h) and their
 * records. Fresh: open, allocate, bind, attach, map, then record. Incoming:
 * hand back what was preserved and touch nothing — the iommufd, its IOAS,
 * the device's binding and attachment and every mapping never went away
 * (the kernel holds the mapped files), and there is no vaddr to remap.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iommufd-internal.h"

static void device_rec_free(struct iommufd_device_rec *d)
{
    g_free(d);
}

void iommufd_state_init(struct iommufd_state *s)
{
    s->iommufds = g_ptr_array_new_with_free_func(g_free);
    s->ioases = g_ptr_array_new_with_free_func(g_free);
    s->devices =
        g_ptr_array_new_with_free_func((GDestroyNotify)device_rec_free);
    s->mappings = g_ptr_array_new_with_free_func(g_free);
}

/* Frees the records, not the fds: those belong to the application. */
void iommufd_state_clear(struct iommufd_state *s)
{
    g_clear_pointer(&s->iommufds, g_ptr_array_unref);
    g_clear_pointer(&s->ioases, g_ptr_array_unref);
    g_clear_pointer(&s->devices, g_ptr_array_unref);
    g_clear_pointer(&s->mappings, g_ptr_array_unref);
}

struct iommufd_rec *iommufd_by_fd(cprkit_ctx *ctx, int fd)
{
    GPtrArray *iommufds = iommufd_of(ctx)->iommufds;

    for (guint i = 0; i < iommufds->len; i++) {
        struct iommufd_rec *f = g_ptr_array_index(iommufds, i);

        if (f->fd == fd)
            return f;
    }
    return NULL;
}

static struct iommufd_rec *iommufd_by_id(cprkit_ctx *ctx, int id)
{
    GPtrArray *iommufds = iommufd_of(ctx)->iommufds;

    for (guint i = 0; i < iommufds->len; i++) {
        struct iommufd_rec *f = g_ptr_array_index(iommufds, i);

        if (f->id == id)
            return f;
    }
    return NULL;
}

static int iommufd_get(cprkit_ctx *ctx, int fd, struct iommufd_rec **ret)
{
    *ret = iommufd_by_fd(ctx, fd);
    if (!*ret)
        return ctx_fail(ctx, -EBADF,
                        "fd %d is not an iommufd opened with "
                        "cprkit_iommufd_open()",
                        fd);
    return 0;
}

struct iommufd_ioas_rec *iommufd_ioas_find(cprkit_ctx *ctx, int iommufd,
                                           uint32_t ioas_id)
{
    GPtrArray *ioases = iommufd_of(ctx)->ioases;

    for (guint i = 0; i < ioases->len; i++) {
        struct iommufd_ioas_rec *a = g_ptr_array_index(ioases, i);

        if (a->iommufd == iommufd && a->ioas_id == ioas_id)
            return a;
    }
    return NULL;
}

static struct iommufd_ioas_rec *ioas_by_id(cprkit_ctx *ctx, int iommufd, int id)
{
    GPtrArray *ioases = iommufd_of(ctx)->ioases;

    for (guint i = 0; i < ioases->len; i++) {
        struct iommufd_ioas_rec *a = g_ptr_array_index(ioases, i);

        if (a->iommufd == iommufd && a->id == id)
            return a;
    }
    return NULL;
}

/* The IOAS must be one cprkit allocated in this iommufd: a mapping in
 * another one would not be preserved. */
static int ioas_get(cprkit_ctx *ctx, int iommufd, uint32_t ioas_id,
                    struct iommufd_ioas_rec **ret)
{
    struct iommufd_rec *f;
    int r;

    r = iommufd_get(ctx, iommufd, &f);
    if (r < 0)
        return r;
    *ret = iommufd_ioas_find(ctx, iommufd, ioas_id);
    if (!*ret)
        return ctx_fail(ctx, -ENOENT,
                        "IOAS %" PRIu32 " of iommufd %d was not allocated "
                        "with cprkit_iommufd_ioas_alloc()",
                        ioas_id, f->id);
    return 0;
}

uint64_t iommufd_mapped_bytes(cprkit_ctx *ctx)
{
    GPtrArray *mappings = iommufd_of(ctx)->mappings;
    uint64_t total = 0;

    for (guint i = 0; i < mappings->len; i++)
        total += ((struct iommufd_mapping_rec *)g_ptr_array_index(mappings, i))
                     ->length;
    return total;
}

CPRKIT_EXPORT int cprkit_iommufd_open(cprkit_ctx *ctx, int id,
                                      bool *ret_reclaimed)
{
    struct iommufd_state *s = iommufd_of(ctx);
    const char *path = s->dev_iommu ? s->dev_iommu : "/dev/iommu";
    struct iommufd_rec *f = iommufd_by_id(ctx, id);
    _cleanup_close_ int fd = -EBADF;
    int r;

    if (f && f->preserved) {
        r = cprkit_fd_find(ctx, IOMMUFD_FD_NAME, id, CPRKIT_FD_CHAR_DEVICE);
        if (r < 0)
            return r;
        f->preserved = false;
        f->reclaimed = true;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        ctx_log(ctx, LOG_DEBUG, "reclaimed iommufd %d (fd %d)", id, f->fd);
        return f->fd;
    }
    if (f)
        return ctx_fail(ctx, -EEXIST, "iommufd %d is already open (fd %d)", id,
                        f->fd);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "iommufd %d was not preserved; new iommufd resources "
                        "must wait for cprkit_commit()",
                        id);

    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return ctx_fail(ctx, -ENOENT, "no %s: kernel without CONFIG_IOMMUFD",
                        path);
    if (fd < 0)
        return ctx_fail(ctx, -errno, "open %s: %m", path);
    r = cprkit_fd_save(ctx, IOMMUFD_FD_NAME, id, fd);
    if (r < 0)
        return r;
    f = g_new0(struct iommufd_rec, 1);
    f->fd = fd;
    f->id = id;
    g_ptr_array_add(s->iommufds, f);
    ctx_state_changed(ctx);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return TAKE_FD(fd);
}

CPRKIT_EXPORT int cprkit_iommufd_ioas_alloc(cprkit_ctx *ctx, int iommufd,
                                            int id, uint32_t *ret_ioas_id,
                                            bool *ret_reclaimed)
{
    struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
    struct iommufd_ioas_rec *a;
    struct iommufd_rec *f;
    int r;

    r = iommufd_get(ctx, iommufd, &f);
    if (r < 0)
        return r;
    a = ioas_by_id(ctx, iommufd, id);
    if (a && a->preserved) {
        a->preserved = false;
        a->reclaimed = true;
        if (ret_ioas_id)
            *ret_ioas_id = a->ioas_id;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        ctx_log(ctx, LOG_DEBUG,
                "reclaimed IOAS %d of iommufd %d (IOAS id %" PRIu32 ")", id,
                f->id, a->ioas_id);
        return 0;
    }
    if (a)
        return ctx_fail(ctx, -EEXIST,
                        "IOAS %d of iommufd %d is already allocated (IOAS id "
                        "%" PRIu32 ")",
                        id, f->id, a->ioas_id);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "IOAS %d of iommufd %d was not preserved; new iommufd "
                        "resources must wait for cprkit_commit()",
                        id, f->id);

    r = vfio_ioctl(ctx, iommufd, IOMMU_IOAS_ALLOC, &alloc);
    if (r < 0)
        return ctx_fail(ctx, r, "IOMMU_IOAS_ALLOC in iommufd %d: %s", f->id,
                        strerror(-r));
    a = g_new0(struct iommufd_ioas_rec, 1);
    a->iommufd = iommufd;
    a->id = id;
    a->ioas_id = alloc.out_ioas_id;
    g_ptr_array_add(iommufd_of(ctx)->ioases, a);
    ctx_state_changed(ctx);
    if (ret_ioas_id)
        *ret_ioas_id = a->ioas_id;
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return 0;
}

/* The name of bdf's cdev, "vfioN": the one entry of
 * /sys/bus/pci/devices/<bdf>/vfio-dev/. */
static int cdev_name_of(cprkit_ctx *ctx, const char *bdf, char **ret)
{
    struct iommufd_state *s = iommufd_of(ctx);
    g_autofree char *dir_path = g_strdup_printf(
        "%s/%s/vfio-dev", s->sysfs_pci ? s->sysfs_pci : "/sys/bus/pci/devices",
        bdf);
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    g_autofree char *found = NULL;
    const char *name;

    if (!dir)
        return ctx_fail(ctx, -ENOENT,
                        "%s has no VFIO cdev (%s): bind it to vfio-pci, on a "
                        "kernel with CONFIG_VFIO_DEVICE_CDEV",
                        bdf, dir_path);
    while ((name = g_dir_read_name(dir))) {
        if (!g_str_has_prefix(name, "vfio"))
            continue;
        if (found)
            return ctx_fail(ctx, -EINVAL,
                            "%s has more than one VFIO cdev "
                            "(%s, %s)",
                            bdf, found, name);
        found = g_strdup(name);
    }
    if (!found)
        return ctx_fail(ctx, -ENOENT, "%s has no VFIO cdev in %s", bdf,
                        dir_path);
    *ret = TAKE_PTR(found);
    return 0;
}

/* The preserved cdev of bdf: bound and attached as the previous binary
 * left it; no ioctl touches the device (no reset). */
static int device_reclaim(cprkit_ctx *ctx, struct iommufd_rec *f,
                          uint32_t ioas_id, const char *bdf,
                          bool *ret_reclaimed)
{
    GPtrArray *devices = iommufd_of(ctx)->devices;
    struct iommufd_device_rec *d = NULL;
    struct vfio_device_rec *vd = vfio_device_by_bdf(ctx, bdf);
    int fd;

    if (!vd)
        return 1; /* not preserved, not open: the caller decides */
    if (!vd->preserved)
        return ctx_fail(ctx, -EEXIST, "device %s is already open (fd %d)", bdf,
                        vd->fd);
    if (!vd->cdev)
        return ctx_fail(ctx, -EINVAL,
                        "device %s was preserved through VFIO group %u, not "
                        "as a cdev: reclaim it with cprkit_vfio_device_open()",
                        bdf, vd->group_number);
    for (guint i = 0; i < devices->len; i++) {
        struct iommufd_device_rec *x = g_ptr_array_index(devices, i);

        if (x->fd == vd->fd)
            d = x;
    }
    if (!d)
        return ctx_fail(ctx, -EBADMSG,
                        "device %s was preserved as a cdev without its "
                        "iommufd binding",
                        bdf);
    if (d->iommufd != f->fd)
        return ctx_fail(ctx, -EINVAL,
                        "device %s was preserved bound to another iommufd "
                        "than %d",
                        bdf, f->id);
    if (d->ioas_id != ioas_id)
        return ctx_fail(ctx, -EINVAL,
                        "device %s was preserved attached to IOAS %" PRIu32
                        ", not %" PRIu32,
                        bdf, d->ioas_id, ioas_id);
    fd = vfio_cdev_device_reclaim(ctx, bdf);
    if (fd < 0)
        return fd;
    d->preserved = false;
    d->reclaimed = true;
    if (ret_reclaimed)
        *ret_reclaimed = true;
    ctx_log(ctx, LOG_DEBUG, "reclaimed device cdev %s (fd %d): no reset", bdf,
            fd);
    return fd;
}

CPRKIT_EXPORT int cprkit_iommufd_device_open(cprkit_ctx *ctx, int iommufd,
                                             uint32_t ioas_id, const char *bdf,
                                             bool *ret_reclaimed)
{
    struct iommufd_state *s = iommufd_of(ctx);
    struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind)};
    struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach)};
    g_autofree char *cdev = NULL, *path = NULL;
    _cleanup_close_ int fd = -EBADF;
    struct iommufd_device_rec *d;
    struct iommufd_ioas_rec *a;
    struct iommufd_rec *f;
    int r;

    if (!vfio_bdf_is_valid(bdf))
        return ctx_fail(ctx, -EINVAL,
                        "'%s' is not a PCI address like 0000:00:03.0",
                        bdf ? bdf : "(null)");
    r = ioas_get(ctx, iommufd, ioas_id, &a);
    if (r < 0)
        return r;
    f = iommufd_by_fd(ctx, iommufd);
    r = device_reclaim(ctx, f, ioas_id, bdf, ret_reclaimed);
    if (r != 1)
        return r;
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "device %s was not preserved; new VFIO resources must "
                        "wait for cprkit_commit()",
                        bdf);

    r = cdev_name_of(ctx, bdf, &cdev);
    if (r < 0)
        return r;
    path = g_strdup_printf(
        "%s/%s", s->dev_cdevs ? s->dev_cdevs : "/dev/vfio/devices", cdev);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ctx_fail(ctx, -errno, "open %s (%s): %m", path, bdf);
    bind.iommufd = iommufd;
    r = vfio_ioctl(ctx, fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
    if (r < 0)
        return ctx_fail(ctx, r, "VFIO_DEVICE_BIND_IOMMUFD %s to iommufd %d: %s",
                        bdf, f->id, strerror(-r));
    attach.pt_id = ioas_id;
    r = vfio_ioctl(ctx, fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
    if (r < 0)
        return ctx_fail(
            ctx, r, "VFIO_DEVICE_ATTACH_IOMMUFD_PT %s to IOAS %" PRIu32 ": %s",
            bdf, ioas_id, strerror(-r));
    /* Closing fd from here on would unbind (and reset) the device: only
     * the application closes it, as any device fd. */
    r = vfio_cdev_device_add(ctx, fd, bdf);
    if (r < 0)
        return r;
    d = g_new0(struct iommufd_device_rec, 1);
    d->fd = fd;
    d->iommufd = iommufd;
    d->devid = bind.out_devid;
    /* The kernel may attach to an automatic hwpt and say so in pt_id. */
    d->pt_id = attach.pt_id;
    d->ioas_id = ioas_id;
    g_ptr_array_add(s->devices, d);
    ctx_state_changed(ctx);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return TAKE_FD(fd);
}

static struct iommufd_mapping_rec *mapping_find(cprkit_ctx *ctx, int iommufd,
                                                uint32_t ioas_id, uint64_t iova,
                                                uint64_t length)
{
    GPtrArray *mappings = iommufd_of(ctx)->mappings;

    for (guint i = 0; i < mappings->len; i++) {
        struct iommufd_mapping_rec *m = g_ptr_array_index(mappings, i);

        if (m->iommufd == iommufd && m->ioas_id == ioas_id && m->iova == iova &&
            m->length == length)
            return m;
    }
    return NULL;
}

/* The reclaim of a preserved mapping: the kernel maps the file it was
 * given, so the application's fd must be that file at that offset. */
static int mapping_reclaim(cprkit_ctx *ctx, struct iommufd_mapping_rec *m,
                           int fd, uint64_t offset, uint32_t prot)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return ctx_fail(ctx, -errno, "iova 0x%" PRIx64 ": fstat fd %d: %m",
                        m->iova, fd);
    if ((uint64_t)st.st_dev != m->file_dev ||
        (uint64_t)st.st_ino != m->file_ino || offset != m->file_offset)
        return ctx_fail(ctx, -EXDEV,
                        "iova 0x%" PRIx64 "+0x%" PRIx64 " was preserved "
                        "mapping file (dev %" PRIu64 " ino %" PRIu64
                        ") at offset 0x%" PRIx64 ", not fd %d (dev %" PRIu64
                        " ino %" PRIu64 ") at offset 0x%" PRIx64,
                        m->iova, m->length, m->file_dev, m->file_ino,
                        m->file_offset, fd, (uint64_t)st.st_dev,
                        (uint64_t)st.st_ino, offset);
    if (prot != m->prot)
        return ctx_fail(ctx, -EINVAL,
                        "iova 0x%" PRIx64 " was preserved with prot 0x%x, "
                        "not 0x%x",
                        m->iova, m->prot, prot);
    m->preserved = false;
    m->reclaimed = true;
    return 0;
}

/* The public prot bits are the kernel's values, passed through. */
_Static_assert(CPRKIT_IOMMUFD_READ == IOMMU_IOAS_MAP_READABLE &&
                   CPRKIT_IOMMUFD_WRITE == IOMMU_IOAS_MAP_WRITEABLE,
               "CPRKIT_IOMMUFD_* differ from the kernel's map flags");

CPRKIT_EXPORT int cprkit_iommufd_map_file(cprkit_ctx *ctx, int iommufd,
                                          uint32_t ioas_id, int fd,
                                          uint64_t offset, uint64_t length,
                                          uint64_t iova, uint32_t prot)
{
    const uint32_t prot_bits =
        IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    struct iommu_ioas_map_file map = {.size = sizeof(map)};
    struct iommufd_mapping_rec *m;
    struct iommufd_ioas_rec *a;
    uint64_t last;
    struct stat st;
    int r;

    r = ioas_get(ctx, iommufd, ioas_id, &a);
    if (r < 0)
        return r;
    if (prot & ~prot_bits || !(prot & prot_bits))
        return ctx_fail(ctx, -EINVAL,
                        "prot 0x%x: CPRKIT_IOMMUFD_READ and/or "
                        "CPRKIT_IOMMUFD_WRITE, nothing else",
                        prot);
    if (length == 0 || (iova | length | offset) & (page - 1))
        return ctx_fail(
            ctx, -EINVAL,
            "iova 0x%" PRIx64 " length 0x%" PRIx64 " offset 0x%" PRIx64
            ": all must be multiples of the page size, length not 0",
            iova, length, offset);
    if (__builtin_add_overflow(iova, length - 1, &last) ||
        __builtin_add_overflow(offset, length - 1, &last))
        return ctx_fail(ctx, -EOVERFLOW,
                        "iova 0x%" PRIx64 " or offset 0x%" PRIx64
                        " + length 0x%" PRIx64 " overflows",
                        iova, offset, length);
    m = mapping_find(ctx, iommufd, ioas_id, iova, length);
    if (m && m->preserved)
        return mapping_reclaim(ctx, m, fd, offset, prot);
    if (m)
        return ctx_fail(ctx, -EEXIST,
                        "iova 0x%" PRIx64 "+0x%" PRIx64 " is already mapped",
                        iova, length);
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "iova 0x%" PRIx64 "+0x%" PRIx64
                        " was not preserved; new DMA mappings must wait for "
                        "cprkit_commit()",
                        iova, length);

    if (fstat(fd, &st) < 0)
        return ctx_fail(ctx, -errno, "iova 0x%" PRIx64 ": fstat fd %d: %m",
                        iova, fd);
    map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | prot;
    map.ioas_id = ioas_id;
    map.fd = fd;
    map.start = offset;
    map.length = length;
    map.iova = iova;
    r = vfio_ioctl(ctx, iommufd, IOMMU_IOAS_MAP_FILE, &map);
    if (r < 0)
        return ctx_fail(ctx, r,
                        "IOMMU_IOAS_MAP_FILE iova 0x%" PRIx64
                        " length 0x%" PRIx64 " of fd %d: %s",
                        iova, length, fd, strerror(-r));
    m = g_new0(struct iommufd_mapping_rec, 1);
    m->iommufd = iommufd;
    m->ioas_id = ioas_id;
    m->iova = iova;
    m->length = length;
    m->prot = prot;
    m->file_dev = st.st_dev;
    m->file_ino = st.st_ino;
    m->file_offset = offset;
    g_ptr_array_add(iommufd_of(ctx)->mappings, m);
    ctx_state_changed(ctx);
    return 0;
}

CPRKIT_EXPORT int cprkit_iommufd_unmap(cprkit_ctx *ctx, int iommufd,
                                       uint32_t ioas_id, uint64_t iova,
                                       uint64_t length)
{
    struct iommu_ioas_unmap unmap = {
        .size = sizeof(unmap),
        .ioas_id = ioas_id,
        .iova = iova,
        .length = length,
    };
    struct iommufd_mapping_rec *m =
        mapping_find(ctx, iommufd, ioas_id, iova, length);
    int r;

    if (!m)
        return ctx_fail(ctx, -ENOENT,
                        "no mapping at iova 0x%" PRIx64 " length 0x%" PRIx64
                        " in IOAS %" PRIu32,
                        iova, length, ioas_id);
    if (m->preserved)
        return ctx_fail(ctx, -EBUSY,
                        "iova 0x%" PRIx64 " is preserved and not reclaimed "
                        "yet",
                        iova);
    r = vfio_ioctl(ctx, iommufd, IOMMU_IOAS_UNMAP, &unmap);
    if (r < 0)
        return ctx_fail(ctx, r, "IOMMU_IOAS_UNMAP iova 0x%" PRIx64 ": %s", iova,
                        strerror(-r));
    /* The kernel unmaps every area inside the range; ours is one. */
    if (unmap.length != length)
        ctx_log(ctx, LOG_WARNING,
                "IOMMU_IOAS_UNMAP iova 0x%" PRIx64 ": unmapped 0x%" PRIx64
                " bytes, cprkit recorded 0x%" PRIx64,
                iova, (uint64_t)unmap.length, length);
    g_ptr_array_remove(iommufd_of(ctx)->mappings, m);
    ctx_state_changed(ctx);
    return 0;
}
