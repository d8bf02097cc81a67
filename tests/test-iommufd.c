/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd participant with a fake kernel: the hooks' records, the blob
 * round trip, the new side's reclaim and CHANGE_PROCESS, the blockers and
 * the refusals. The host has no iommufd: /dev/iommu is played by /dev/null
 * and the device cdev by a symlink to it, and every ioctl goes to the fake
 * behind the VFIO layer's seam (vfio_of(ctx)->ioctl_fn).
 */
#include <cap-ng.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "iommufd-internal.h"
#include "test-util.h"

#define BDF "0000:00:03.0"
#define PAGE 0x1000
#define RAM_SIZE (4 * PAGE)
#define FAKE_IOAS_ID 7
#define FAKE_DEVID 42
#define FAKE_HWPT_ID 9

/* ---- the fake kernel ---------------------------------------------------- */

struct fake_call {
    int fd;
    unsigned long request;
    uint32_t flags;
    uint64_t iova;
    uint64_t length;
    uint64_t start;
    uint32_t id; /* ioas_id, pt_id or bind's iommufd */
};

static struct {
    GArray *calls; /* struct fake_call */
    int change_process_errno;
    uint64_t rlimit_mode;
} fake;

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
    struct fake_call call = {.fd = fd, .request = request};
    int err = 0;

    if (request == IOMMU_IOAS_ALLOC) {
        ((struct iommu_ioas_alloc *)arg)->out_ioas_id = FAKE_IOAS_ID;
    } else if (request == VFIO_DEVICE_BIND_IOMMUFD) {
        struct vfio_device_bind_iommufd *b = arg;

        call.id = (uint32_t)b->iommufd;
        b->out_devid = FAKE_DEVID;
    } else if (request == VFIO_DEVICE_ATTACH_IOMMUFD_PT) {
        struct vfio_device_attach_iommufd_pt *a = arg;

        call.id = a->pt_id;
        a->pt_id = FAKE_HWPT_ID; /* the kernel's automatic hwpt */
    } else if (request == IOMMU_IOAS_MAP_FILE) {
        struct iommu_ioas_map_file *m = arg;

        call.flags = m->flags;
        call.id = m->ioas_id;
        call.iova = m->iova;
        call.length = m->length;
        call.start = m->start;
    } else if (request == IOMMU_IOAS_UNMAP) {
        struct iommu_ioas_unmap *u = arg;

        call.id = u->ioas_id;
        call.iova = u->iova;
        call.length = u->length;
    } else if (request == IOMMU_IOAS_CHANGE_PROCESS) {
        err = fake.change_process_errno;
    } else if (request == IOMMU_OPTION) {
        struct iommu_option *o = arg;

        call.id = o->option_id;
        if (o->option_id == IOMMU_OPTION_RLIMIT_MODE &&
            o->op == IOMMU_OPTION_OP_GET)
            o->val64 = fake.rlimit_mode;
        else
            err = EOPNOTSUPP;
    } else if (request == VFIO_DEVICE_SET_IRQS) {
        call.flags = ((struct vfio_irq_set *)arg)->flags;
    } else {
        err = ENOTTY;
    }
    g_array_append_val(fake.calls, call);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

static void fake_reset(void)
{
    if (fake.calls)
        g_array_unref(fake.calls);
    memset(&fake, 0, sizeof(fake));
    fake.calls = g_array_new(false, true, sizeof(struct fake_call));
}

static unsigned count_calls(unsigned long request)
{
    unsigned n = 0;

    for (guint i = 0; i < fake.calls->len; i++)
        if (g_array_index(fake.calls, struct fake_call, i).request == request)
            n++;
    return n;
}

static struct fake_call *last_call(unsigned long request)
{
    for (guint i = fake.calls->len; i-- > 0;) {
        struct fake_call *c = &g_array_index(fake.calls, struct fake_call, i);

        if (c->request == request)
            return c;
    }
    g_assert_not_reached();
}

/* ---- a fake system: /dev/iommu, sysfs and the cdev ---------------------- */

struct setup {
    cprkit_ctx *ctx;
    char *dir; /* sysfs and /dev/vfio/devices of the fake */
    char *sysfs;
    char *cdevs;
    int ram; /* the memfd the mappings map */
    int iommufd;
    uint32_t ioas_id;
    int device;
};

static void use_fake(cprkit_ctx *ctx, struct setup *s)
{
    struct iommufd_state *st = iommufd_of(ctx);

    vfio_of(ctx)->ioctl_fn = fake_ioctl;
    st->dev_iommu = "/dev/null";
    st->sysfs_pci = s->sysfs;
    st->dev_cdevs = s->cdevs;
}

static void setup_fs(struct setup *s)
{
    g_autofree char *vfio_dev = NULL, *link = NULL;

    s->dir = g_dir_make_tmp("test-iommufd-XXXXXX", NULL);
    g_assert_nonnull(s->dir);
    s->sysfs = g_build_filename(s->dir, "sys", NULL);
    s->cdevs = g_build_filename(s->dir, "cdevs", NULL);
    vfio_dev = g_build_filename(s->sysfs, BDF, "vfio-dev", "vfio3", NULL);
    g_assert_cmpint(g_mkdir_with_parents(vfio_dev, 0700), ==, 0);
    g_assert_cmpint(g_mkdir_with_parents(s->cdevs, 0700), ==, 0);
    link = g_build_filename(s->cdevs, "vfio3", NULL);
    g_assert_cmpint(symlink("/dev/null", link), ==, 0);
}

static void teardown_fs(struct setup *s)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", s->dir);

    g_assert_cmpint(system(cmd), ==, 0);
    g_free(s->dir);
    g_free(s->sysfs);
    g_free(s->cdevs);
}

/* The old side, through the hooks: an iommufd, an IOAS, the device and
 * two one-page mappings of the RAM memfd. */
static void setup_init(struct setup *s)
{
    g_autofree char *dev_name = vfio_device_fd_name(BDF);
    bool reclaimed = true;

    fake_reset();
    setup_fs(s);
    g_assert_cmpint(cprkit_new(&s->ctx), ==, 0);
    use_fake(s->ctx, s);
    s->ram = memfd_create("ram", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(s->ram, RAM_SIZE), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "ram", 0, s->ram), ==, 0);

    s->iommufd = cprkit_iommufd_open(s->ctx, 0, &reclaimed);
    g_assert_cmpint(s->iommufd, >=, 0);
    g_assert_false(reclaimed);
    g_assert_true(fd_has_cloexec(s->iommufd));
    reclaimed = true;
    g_assert_cmpint(cprkit_iommufd_ioas_alloc(s->ctx, s->iommufd, 0,
                                              &s->ioas_id, &reclaimed),
                    ==, 0);
    g_assert_cmpuint(s->ioas_id, ==, FAKE_IOAS_ID);
    g_assert_false(reclaimed);
    s->device = cprkit_iommufd_device_open(s->ctx, s->iommufd, s->ioas_id, BDF,
                                           &reclaimed);
    g_assert_cmpint(s->device, >=, 0);
    g_assert_true(fd_has_cloexec(s->device));
    /* The fake cdev is /dev/null: say it is what a real one would be. */
    fdreg_lookup(s->ctx, dev_name, 0)->identity.type = CPRKIT_FD_VFIO_DEVICE;
    g_assert_cmpint(cprkit_iommufd_map_file(s->ctx, s->iommufd, s->ioas_id,
                                            s->ram, 0, PAGE, 0x100000,
                                            IOMMU_IOAS_MAP_READABLE |
                                                IOMMU_IOAS_MAP_WRITEABLE),
                    ==, 0);
    g_assert_cmpint(cprkit_iommufd_map_file(s->ctx, s->iommufd, s->ioas_id,
                                            s->ram, 2 * PAGE, PAGE, 0x200000,
                                            IOMMU_IOAS_MAP_READABLE),
                    ==, 0);
}

static void setup_clear(struct setup *s)
{
    cprkit_free(s->ctx);
    close(s->ram);
    close(s->iommufd);
    close(s->device);
    teardown_fs(s);
}

/* The blob the old side would write. */
static void encode(struct setup *s, uint8_t **ret_buf, size_t *ret_size)
{
    Cprkit__State *state;

    g_assert_cmpint(state_build(s->ctx, 1, &state), ==, 0);
    g_assert_cmpint(blob_encode(s->ctx, state, NULL, ret_buf, ret_size), ==, 0);
    state_build_free(state);
}

/* A new side: a fresh context with the fake, the blob decoded. */
static cprkit_ctx *new_side(struct setup *s, const uint8_t *buf, size_t size,
                            Cprkit__State **ret_state)
{
    struct command_line rescue = {0};
    cprkit_ctx *ctx;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    use_fake(ctx, s);
    g_assert_cmpint(blob_decode(ctx, buf, size, &rescue, ret_state), ==, 0);
    command_line_clear(&rescue);
    return ctx;
}

static cprkit_ctx *load_new_side(struct setup *s, const uint8_t *buf,
                                 size_t size)
{
    Cprkit__State *state;
    cprkit_ctx *ctx = new_side(s, buf, size, &state);

    g_assert_cmpint(state_load(ctx, state), ==, 0);
    cprkit__state__free_unpacked(state, NULL);
    ctx->incoming = true;
    return ctx;
}

static struct iommufd_mapping_rec *mapping(cprkit_ctx *ctx, guint i)
{
    return g_ptr_array_index(iommufd_of(ctx)->mappings, i);
}

/* ---- tests -------------------------------------------------------------- */

/* What the hooks asked of the kernel and recorded. */
static void test_fresh_hooks(void)
{
    struct iommufd_state *st;
    struct vfio_device_rec *vd;
    struct fake_call *c;
    struct setup s;
    struct stat ram_st;

    setup_init(&s);
    st = iommufd_of(s.ctx);
    c = last_call(VFIO_DEVICE_BIND_IOMMUFD);
    g_assert_cmpint(c->fd, ==, s.device);
    g_assert_cmpuint(c->id, ==, (uint32_t)s.iommufd);
    c = last_call(VFIO_DEVICE_ATTACH_IOMMUFD_PT);
    g_assert_cmpuint(c->id, ==, FAKE_IOAS_ID);
    c = last_call(IOMMU_IOAS_MAP_FILE);
    g_assert_cmpint(c->fd, ==, s.iommufd);
    g_assert_cmphex(c->flags, ==,
                    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE);
    g_assert_cmphex(c->iova, ==, 0x200000);
    g_assert_cmphex(c->start, ==, 2 * PAGE);
    g_assert_cmpuint(c->id, ==, FAKE_IOAS_ID);
    g_assert_cmpuint(count_calls(IOMMU_IOAS_MAP_FILE), ==, 2);

    g_assert_cmpuint(st->iommufds->len, ==, 1);
    g_assert_cmpuint(st->ioases->len, ==, 1);
    g_assert_cmpuint(st->devices->len, ==, 1);
    {
        struct iommufd_device_rec *d = g_ptr_array_index(st->devices, 0);

        g_assert_cmpuint(d->devid, ==, FAKE_DEVID);
        g_assert_cmpuint(d->pt_id, ==, FAKE_HWPT_ID); /* what came back */
        g_assert_cmpuint(d->ioas_id, ==, FAKE_IOAS_ID);
    }
    g_assert_cmpuint(st->mappings->len, ==, 2);
    g_assert_cmpint(fstat(s.ram, &ram_st), ==, 0);
    g_assert_cmpuint(mapping(s.ctx, 1)->file_ino, ==, ram_st.st_ino);
    g_assert_cmphex(mapping(s.ctx, 1)->file_offset, ==, 2 * PAGE);
    g_assert_cmpuint(iommufd_mapped_bytes(s.ctx), ==, 2 * PAGE);

    /* The VFIO layer has the cdev as a device of its own (IRQs, reset). */
    vd = vfio_device_by_fd(s.ctx, s.device);
    g_assert_nonnull(vd);
    g_assert_true(vd->cdev);
    g_assert_cmpstr(vd->bdf, ==, BDF);
    /* The registry names it as a group's device fd. */
    g_assert_cmpint(
        cprkit_fd_find(s.ctx, "vfio-device:" BDF, 0, CPRKIT_FD_VFIO_DEVICE), ==,
        s.device);
    g_assert_cmpint(cprkit_fd_find(s.ctx, "iommufd", 0, CPRKIT_FD_CHAR_DEVICE),
                    ==, s.iommufd);

    /* Twice the same: refused, nothing asked of the kernel. */
    fake_reset();
    g_assert_cmpint(cprkit_iommufd_open(s.ctx, 0, NULL), ==, -EEXIST);
    g_assert_cmpint(cprkit_iommufd_ioas_alloc(s.ctx, s.iommufd, 0, NULL, NULL),
                    ==, -EEXIST);
    g_assert_cmpint(
        cprkit_iommufd_device_open(s.ctx, s.iommufd, s.ioas_id, BDF, NULL), ==,
        -EEXIST);
    g_assert_cmpuint(fake.calls->len, ==, 0);
    setup_clear(&s);
}

/* The records survive the blob; the new binary gets everything back
 * without an ioctl, after one CHANGE_PROCESS in load. */
static void test_roundtrip_reclaim(void)
{
    const struct fd_identity group_id = {CPRKIT_FD_VFIO_GROUP, 5, 78, 0xf000,
                                         S_IFCHR};
    g_autofree uint8_t *buf = NULL;
    struct iommufd_state *lst;
    int msi[2], msi_again[2];
    uint32_t ioas_id = 0;
    bool reclaimed = false;
    cprkit_ctx *loaded;
    struct setup s;
    size_t size;
    int other;

    setup_init(&s);
    /* IRQs of the cdev go through the VFIO layer, as for a group's device. */
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, s.device, VFIO_PCI_MSI_IRQ_INDEX, 2, msi),
        ==, 0);
    g_assert_cmpint(last_call(VFIO_DEVICE_SET_IRQS)->fd, ==, s.device);
    encode(&s, &buf, &size);
    fake_reset();
    loaded = load_new_side(&s, buf, size);
    /* Load: one CHANGE_PROCESS, on the iommufd, and nothing else. */
    g_assert_cmpuint(fake.calls->len, ==, 1);
    g_assert_cmpuint(count_calls(IOMMU_IOAS_CHANGE_PROCESS), ==, 1);
    g_assert_cmpint(last_call(IOMMU_IOAS_CHANGE_PROCESS)->fd, ==, s.iommufd);

    lst = iommufd_of(loaded);
    g_assert_cmpuint(lst->iommufds->len, ==, 1);
    g_assert_cmpuint(lst->ioases->len, ==, 1);
    g_assert_cmpuint(lst->devices->len, ==, 1);
    g_assert_cmpuint(lst->mappings->len, ==, 2);
    g_assert_true(mapping(loaded, 0)->preserved);
    g_assert_cmphex(mapping(loaded, 1)->iova, ==, 0x200000);
    g_assert_cmphex(mapping(loaded, 1)->file_offset, ==, 2 * PAGE);
    {
        struct iommufd_device_rec *d = g_ptr_array_index(lst->devices, 0);
        struct vfio_device_rec *vd = vfio_device_by_fd(loaded, s.device);

        g_assert_true(d->preserved);
        g_assert_cmpuint(d->devid, ==, FAKE_DEVID);
        g_assert_cmpuint(d->pt_id, ==, FAKE_HWPT_ID);
        g_assert_nonnull(vd);
        g_assert_true(vd->cdev && vd->preserved);
    }

    /* Nothing reclaimed yet: commit lists it all. */
    g_assert_cmpint(cprkit_commit(loaded), ==, -EBUSY);
    g_assert_nonnull(
        strstr(cprkit_last_error(loaded),
               "4 preserved iommufd resources were not reclaimed "
               "with the cprkit_iommufd_*() hooks: IOAS 0, device " BDF
               ", mapping iova 0x100000+0x1000, mapping iova "
               "0x200000+0x1000"));

    fake_reset();
    g_assert_cmpint(cprkit_iommufd_open(loaded, 0, &reclaimed), ==, s.iommufd);
    g_assert_true(reclaimed);
    reclaimed = false;
    g_assert_cmpint(
        cprkit_iommufd_ioas_alloc(loaded, s.iommufd, 0, &ioas_id, &reclaimed),
        ==, 0);
    g_assert_cmpuint(ioas_id, ==, FAKE_IOAS_ID);
    g_assert_true(reclaimed);
    reclaimed = false;
    /* The type1 hook does not take a cdev: it says which hook does. */
    g_assert_cmpint(fdreg_add(loaded, "vfio-group", 7, 901, &group_id, true),
                    ==, 0);
    g_assert_cmpint(cprkit_vfio_device_open(loaded, 901, BDF, NULL), ==,
                    -EINVAL);
    g_assert_nonnull(strstr(cprkit_last_error(loaded),
                            "reclaim it with cprkit_iommufd_device_open()"));
    /* Another IOAS than the one it was attached to. */
    g_assert_cmpint(
        cprkit_iommufd_device_open(loaded, s.iommufd, ioas_id + 1, BDF, NULL),
        ==, -ENOENT);
    g_assert_cmpint(
        cprkit_iommufd_device_open(loaded, s.iommufd, ioas_id, BDF, &reclaimed),
        ==, s.device);
    g_assert_true(reclaimed);
    g_assert_cmpint(
        cprkit_iommufd_device_open(loaded, s.iommufd, ioas_id, BDF, NULL), ==,
        -EEXIST);
    /* Its eventfds come back, without VFIO_DEVICE_SET_IRQS. */
    g_assert_cmpint(cprkit_vfio_irq_enable(
                        loaded, s.device, VFIO_PCI_MSI_IRQ_INDEX, 2, msi_again),
                    ==, 0);
    g_assert_cmpint(msi_again[0], ==, msi[0]);
    g_assert_cmpint(msi_again[1], ==, msi[1]);
    /* The VFIO layer takes the cdev: no reset of a preserved device. */
    g_assert_cmpint(cprkit_vfio_device_reset(loaded, s.device), ==, 0);
    g_assert_cmpint(cprkit_iommufd_map_file(
                        loaded, s.iommufd, ioas_id, s.ram, 0, PAGE, 0x100000,
                        IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE),
                    ==, 0);
    g_assert_true(mapping(loaded, 0)->reclaimed);
    g_assert_false(mapping(loaded, 0)->preserved);
    /* No ioctl touched anything. */
    g_assert_cmpuint(fake.calls->len, ==, 0);

    /* Another file at the preserved range: refused. */
    other = memfd_create("other", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(other, RAM_SIZE), ==, 0);
    g_assert_cmpint(cprkit_iommufd_map_file(loaded, s.iommufd, ioas_id, other,
                                            2 * PAGE, PAGE, 0x200000,
                                            IOMMU_IOAS_MAP_READABLE),
                    ==, -EXDEV);
    g_assert_nonnull(strstr(cprkit_last_error(loaded), "iova 0x200000+0x1000 "
                                                       "was preserved"));
    /* The same file at another offset: refused too. */
    g_assert_cmpint(cprkit_iommufd_map_file(loaded, s.iommufd, ioas_id, s.ram,
                                            PAGE, PAGE, 0x200000,
                                            IOMMU_IOAS_MAP_READABLE),
                    ==, -EXDEV);
    g_assert_true(mapping(loaded, 1)->preserved);
    /* New mappings, IOAS and iommufds wait for the commit. */
    g_assert_cmpint(cprkit_iommufd_map_file(loaded, s.iommufd, ioas_id, s.ram,
                                            3 * PAGE, PAGE, 0x300000,
                                            IOMMU_IOAS_MAP_READABLE),
                    ==, -EBUSY);
    g_assert_nonnull(strstr(cprkit_last_error(loaded), "must wait for "
                                                       "cprkit_commit()"));
    g_assert_cmpint(cprkit_iommufd_ioas_alloc(loaded, s.iommufd, 1, NULL, NULL),
                    ==, -EBUSY);
    g_assert_cmpint(cprkit_iommufd_open(loaded, 1, NULL), ==, -EBUSY);
    /* A preserved mapping is not unmapped before it is reclaimed. */
    g_assert_cmpint(
        cprkit_iommufd_unmap(loaded, s.iommufd, ioas_id, 0x200000, PAGE), ==,
        -EBUSY);
    g_assert_cmpuint(fake.calls->len, ==, 0);

    /* One mapping left: commit names it and only it. */
    g_assert_cmpint(cprkit_fd_find(loaded, "ram", 0, CPRKIT_FD_MEMFD), ==,
                    s.ram);
    g_assert_cmpint(cprkit_commit(loaded), ==, -EBUSY);
    g_assert_cmpstr(cprkit_last_error(loaded), ==,
                    "cannot commit: 1 preserved iommufd resource was not "
                    "reclaimed with the cprkit_iommufd_*() hooks: mapping iova "
                    "0x200000+0x1000");
    g_assert_cmpint(cprkit_iommufd_map_file(loaded, s.iommufd, ioas_id, s.ram,
                                            2 * PAGE, PAGE, 0x200000,
                                            IOMMU_IOAS_MAP_READABLE),
                    ==, 0);
    g_assert_cmpint(cprkit_commit(loaded), ==, 0);
    g_assert_false(cprkit_is_incoming(loaded));
    close(other);
    close(msi[0]);
    close(msi[1]);
    cprkit_free(loaded);
    setup_clear(&s);
}

/* The hook refuses what the kernel would, before asking it. */
static void test_map_validation(void)
{
    const uint32_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    uint64_t serial;
    struct setup s;

    setup_init(&s);
    fake_reset();
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, PAGE, 0x400000, 0),
                    ==, -EINVAL);
    g_assert_cmpint(cprkit_iommufd_map_file(
                        s.ctx, s.iommufd, s.ioas_id, s.ram, 0, PAGE, 0x400000,
                        IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE),
                    ==, -EINVAL);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "prot 0x5"));
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, PAGE, 0x400800, rw),
                    ==, -EINVAL);
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0x800, PAGE, 0x400000, rw),
                    ==, -EINVAL);
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, 0, 0x400000, rw),
                    ==, -EINVAL);
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, 2 * PAGE, UINT64_MAX - PAGE + 1,
                                            rw),
                    ==, -EOVERFLOW);
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            UINT64_MAX - PAGE + 1, 2 * PAGE,
                                            0x400000, rw),
                    ==, -EOVERFLOW);
    /* An IOAS cprkit did not allocate, an fd that is no iommufd. */
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, 99, s.ram, 0,
                                            PAGE, 0x400000, rw),
                    ==, -ENOENT);
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.ram, s.ioas_id, s.ram, 0,
                                            PAGE, 0x400000, rw),
                    ==, -EBADF);
    /* The same range twice. */
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, PAGE, 0x100000, rw),
                    ==, -EEXIST);
    g_assert_cmpuint(fake.calls->len, ==, 0);

    /* Unmap: exactly a recorded mapping; the record goes, the keeper is
     * told (the state serial moves). */
    g_assert_cmpint(
        cprkit_iommufd_unmap(s.ctx, s.iommufd, s.ioas_id, 0x100000, 2 * PAGE),
        ==, -ENOENT);
    g_assert_cmpuint(fake.calls->len, ==, 0);
    serial = s.ctx->state_serial;
    g_assert_cmpint(
        cprkit_iommufd_unmap(s.ctx, s.iommufd, s.ioas_id, 0x100000, PAGE), ==,
        0);
    g_assert_cmpuint(count_calls(IOMMU_IOAS_UNMAP), ==, 1);
    g_assert_cmphex(last_call(IOMMU_IOAS_UNMAP)->iova, ==, 0x100000);
    g_assert_cmpuint(last_call(IOMMU_IOAS_UNMAP)->id, ==, FAKE_IOAS_ID);
    g_assert_cmpuint(iommufd_of(s.ctx)->mappings->len, ==, 1);
    g_assert_cmpuint(s.ctx->state_serial, >, serial);
    serial = s.ctx->state_serial;
    g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id, s.ram,
                                            0, PAGE, 0x100000, rw),
                    ==, 0);
    g_assert_cmpuint(s.ctx->state_serial, >, serial);
    setup_clear(&s);
}

static void test_no_dev_iommu(void)
{
    struct setup s = {0};
    cprkit_ctx *ctx;

    fake_reset();
    setup_fs(&s);
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    use_fake(ctx, &s);
    iommufd_of(ctx)->dev_iommu = "/nonexistent/iommu";
    g_assert_cmpint(cprkit_iommufd_open(ctx, 0, NULL), ==, -ENOENT);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "no /nonexistent/iommu: kernel without CONFIG_IOMMUFD");
    g_assert_cmpuint(iommufd_of(ctx)->iommufds->len, ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 0);
    cprkit_free(ctx);
    teardown_fs(&s);
}

/* A device without a cdev in sysfs (not bound to vfio-pci, or a kernel
 * without VFIO_DEVICE_CDEV): a clear error, no fd left behind. */
static void test_device_without_cdev(void)
{
    struct setup s;
    int fds;

    setup_init(&s);
    fake_reset();
    fds = count_open_fds();
    g_assert_cmpint(cprkit_iommufd_device_open(s.ctx, s.iommufd, s.ioas_id,
                                               "0000:00:04.0", NULL),
                    ==, -ENOENT);
    g_assert_nonnull(
        strstr(cprkit_last_error(s.ctx), "0000:00:04.0 has no VFIO cdev"));
    g_assert_cmpint(cprkit_iommufd_device_open(s.ctx, s.iommufd, s.ioas_id,
                                               "00:04.0", NULL),
                    ==, -EINVAL);
    g_assert_cmpint(count_open_fds(), ==, fds);
    g_assert_cmpuint(fake.calls->len, ==, 0);
    setup_clear(&s);
}

/* Each probe answer of the old side's check, and the whole pre-flight
 * refusing with it. */
static void test_blockers(void)
{
    static const struct {
        int err;
        int expect;
        const char *message;
    } cases[] = {
        {ENOTTY, -EOPNOTSUPP,
         "iommufd 0: kernel without IOMMU_IOAS_CHANGE_PROCESS (Linux 6.13+)"},
        {EINVAL, -EOPNOTSUPP,
         "iommufd 0 has a mapping not made with IOMMU_IOAS_MAP_FILE (e.g. "
         "IOMMU_IOAS_MAP of anonymous memory"},
        {EBUSY, -EBUSY, "iommufd 0: an IOAS has a mapping without pages"},
    };
    g_autofree char *dev_name = vfio_device_fd_name(BDF);
    struct setup s;

    setup_init(&s);
    /* The pre-flight checks every fd is what was saved: undo the test's
     * VFIO_DEVICE label on the fake cdev (/dev/null). */
    fdreg_lookup(s.ctx, dev_name, 0)->identity.type = CPRKIT_FD_CHAR_DEVICE;
    fake_reset();
    g_assert_cmpint(iommufd_check_blockers(s.ctx), ==, 0);
    /* It only asked: the probe and the accounting mode, nothing else. */
    g_assert_cmpuint(count_calls(IOMMU_IOAS_CHANGE_PROCESS), ==, 1);
    g_assert_cmpuint(count_calls(IOMMU_OPTION), ==, 1);
    g_assert_cmpuint(last_call(IOMMU_OPTION)->id, ==, IOMMU_OPTION_RLIMIT_MODE);
    g_assert_cmpuint(fake.calls->len, ==, 2);
    g_assert_cmpint(cprkit_check_update(s.ctx, test_self_exe()), ==, 0);

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        fake.change_process_errno = cases[i].err;
        g_assert_cmpint(iommufd_check_blockers(s.ctx), ==, cases[i].expect);
        g_assert_nonnull(strstr(cprkit_last_error(s.ctx), cases[i].message));
        g_assert_cmpint(cprkit_check_update(s.ctx, test_self_exe()), ==,
                        cases[i].expect);
        g_assert_nonnull(strstr(cprkit_last_error(s.ctx), cases[i].message));
    }
    fake.change_process_errno = 0;

    /* Process-based accounting: CHANGE_PROCESS would fail after exec. */
    fake.rlimit_mode = 1;
    g_assert_cmpint(cprkit_check_update(s.ctx, test_self_exe()), ==, -EOPNOTSUPP);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx),
                            "iommufd 0 uses process-based accounting "
                            "(IOMMU_OPTION_RLIMIT_MODE = 1)"));
    fake.rlimit_mode = 0;
    g_assert_cmpuint(count_calls(IOMMU_IOAS_MAP_FILE) +
                         count_calls(IOMMU_IOAS_UNMAP),
                     ==, 0);

    /* A mapping of a file the new binary would not get back. */
    {
        int unsaved = memfd_create("unsaved", MFD_CLOEXEC);

        g_assert_cmpint(ftruncate(unsaved, PAGE), ==, 0);
        g_assert_cmpint(cprkit_iommufd_map_file(s.ctx, s.iommufd, s.ioas_id,
                                                unsaved, 0, PAGE, 0x900000,
                                                CPRKIT_IOMMUFD_READ),
                        ==, 0);
        g_assert_cmpint(cprkit_check_update(s.ctx, test_self_exe()), ==,
                        -EOPNOTSUPP);
        g_assert_nonnull(strstr(cprkit_last_error(s.ctx),
                                "iommufd mapping iova 0x900000 maps a file"));
        g_assert_nonnull(
            strstr(cprkit_last_error(s.ctx), "is not a preserved fd"));
        g_assert_cmpint(cprkit_fd_save(s.ctx, "unsaved", 0, unsaved), ==, 0);
        g_assert_cmpint(cprkit_check_update(s.ctx, test_self_exe()), ==, 0);
    }
    setup_clear(&s);
}

/* Per-user accounting charges the new binary before it uncharges the old
 * one: RLIMIT_MEMLOCK must hold the mapped bytes twice. Only without
 * CAP_IPC_LOCK (pages mapped with it are not accounted). */
static bool has_cap_ipc_lock(void)
{
    g_autofree char *cap_eff = proc_status_field("CapEff");

    return cap_eff && (g_ascii_strtoull(cap_eff, NULL, 16) >> CAP_IPC_LOCK) & 1;
}

static void test_blocker_memlock(void)
{
    struct rlimit saved, small;
    struct setup s;

    /* As root: in a subprocess without CAP_IPC_LOCK in its effective set. */
    if (has_cap_ipc_lock() && !g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    if (has_cap_ipc_lock()) {
        capng_get_caps_process();
        g_assert_cmpint(capng_update(CAPNG_DROP, CAPNG_EFFECTIVE, CAP_IPC_LOCK),
                        ==, 0);
        g_assert_cmpint(capng_apply(CAPNG_SELECT_CAPS), ==, 0);
        g_assert_false(has_cap_ipc_lock());
    }
    setup_init(&s);
    g_assert_cmpint(getrlimit(RLIMIT_MEMLOCK, &saved), ==, 0);
    small = saved;
    small.rlim_cur = 3 * PAGE; /* less than twice 2 pages */
    g_assert_cmpint(setrlimit(RLIMIT_MEMLOCK, &small), ==, 0);
    g_assert_cmpint(iommufd_check_blockers(s.ctx), ==, -ENOMEM);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "needs twice that"));
    small.rlim_cur = 4 * PAGE;
    g_assert_cmpint(setrlimit(RLIMIT_MEMLOCK, &small), ==, 0);
    g_assert_cmpint(iommufd_check_blockers(s.ctx), ==, 0);
    g_assert_cmpint(setrlimit(RLIMIT_MEMLOCK, &saved), ==, 0);
    setup_clear(&s);
}

/* The new binary cannot take the mappings over: load fails naming the
 * iommufd (the application then rolls back). */
static void test_load_change_process_fails(void)
{
    g_autofree uint8_t *buf = NULL;
    g_autofree char *expect = NULL;
    Cprkit__State *state;
    cprkit_ctx *loaded;
    struct setup s;
    size_t size;

    setup_init(&s);
    encode(&s, &buf, &size);
    fake_reset();
    fake.change_process_errno = ENOMEM;
    loaded = new_side(&s, buf, size, &state);
    g_assert_cmpint(state_load(loaded, state), ==, -ENOMEM);
    expect = g_strdup_printf("iommufd 0 (fd %d): IOMMU_IOAS_CHANGE_PROCESS: "
                             "%s: this binary cannot take over its DMA "
                             "mappings",
                             s.iommufd, g_strerror(ENOMEM));
    g_assert_cmpstr(cprkit_last_error(loaded), ==, expect);
    g_assert_cmpuint(count_calls(IOMMU_IOAS_CHANGE_PROCESS), ==, 1);
    /* Nothing of the failed load stays. */
    g_assert_cmpuint(iommufd_of(loaded)->mappings->len, ==, 0);
    g_assert_cmpuint(cprkit_fd_count(loaded), ==, 0);
    /* Redone (the rollback binary's load), it succeeds. */
    fake.change_process_errno = 0;
    g_assert_cmpint(state_load(loaded, state), ==, 0);
    g_assert_cmpuint(count_calls(IOMMU_IOAS_CHANGE_PROCESS), ==, 2);
    cprkit__state__free_unpacked(state, NULL);
    cprkit_free(loaded);
    setup_clear(&s);
}

/* A blob whose iommufd records do not hold together is refused as a
 * whole, before any ioctl. */
static void test_corrupt_records(void)
{
    g_autofree uint8_t *buf = NULL;
    struct setup s;
    size_t size;

    setup_init(&s);
    encode(&s, &buf, &size);
    for (int which = 0; which < 8; which++) {
        Cprkit__State *state;
        cprkit_ctx *loaded;
        Cprkit__FdRef *saved_ref = NULL;
        char *saved_name = NULL;
        Cprkit__IommufdMapping *m;
        const char *expect = NULL;

        fake_reset();
        loaded = new_side(&s, buf, size, &state);
        m = state->iommufd_mappings[1];
        switch (which) {
        case 0: /* a mapping without its iommufd */
            saved_ref = m->iommufd;
            m->iommufd = NULL;
            expect = "iommufd mapping record without a valid fd reference";
            break;
        case 1: /* iova + length overflows */
            m->iova = UINT64_MAX - PAGE + 1;
            m->length = 2 * PAGE;
            expect = "overflows";
            break;
        case 2: /* an fd the blob does not carry */
            m->iommufd->id = 5;
            expect = "names fd 'iommufd'/5, which the blob does not carry";
            break;
        case 3: /* the iommufd reference names a memfd */
            saved_name = m->iommufd->name;
            m->iommufd->name = (char *)"ram";
            expect = "names fd 'ram'/0, a memfd";
            break;
        case 4: /* overlapping mappings */
            m->iova = 0x100000;
            m->length = 2 * PAGE;
            expect = "overlap";
            break;
        case 5: /* a mapping in an IOAS the blob does not have */
            m->ioas_id = 8;
            expect = "is in IOAS 8, which the blob does not carry";
            break;
        case 6: /* the device attached to an unknown IOAS */
            state->iommufd_devices[0]->ioas_id = 8;
            expect = "attached to IOAS 8";
            break;
        case 7: /* the IOAS twice */
            state->iommufd_ioases[0]->id = 0;
            /* protobuf-c allocated it with malloc(). */
            state->iommufd_ioases =
                realloc(state->iommufd_ioases, 2 * sizeof(void *));
            g_assert_nonnull(state->iommufd_ioases);
            state->iommufd_ioases[1] = state->iommufd_ioases[0];
            state->n_iommufd_ioases = 2;
            expect = "is in the blob twice";
            break;
        }
        g_assert_cmpint(state_load(loaded, state), ==, -EBADMSG);
        g_test_message("case %d: %s", which, cprkit_last_error(loaded));
        g_assert_nonnull(strstr(cprkit_last_error(loaded), expect));
        g_assert_cmpuint(count_calls(IOMMU_IOAS_CHANGE_PROCESS), ==, 0);
        if (saved_ref)
            m->iommufd = saved_ref;
        if (saved_name)
            m->iommufd->name = saved_name;
        if (which == 7)
            state->n_iommufd_ioases = 1;
        cprkit__state__free_unpacked(state, NULL);
        cprkit_free(loaded);
    }
    setup_clear(&s);
}

static void add_named_stat(void *userdata, const char *participant,
                           const char *key, uint64_t value,
                           const char *const *names)
{
    g_string_append_printf(userdata, "%s.%s=%" PRIu64 " ", participant, key,
                           value);
}

/* The participant comes after type1 on the same priority, and has no
 * figures in a program that does not use it. */
static void test_stats_and_order(void)
{
    g_autoptr(GString) before = g_string_new(NULL);
    g_autoptr(GString) after = g_string_new(NULL);
    struct setup s = {0};
    cprkit_ctx *ctx;
    const char *v, *i;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    cprkit_participant_stats(ctx, add_named_stat, before);
    g_assert_null(strstr(before->str, "iommufd"));
    cprkit_free(ctx);

    setup_init(&s);
    cprkit_participant_stats(s.ctx, add_named_stat, after);
    g_test_message("%s", after->str);
    v = strstr(after->str, "vfio.devices=1 ");
    i = strstr(after->str, "iommufd.iommufds=1 iommufd.iommufd_ioases=1 "
                           "iommufd.iommufd_devices=1 "
                           "iommufd.iommufd_mappings=2 "
                           "iommufd.iommufd_mapped_bytes=8192 ");
    g_assert_nonnull(v);
    g_assert_nonnull(i);
    g_assert_true(v < i);
    setup_clear(&s);
}

/* `cpr-exec inspect` (cprkit_blob_visit): the iommufd records and the
 * cdev flag of the device, as "name{" / "name=value" tokens. */
static void v_object(void *ud, const char *name)
{
    g_string_append_printf(ud, "%s{", name ? name : "");
}

static void v_end(void *ud)
{
    g_string_append(ud, "} ");
}

static void v_int(void *ud, const char *name, int64_t value)
{
    g_string_append_printf(ud, "%s=%" PRId64 " ", name ? name : "", value);
}

static void v_str(void *ud, const char *name, const char *value)
{
    g_string_append_printf(ud, "%s=%s ", name ? name : "", value);
}

static void v_bool(void *ud, const char *name, bool value)
{
    g_string_append_printf(ud, "%s=%s ", name ? name : "",
                           value ? "true" : "false");
}

static void test_inspect(void)
{
    static const struct cprkit_blob_visitor visitor = {
        .size = sizeof(visitor),
        .begin_object = v_object,
        .begin_array = v_object,
        .end = v_end,
        .integer = v_int,
        .string = v_str,
        .boolean = v_bool,
    };
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree uint8_t *buf = NULL;
    struct setup s;
    size_t size;

    setup_init(&s);
    encode(&s, &buf, &size);
    g_assert_cmpint(cprkit_blob_visit(s.ctx, buf, size, &visitor, out), ==, 0);
    g_test_message("%s", out->str);
    g_assert_nonnull(strstr(out->str, "bdf=" BDF " cdev=true }"));
    g_assert_nonnull(strstr(out->str, "} iommufd{iommufds{{fd{name=iommufd "));
    g_assert_nonnull(strstr(out->str, "devid=42 "));
    g_assert_nonnull(strstr(out->str, "} mappings{{iommufd{name=iommufd "));
    setup_clear(&s);
}

int main(int argc, char **argv)
{
    int r;

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/iommufd/fresh-hooks", test_fresh_hooks);
    g_test_add_func("/iommufd/roundtrip-reclaim", test_roundtrip_reclaim);
    g_test_add_func("/iommufd/map-validation", test_map_validation);
    g_test_add_func("/iommufd/no-dev-iommu", test_no_dev_iommu);
    g_test_add_func("/iommufd/device-without-cdev", test_device_without_cdev);
    g_test_add_func("/iommufd/blockers", test_blockers);
    g_test_add_func("/iommufd/blocker-memlock", test_blocker_memlock);
    g_test_add_func("/iommufd/load-change-process-fails",
                    test_load_change_process_fails);
    g_test_add_func("/iommufd/corrupt-records", test_corrupt_records);
    g_test_add_func("/iommufd/stats-and-order", test_stats_and_order);
    g_test_add_func("/iommufd/inspect", test_inspect);
    r = g_test_run();
    if (fake.calls)
        g_array_unref(fake.calls);
    return r;
}
