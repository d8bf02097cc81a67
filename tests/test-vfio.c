/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VFIO logic with a fake ioctl: the error paths that a real kernel will not
 * produce on demand. The real behaviour is proven in the VM
 * (tests/vfio/hooks-edu.c); this covers ordering and recovery.
 */
#include <linux/vfio.h>
#include <sys/stat.h>

#include "vfio-internal.h"
#include "test-util.h"

/* ---- the fake kernel ---------------------------------------------------- */

struct fake_call {
    unsigned long request;
    uint32_t flags;
    uint64_t iova;
    uint64_t vaddr;
    /* VFIO_DEVICE_SET_IRQS */
    uint32_t index, start, count;
    int32_t fds[8];
};

static struct {
    GArray *calls;          /* struct fake_call */
    int fail_unmap_nth;     /* fail the n-th UNMAP_DMA (1-based), 0: never */
    int unmaps;
    bool no_update_vaddr;
    int set_irqs_errno; /* SET_IRQS fails with it, 0: succeeds */
    bool noresize;      /* GET_IRQ_INFO reports VFIO_IRQ_INFO_NORESIZE */
    bool config_region; /* GET_REGION_INFO answers: config at offset 0 */
} fake;

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
    struct fake_call call = {.request = request};

    if (request == VFIO_IOMMU_UNMAP_DMA) {
        struct vfio_iommu_type1_dma_unmap *u = arg;

        call.flags = u->flags;
        call.iova = u->iova;
        g_array_append_val(fake.calls, call);
        if (++fake.unmaps == fake.fail_unmap_nth) {
            errno = EIO;
            return -1;
        }
        u->size = 0x3000; /* what the fake "suspended" */
        return 0;
    }
    if (request == VFIO_IOMMU_MAP_DMA) {
        struct vfio_iommu_type1_dma_map *m = arg;

        call.flags = m->flags;
        call.iova = m->iova;
        call.vaddr = m->vaddr;
        g_array_append_val(fake.calls, call);
        return 0;
    }
    if (request == VFIO_CHECK_EXTENSION)
        return (uintptr_t)arg == VFIO_UPDATE_VADDR ? !fake.no_update_vaddr : 1;
    if (request == VFIO_DEVICE_SET_IRQS) {
        struct vfio_irq_set *set = arg;

        call.flags = set->flags;
        call.index = set->index;
        call.start = set->start;
        call.count = set->count;
        if (set->flags & VFIO_IRQ_SET_DATA_EVENTFD)
            memcpy(call.fds, set->data,
                   sizeof(int32_t) * MIN(set->count, G_N_ELEMENTS(call.fds)));
        g_array_append_val(fake.calls, call);
        if (fake.set_irqs_errno) {
            errno = fake.set_irqs_errno;
            return -1;
        }
        return 0;
    }
    if (request == VFIO_DEVICE_GET_IRQ_INFO) {
        struct vfio_irq_info *info = arg;

        info->flags = VFIO_IRQ_INFO_EVENTFD |
                      (fake.noresize ? VFIO_IRQ_INFO_NORESIZE : 0);
        info->count = 65;
        return 0;
    }
    if (request == VFIO_DEVICE_GET_REGION_INFO && fake.config_region) {
        struct vfio_region_info *info = arg;

        info->offset = 0;
        info->size = 256;
        return 0;
    }
    errno = ENOTTY;
    return -1;
}

static void fake_reset(void)
{
    if (fake.calls)
        g_array_unref(fake.calls);
    memset(&fake, 0, sizeof(fake));
    fake.calls = g_array_new(false, true, sizeof(struct fake_call));
}

static unsigned count_calls(unsigned long request, uint32_t flags)
{
    unsigned n = 0;

    for (guint i = 0; i < fake.calls->len; i++) {
        struct fake_call *c = &g_array_index(fake.calls, struct fake_call, i);

        if (c->request == request && c->flags == flags)
            n++;
    }
    return n;
}

/* ---- a context with records, as the hooks would have made them --------- */

struct setup {
    cprkit_ctx *ctx;
    int ram;
    uint8_t *mem;
    struct vfio_container_rec *container;
};

#define FAKE_CONTAINER_FD 900
#define RAM_SIZE 0x3000

static void setup_init(struct setup *s, bool unmap_all)
{
    const struct fd_identity container_id = {
        CPRKIT_FD_VFIO_CONTAINER, 5, 77, (10 << 8) | 196, S_IFCHR};
    struct vma_backing b;

    fake_reset();
    g_assert_cmpint(cprkit_new(&s->ctx), ==, 0);
    vfio_of(s->ctx)->ioctl_fn = fake_ioctl;
    g_assert_cmpint(fdreg_add(s->ctx, "vfio-container", 0, FAKE_CONTAINER_FD,
                              &container_id, true), ==, 0);
    s->container = g_new0(struct vfio_container_rec, 1);
    s->container->fd = FAKE_CONTAINER_FD;
    s->container->iommu_type = VFIO_TYPE1v2_IOMMU;
    s->container->has_unmap_all = unmap_all;
    g_ptr_array_add(vfio_of(s->ctx)->containers, s->container);

    s->ram = memfd_create("ram", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(s->ram, RAM_SIZE), ==, 0);
    s->mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->ram, 0);
    g_assert_true(s->mem != MAP_FAILED);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "ram", 0, s->ram), ==, 0);
    g_assert_cmpint(vma_backing_of(s->mem, RAM_SIZE, &b), ==, 0);
    /* Three one-page mappings of the RAM. */
    for (int i = 0; i < 3; i++) {
        struct dma_mapping_rec *m = g_new0(struct dma_mapping_rec, 1);

        m->container_fd = FAKE_CONTAINER_FD;
        m->iova = 0x100000 + 0x1000 * (uint64_t)i;
        m->size = 0x1000;
        m->prot = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
        m->vaddr = s->mem + 0x1000 * i;
        m->backing_dev = b.dev;
        m->backing_ino = b.ino;
        m->backing_offset = 0x1000 * (uint64_t)i;
        m->backing_shared = true;
        g_ptr_array_add(vfio_of(s->ctx)->mappings, m);
    }
}

static void setup_clear(struct setup *s)
{
    munmap(s->mem, RAM_SIZE);
    close(s->ram);
    cprkit_free(s->ctx);
}

static struct dma_mapping_rec *mapping(struct setup *s, guint i)
{
    return g_ptr_array_index(vfio_of(s->ctx)->mappings, i);
}

/* ---- tests -------------------------------------------------------------- */

static void test_vma_backing(void)
{
    int fd = memfd_create("x", MFD_CLOEXEC);
    uint8_t *shared, *priv, *anon;
    struct vma_backing b;
    struct stat st;

    g_assert_cmpint(ftruncate(fd, 0x4000), ==, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    shared = mmap(NULL, 0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_cmpint(vma_backing_of(shared + 0x1000, 0x2000, &b), ==, 0);
    g_assert_true(b.shared && b.file_backed);
    {
        /* A hole: a page nobody maps (single-threaded, nothing maps it
         * between the munmap and the lookups). */
        void *hole = mmap(NULL, 0x1000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        struct vma_table t = {0};
        struct vma_backing hb;

        g_assert_cmpint(munmap(hole, 0x1000), ==, 0);
        g_assert_cmpint(vma_backing_of(hole, 0x1000, &hb), ==, -EFAULT);
        g_assert_cmpint(vma_table_load(&t), ==, 0);
        g_assert_cmpint(vma_table_lookup(&t, hole, 0x1000, &hb), ==, -EFAULT);
        vma_table_clear(&t);
    }
    g_assert_cmpuint(b.ino, ==, st.st_ino);
    g_assert_cmpuint(b.dev, ==, st.st_dev);
    g_assert_cmphex(b.offset, ==, 0x1000);
    /* Past the end of the mapping: a hole. */
    g_assert_cmpint(vma_backing_of(shared + 0x3000, 0x2000, &b), <, 0);
    /* The parsed table (kernels without PROCMAP_QUERY) agrees. */
    {
        struct vma_table t = {0};
        struct vma_backing tb;

        g_assert_cmpint(vma_table_load(&t), ==, 0);
        g_assert_cmpint(vma_table_lookup(&t, shared + 0x1000, 0x2000, &tb), ==, 0);
        g_assert_true(tb.dev == b.dev && tb.ino == b.ino && tb.shared);
        g_assert_cmphex(tb.offset, ==, 0x1000);
        g_assert_cmpint(vma_table_lookup(&t, shared + 0x3000, 0x2000, &tb), <, 0);
        vma_table_clear(&t);
    }

    priv = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    g_assert_cmpint(vma_backing_of(priv, 0x1000, &b), ==, 0);
    g_assert_false(b.shared);
    anon = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_cmpint(vma_backing_of(anon, 0x1000, &b), ==, 0);
    g_assert_false(b.file_backed);
    g_assert_cmpint(vma_backing_of(NULL, 0, &b), ==, -EINVAL);
    munmap(shared, 0x4000);
    munmap(priv, 0x1000);
    munmap(anon, 0x1000);
    close(fd);
}

/* The remap loop's cache on kernels without PROCMAP_QUERY: read once,
 * every answer confirmed, a replaced mapping noticed. */
static void test_vma_cache(void)
{
    int a = memfd_create("a", MFD_CLOEXEC), b = memfd_create("b", MFD_CLOEXEC);
    struct vma_table cache = {.no_query = true};
    struct vma_backing got;
    struct stat sa, sb;
    uint8_t *p;

    g_assert_cmpint(ftruncate(a, 0x2000), ==, 0);
    g_assert_cmpint(ftruncate(b, 0x2000), ==, 0);
    g_assert_cmpint(fstat(a, &sa), ==, 0);
    g_assert_cmpint(fstat(b, &sb), ==, 0);
    p = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
    g_assert_cmpint(vma_backing_cached(&cache, p, 0x2000, &got), ==, 0);
    g_assert_nonnull(cache.vmas);
    g_assert_cmpuint(got.ino, ==, sa.st_ino);
    /* Same answer from the cache. */
    g_assert_cmpint(vma_backing_cached(&cache, p + 0x1000, 0x1000, &got), ==, 0);
    g_assert_cmphex(got.offset, ==, 0x1000);
    /* Another file at the same address: the cached entry is stale and must
     * not be believed. */
    g_assert_true(mmap(p, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                       b, 0) == p);
    g_assert_cmpint(vma_backing_cached(&cache, p, 0x2000, &got), ==, 0);
    g_assert_cmpuint(got.ino, ==, sb.st_ino);
    munmap(p, 0x2000);
    g_assert_cmpint(vma_backing_cached(&cache, p, 0x2000, &got), ==, -EFAULT);
    vma_table_clear(&cache);
    close(a);
    close(b);
}

static void test_suspend_unmap_all(void)
{
    struct setup s;

    setup_init(&s, true);
    g_assert_cmpint(vfio_suspend_vaddrs(s.ctx), ==, 0);
    /* One ioctl for the whole container. */
    g_assert_cmpuint(count_calls(VFIO_IOMMU_UNMAP_DMA,
                                 VFIO_DMA_UNMAP_FLAG_VADDR |
                                     VFIO_DMA_UNMAP_FLAG_ALL),
                     ==, 1);
    g_assert_cmpuint(fake.calls->len, ==, 1);
    for (guint i = 0; i < 3; i++)
        g_assert_true(mapping(&s, i)->suspended);
    /* Exec failed: each range gets its old vaddr back. */
    g_assert_cmpint(vfio_resume_vaddrs(s.ctx), ==, 0);
    g_assert_cmpuint(count_calls(VFIO_IOMMU_MAP_DMA, VFIO_DMA_MAP_FLAG_VADDR),
                     ==, 3);
    for (guint i = 0; i < 3; i++) {
        struct fake_call *c = &g_array_index(fake.calls, struct fake_call, 1 + i);

        g_assert_cmphex(c->vaddr, ==, (uintptr_t)mapping(&s, i)->vaddr);
        g_assert_false(mapping(&s, i)->suspended);
    }
    setup_clear(&s);
}

/* Without UNMAP_ALL, a failure half-way resumes what was suspended. */
static void test_suspend_fails_halfway(void)
{
    struct setup s;

    setup_init(&s, false);
    fake.fail_unmap_nth = 2;
    g_assert_cmpint(vfio_suspend_vaddrs(s.ctx), ==, -EIO);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "iova 0x101000"));
    g_assert_cmpuint(count_calls(VFIO_IOMMU_UNMAP_DMA, VFIO_DMA_UNMAP_FLAG_VADDR),
                     ==, 2);
    /* Only the first one was suspended, and only it is resumed. */
    g_assert_cmpuint(count_calls(VFIO_IOMMU_MAP_DMA, VFIO_DMA_MAP_FLAG_VADDR),
                     ==, 1);
    for (guint i = 0; i < 3; i++)
        g_assert_false(mapping(&s, i)->suspended);
    setup_clear(&s);
}

static void test_suspend_unmap_all_fails(void)
{
    struct setup s;

    setup_init(&s, true);
    fake.fail_unmap_nth = 1;
    g_assert_cmpint(vfio_suspend_vaddrs(s.ctx), ==, -EIO);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "VADDR|ALL"));
    /* The kernel undoes a failed UNMAP_ALL itself: nothing to resume. */
    g_assert_cmpuint(count_calls(VFIO_IOMMU_MAP_DMA, VFIO_DMA_MAP_FLAG_VADDR),
                     ==, 0);
    for (guint i = 0; i < 3; i++)
        g_assert_false(mapping(&s, i)->suspended);
    setup_clear(&s);
}

/* Rollback suspends again only what the new binary remapped: type1 refuses
 * to suspend a range twice. */
static void test_rollback_suspends_only_remapped(void)
{
    struct setup s;

    setup_init(&s, true);
    mapping(&s, 0)->suspended = false; /* remapped */
    mapping(&s, 1)->suspended = true;  /* still waiting */
    mapping(&s, 1)->preserved = true;
    mapping(&s, 1)->vaddr = NULL;
    mapping(&s, 2)->suspended = false; /* remapped */
    g_assert_cmpint(vfio_suspend_for_rollback(s.ctx), ==, 0);
    g_assert_cmpuint(count_calls(VFIO_IOMMU_UNMAP_DMA, VFIO_DMA_UNMAP_FLAG_VADDR),
                     ==, 2);
    g_assert_cmphex(g_array_index(fake.calls, struct fake_call, 0).iova, ==,
                    0x100000);
    g_assert_cmphex(g_array_index(fake.calls, struct fake_call, 1).iova, ==,
                    0x102000);
    for (guint i = 0; i < 3; i++)
        g_assert_true(mapping(&s, i)->suspended);

    /* The rollback exec failed: remapped ranges get their vaddr back, the
     * never-remapped one stays for this binary to remap. */
    vfio_undo_rollback_suspend(s.ctx);
    g_assert_cmpuint(count_calls(VFIO_IOMMU_MAP_DMA, VFIO_DMA_MAP_FLAG_VADDR),
                     ==, 2);
    g_assert_false(mapping(&s, 0)->suspended);
    g_assert_true(mapping(&s, 1)->suspended);
    g_assert_false(mapping(&s, 2)->suspended);
    setup_clear(&s);
}

static void test_blockers(void)
{
    struct setup s;
    uint8_t *anon;

    setup_init(&s, true);
    g_assert_cmpint(vfio_check_blockers(s.ctx), ==, 0);

    fake.no_update_vaddr = true;
    g_assert_cmpint(vfio_check_blockers(s.ctx), ==, -EOPNOTSUPP);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "VFIO_UPDATE_VADDR"));
    fake.no_update_vaddr = false;

    /* The RAM fd is no longer preserved: its mappings block. */
    g_assert_cmpint(cprkit_fd_remove(s.ctx, "ram", 0), ==, 0);
    g_assert_cmpint(vfio_check_blockers(s.ctx), ==, -EOPNOTSUPP);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "not a preserved fd"));
    g_assert_cmpint(cprkit_fd_save(s.ctx, "ram", 0, s.ram), ==, 0);

    /* The memory under a mapping was replaced. */
    anon = mmap(mapping(&s, 1)->vaddr, 0x1000, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    g_assert_true(anon == mapping(&s, 1)->vaddr);
    g_assert_cmpint(vfio_check_blockers(s.ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "0x101000"));
    setup_clear(&s);
}

static void count_blocker(void *userdata, const char *owner,
                          const char *reason)
{
    GPtrArray *seen = userdata;

    g_ptr_array_add(seen, g_strdup_printf("%s: %s", owner, reason));
}

/* DMA to memory the new binary cannot map again blocks updates from the
 * moment it is mapped, visibly (status lists it), until it is unmapped;
 * memfd-backed mappings register nothing. */
static void test_private_memory_blocker(void)
{
    g_autoptr(GPtrArray) seen = g_ptr_array_new_with_free_func(g_free);
    struct setup s;
    uint8_t *anon;

    setup_init(&s, true);
    g_assert_cmpint(cprkit_vfio_dma_map(s.ctx, FAKE_CONTAINER_FD, 0x200000,
                                        0x1000, s.mem, VFIO_DMA_MAP_FLAG_READ),
                    ==, 0);
    cprkit_blocker_foreach(s.ctx, count_blocker, seen);
    g_assert_cmpuint(seen->len, ==, 0);

    anon = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(anon != MAP_FAILED);
    g_assert_cmpint(cprkit_vfio_dma_map(s.ctx, FAKE_CONTAINER_FD, 0x300000,
                                        0x2000, anon, VFIO_DMA_MAP_FLAG_WRITE),
                    ==, 0);
    cprkit_blocker_foreach(s.ctx, count_blocker, seen);
    g_assert_cmpuint(seen->len, ==, 1);
    g_assert_cmpstr(seen->pdata[0], ==,
                    "vfio: DMA mapping iova 0x300000 size 0x2000 is anonymous "
                    "or private memory, which the new binary cannot map "
                    "again; allocate it with cprkit_ram_open() or map a "
                    "memfd MAP_SHARED");
    /* The whole check refuses, naming it, before looking at anything else. */
    g_assert_cmpint(cprkit_check_update(s.ctx, "/bin/true"), ==, -EOPNOTSUPP);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx),
                            "the update is blocked: vfio: DMA mapping iova "
                            "0x300000"));

    g_assert_cmpint(cprkit_vfio_dma_unmap(s.ctx, FAKE_CONTAINER_FD, 0x300000,
                                          0x2000), ==, 0);
    g_ptr_array_set_size(seen, 0);
    cprkit_blocker_foreach(s.ctx, count_blocker, seen);
    g_assert_cmpuint(seen->len, ==, 0);
    munmap(anon, 0x2000);
    setup_clear(&s);
}

/* VFIO records survive the blob: build, encode, decode, load. */
static void test_records_roundtrip(void)
{
    const struct fd_identity group_id = {CPRKIT_FD_VFIO_GROUP, 5, 78, 0xf000,
                                         S_IFCHR};
    const struct fd_identity device_id = {CPRKIT_FD_VFIO_DEVICE, 14, 9, 0, 0};
    const struct fd_identity ev_id = {CPRKIT_FD_EVENTFD, 14, 10, 0, 0};
    struct setup s;
    struct vfio_group_rec *g = g_new0(struct vfio_group_rec, 1);
    struct vfio_device_rec *d = g_new0(struct vfio_device_rec, 1);
    struct irq_index_rec *irq = g_new0(struct irq_index_rec, 1);
    struct command_line rescue = {0};
    Cprkit__State *state;
    g_autofree uint8_t *buf = NULL;
    cprkit_ctx *loaded;
    struct vfio_state *lv;
    size_t size;

    setup_init(&s, true);
    g_assert_cmpint(fdreg_add(s.ctx, "vfio-group", 7, 901, &group_id, true), ==, 0);
    g_assert_cmpint(fdreg_add(s.ctx, "vfio-device:0000:00:03.0", 0, 902,
                              &device_id, true), ==, 0);
    g_assert_cmpint(fdreg_add(s.ctx, "vfio-irq:0000:00:03.0:msi", 0, 903,
                              &ev_id, true), ==, 0);
    g->fd = 901;
    g->number = 7;
    g->container_fd = FAKE_CONTAINER_FD;
    g_ptr_array_add(vfio_of(s.ctx)->groups, g);
    d->fd = 902;
    d->bdf = g_strdup("0000:00:03.0");
    d->group_number = 7;
    g_ptr_array_add(vfio_of(s.ctx)->devices, d);
    irq->device_fd = 902;
    irq->index = VFIO_PCI_MSI_IRQ_INDEX;
    irq->count = 1;
    irq->eventfds = g_new(int, 1);
    irq->eventfds[0] = 903;
    irq->unmask_fd = -1;
    g_ptr_array_add(vfio_of(s.ctx)->irqs, irq);

    /* The blob is written after the suspend. */
    g_assert_cmpint(vfio_suspend_vaddrs(s.ctx), ==, 0);
    g_assert_cmpint(state_build(s.ctx, 1, &state), ==, 0);
    g_assert_cmpint(blob_encode(s.ctx, state, NULL, &buf, &size), ==, 0);
    state_build_free(state);

    g_assert_cmpint(cprkit_new(&loaded), ==, 0);
    g_assert_cmpint(blob_decode(loaded, buf, size, &rescue, &state), ==, 0);
    g_assert_cmpint(state_load(loaded, state), ==, 0);
    cprkit__state__free_unpacked(state, NULL);
    lv = vfio_of(loaded);
    g_assert_cmpuint(lv->containers->len, ==, 1);
    g_assert_cmpuint(lv->groups->len, ==, 1);
    g_assert_cmpuint(lv->devices->len, ==, 1);
    g_assert_cmpuint(lv->mappings->len, ==, 3);
    g_assert_cmpuint(lv->irqs->len, ==, 1);
    {
        struct dma_mapping_rec *m = g_ptr_array_index(lv->mappings, 2);
        struct vfio_group_rec *lg = g_ptr_array_index(lv->groups, 0);
        struct vfio_device_rec *ld = g_ptr_array_index(lv->devices, 0);
        struct irq_index_rec *li = g_ptr_array_index(lv->irqs, 0);

        g_assert_true(m->preserved && m->suspended);
        g_assert_cmphex(m->iova, ==, 0x102000);
        g_assert_cmphex(m->backing_offset, ==, 0x2000);
        g_assert_null(m->vaddr);
        g_assert_cmpint(lg->container_fd, ==, FAKE_CONTAINER_FD);
        g_assert_cmpstr(ld->bdf, ==, "0000:00:03.0");
        g_assert_cmpint(li->eventfds[0], ==, 903);
        g_assert_cmpuint(li->index, ==, VFIO_PCI_MSI_IRQ_INDEX);
    }
    /* Unremapped mappings block the commit. */
    loaded->incoming = true;
    g_assert_cmpint(cprkit_commit(loaded), ==, -EBUSY);
    /* One message with everything that was left. */
    g_assert_nonnull(strstr(cprkit_last_error(loaded),
                            "preserved fds were not claimed: 'vfio-container'/0"));
    g_assert_nonnull(strstr(cprkit_last_error(loaded),
                            "; 3 preserved DMA mappings were not remapped"));
    loaded->incoming = false;
    command_line_clear(&rescue);
    cprkit_free(loaded);

    /* A mapping whose iova + size wraps: refused by the loader. */
    g_assert_cmpint(cprkit_new(&loaded), ==, 0);
    g_assert_cmpint(blob_decode(loaded, buf, size, &rescue, &state), ==, 0);
    state->dma_mappings[0]->iova = UINT64_MAX - 0xfff;
    state->dma_mappings[0]->size = 0x2000;
    g_assert_cmpint(state_load(loaded, state), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(loaded),
                            "runs past the end of the address space"));
    cprkit__state__free_unpacked(state, NULL);
    command_line_clear(&rescue);
    cprkit_free(loaded);
    setup_clear(&s);
}

/* ---- interrupts: ERR/REQ, sparse and growing MSI-X, INTx mask ------------ */

/* No PCI device of this address exists, so the identity check has no
 * sysfs to compare with and looks no further. */
#define FAKE_BDF "0000:ff:1f.7"
#define PCI_CMD_MASTER 0x04

/* A device record whose fd is a memfd holding 256 bytes of config space
 * (the fake GET_REGION_INFO puts the config region at offset 0). */
static int device_setup(struct setup *s, uint16_t command)
{
    const struct fd_identity device_id = {CPRKIT_FD_VFIO_DEVICE, 14, 9, 0, 0};
    struct vfio_device_rec *d = g_new0(struct vfio_device_rec, 1);
    uint8_t config[256] = {0};
    int fd = memfd_create("config", MFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    memcpy(config + 4, &command, sizeof(command));
    g_assert_cmpint(pwrite(fd, config, sizeof(config), 0), ==, sizeof(config));
    g_assert_cmpint(
        fdreg_add(s->ctx, "vfio-device:" FAKE_BDF, 0, fd, &device_id, true), ==,
        0);
    d->fd = fd;
    d->bdf = g_strdup(FAKE_BDF);
    d->group_number = 7;
    d->bus_master = -1;
    g_ptr_array_add(vfio_of(s->ctx)->devices, d);
    return fd;
}

static void device_set_command(int fd, uint16_t command)
{
    g_assert_cmpint(pwrite(fd, &command, sizeof(command), 4), ==,
                    sizeof(command));
}

/* The state of s->ctx through a blob into a new incoming context, with
 * the fake kernel: what the new binary sees. Returns the load's result. */
static int state_through_blob(struct setup *s, cprkit_ctx **ret)
{
    struct command_line rescue = {0};
    g_autofree uint8_t *buf = NULL;
    Cprkit__State *state;
    cprkit_ctx *loaded;
    size_t size;
    int r;

    /* The blob is written after the suspend. */
    for (guint i = 0; i < vfio_of(s->ctx)->mappings->len; i++)
        mapping(s, i)->suspended = true;
    g_assert_cmpint(state_build(s->ctx, 1, &state), ==, 0);
    g_assert_cmpint(blob_encode(s->ctx, state, NULL, &buf, &size), ==, 0);
    state_build_free(state);
    g_assert_cmpint(cprkit_new(&loaded), ==, 0);
    vfio_of(loaded)->ioctl_fn = fake_ioctl;
    g_assert_cmpint(blob_decode(loaded, buf, size, &rescue, &state), ==, 0);
    r = state_load(loaded, state);
    if (r < 0)
        g_test_message("load: %s", cprkit_last_error(loaded));
    cprkit__state__free_unpacked(state, NULL);
    command_line_clear(&rescue);
    loaded->incoming = r == 0;
    *ret = loaded;
    return r;
}

static void loaded_free(cprkit_ctx *loaded)
{
    loaded->incoming = false;
    cprkit_free(loaded);
}

static const struct fake_call *last_call(void)
{
    g_assert_cmpuint(fake.calls->len, >, 0);
    return &g_array_index(fake.calls, struct fake_call, fake.calls->len - 1);
}

static bool fd_claimed(cprkit_ctx *ctx, const char *name, int id)
{
    const struct fd_entry *e = fdreg_lookup(ctx, name, id);

    return e && e->claimed;
}

/* The error and request notifiers: one vector each, installed with
 * SET_IRQS on their index, handed back without it. */
static void test_irq_err_req(void)
{
    struct setup s;
    cprkit_ctx *loaded;
    int dev, err = -1, req = -1, fd = -1, two[2];

    setup_init(&s, true);
    dev = device_setup(&s, 0);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_ERR_IRQ_INDEX, 2, two), ==,
        -EINVAL);
    g_assert_cmpstr(cprkit_last_error(s.ctx), ==, "err has exactly one vector");
    g_assert_cmpint(cprkit_vfio_irq_enable(s.ctx, dev, 5, 1, &fd), ==, -EINVAL);

    /* Conventional PCI: the kernel counts no ERR vector. */
    fake.set_irqs_errno = EINVAL;
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_ERR_IRQ_INDEX, 1, &err), ==,
        -EINVAL);
    g_assert_nonnull(strstr(cprkit_last_error(s.ctx), "PCI Express"));
    g_assert_null(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":err", 0));
    fake.set_irqs_errno = 0;

    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_ERR_IRQ_INDEX, 1, &err), ==,
        0);
    g_assert_cmpuint(last_call()->index, ==, VFIO_PCI_ERR_IRQ_INDEX);
    g_assert_cmpuint(last_call()->flags, ==,
                     VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
    g_assert_cmpuint(last_call()->count, ==, 1);
    g_assert_cmpint(last_call()->fds[0], ==, err);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_REQ_IRQ_INDEX, 1, &req), ==,
        0);
    g_assert_cmpuint(last_call()->index, ==, VFIO_PCI_REQ_IRQ_INDEX);
    g_assert_cmpint(last_call()->fds[0], ==, req);
    g_assert_nonnull(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":err", 0));
    g_assert_nonnull(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":req", 0));

    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(loaded, dev, VFIO_PCI_REQ_IRQ_INDEX, 1, &fd), ==,
        0);
    g_assert_cmpint(fd, ==, req);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(loaded, dev, VFIO_PCI_ERR_IRQ_INDEX, 1, &fd), ==,
        0);
    g_assert_cmpint(fd, ==, err);
    g_assert_true(fd_claimed(loaded, "vfio-irq:" FAKE_BDF ":err", 0));
    g_assert_true(fd_claimed(loaded, "vfio-irq:" FAKE_BDF ":req", 0));
    /* Handed back, not installed again. */
    g_assert_cmpuint(fake.calls->len, ==, 0);
    loaded_free(loaded);

    g_assert_cmpint(cprkit_vfio_irq_disable(s.ctx, dev, VFIO_PCI_ERR_IRQ_INDEX),
                    ==, 0);
    g_assert_cmpuint(last_call()->flags, ==,
                     VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER);
    g_assert_cmpuint(last_call()->count, ==, 0);
    g_assert_null(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":err", 0));
    close(dev);
    setup_clear(&s);
}

/* MSI-X enabled with gaps: one SET_IRQS with -1 for the unused vectors,
 * preserved as such, reclaimed vector by vector. */
static void test_irq_sparse(void)
{
    const bool use[6] = {true, false, false, false, false, true};
    const bool other[6] = {true, true, false, false, false, true};
    const bool one = true;
    struct setup s;
    cprkit_ctx *loaded;
    struct irq_index_rec *irq;
    int dev, fds[6], got[6], all[6];

    setup_init(&s, true);
    dev = device_setup(&s, 0);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL, fds),
                    ==, -EINVAL);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 6, use, fds),
                    ==, 0);
    g_assert_cmpuint(fake.calls->len, ==, 1);
    g_assert_cmpuint(last_call()->start, ==, 0);
    g_assert_cmpuint(last_call()->count, ==, 6);
    g_assert_cmpint(last_call()->fds[0], ==, fds[0]);
    g_assert_cmpint(fds[0], >=, 0);
    g_assert_cmpint(fds[5], >=, 0);
    for (int v = 1; v < 5; v++) {
        g_assert_cmpint(fds[v], ==, -1);
        g_assert_cmpint(last_call()->fds[v], ==, -1);
        g_assert_null(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":msix", v));
    }
    g_assert_cmpint(last_call()->fds[5], ==, fds[5]);

    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_array_set_size(fake.calls, 0);
    irq = g_ptr_array_index(vfio_of(loaded)->irqs, 0);
    g_assert_cmpuint(irq->count, ==, 6);
    g_assert_cmpint(irq->eventfds[0], ==, fds[0]);
    g_assert_cmpint(irq->eventfds[3], ==, -1);
    g_assert_cmpint(irq->eventfds[5], ==, fds[5]);
    /* All six "in use": not what was preserved. */
    g_assert_cmpint(
        cprkit_vfio_irq_enable(loaded, dev, VFIO_PCI_MSIX_IRQ_INDEX, 6, all),
        ==, -EBUSY);
    g_assert_nonnull(
        strstr(cprkit_last_error(loaded), "cprkit_vfio_irq_set_vectors"));
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        loaded, dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 6, other, got),
                    ==, -EBUSY);
    g_assert_nonnull(strstr(cprkit_last_error(loaded),
                            "vector 1 was preserved without an eventfd"));
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        loaded, dev, VFIO_PCI_MSIX_IRQ_INDEX, 6, 1, &one, got),
                    ==, -EBUSY);
    /* Vector by vector, as a driver sets up its queues. */
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        loaded, dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &one, got),
                    ==, 0);
    g_assert_cmpint(got[0], ==, fds[0]);
    g_assert_true(irq->preserved);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(loaded, dev,
                                                VFIO_PCI_MSIX_IRQ_INDEX, 1, 5,
                                                use + 1, got),
                    ==, 0);
    g_assert_cmpint(got[0], ==, -1);
    g_assert_cmpint(got[4], ==, fds[5]);
    g_assert_false(irq->preserved);
    g_assert_true(irq->reclaimed);
    g_assert_true(fd_claimed(loaded, "vfio-irq:" FAKE_BDF ":msix", 5));
    g_assert_cmpuint(fake.calls->len, ==, 0);
    loaded_free(loaded);
    close(dev);
    setup_clear(&s);
}

/* Vectors added to an enabled MSI-X index: in place where the kernel can
 * grow it, by disabling and enabling it again where it cannot (NORESIZE);
 * vectors that do not change are never touched. */
static void test_irq_grow(void)
{
    const bool yes = true, no = false;
    struct setup s;
    cprkit_ctx *loaded;
    struct irq_index_rec *irq;
    int dev, first[2], added, late, got;

    setup_init(&s, true);
    dev = device_setup(&s, 0);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 2, first),
        ==, 0);
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(s.ctx, dev,
                                                VFIO_PCI_MSIX_IRQ_INDEX, 4, 1,
                                                &yes, &added),
                    ==, 0);
    g_assert_cmpuint(
        count_calls(VFIO_DEVICE_SET_IRQS,
                    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER),
        ==, 1);
    g_assert_cmpuint(last_call()->start, ==, 4);
    g_assert_cmpuint(last_call()->count, ==, 1);
    g_assert_cmpint(last_call()->fds[0], ==, added);
    irq = g_ptr_array_index(vfio_of(s.ctx)->irqs, 0);
    g_assert_cmpuint(irq->count, ==, 5);

    /* Asking again for what is there changes nothing. */
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 4, 1, &yes, &got),
                    ==, 0);
    g_assert_cmpint(got, ==, added);
    g_assert_cmpuint(fake.calls->len, ==, 0);

    /* A kernel that cannot grow it: the one failure leaves all as it was. */
    fake.noresize = true;
    fake.set_irqs_errno = ENOSPC;
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 7, 1, &yes, &late),
                    ==, -ENOSPC);
    g_assert_cmpuint(irq->count, ==, 5);
    g_assert_null(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":msix", 7));
    fake.set_irqs_errno = 0;
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 7, 1, &yes, &late),
                    ==, 0);
    g_assert_cmpuint(fake.calls->len, ==, 2);
    g_assert_cmpuint(g_array_index(fake.calls, struct fake_call, 0).count, ==,
                     0);
    g_assert_cmpuint(last_call()->start, ==, 0);
    g_assert_cmpuint(last_call()->count, ==, 8);
    g_assert_cmpint(last_call()->fds[0], ==, first[0]);
    g_assert_cmpint(last_call()->fds[1], ==, first[1]);
    g_assert_cmpint(last_call()->fds[2], ==, -1);
    g_assert_cmpint(last_call()->fds[4], ==, added);
    g_assert_cmpint(last_call()->fds[7], ==, late);

    /* Releasing vector 1: SET_IRQS of that vector only, fd -1. */
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(cprkit_vfio_irq_set_vectors(
                        s.ctx, dev, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, &no, &got),
                    ==, 0);
    g_assert_cmpint(got, ==, -1);
    g_assert_cmpuint(fake.calls->len, ==, 1);
    g_assert_cmpuint(last_call()->start, ==, 1);
    g_assert_cmpint(last_call()->fds[0], ==, -1);
    g_assert_null(fdreg_lookup(s.ctx, "vfio-irq:" FAKE_BDF ":msix", 1));

    /* The new binary gets all of them. */
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_array_set_size(fake.calls, 0);
    {
        const bool use[8] = {true, false, false, false,
                             true, false, false, true};
        int fds[8];

        g_assert_cmpint(cprkit_vfio_irq_set_vectors(loaded, dev,
                                                    VFIO_PCI_MSIX_IRQ_INDEX, 0,
                                                    8, use, fds),
                        ==, 0);
        g_assert_cmpint(fds[0], ==, first[0]);
        g_assert_cmpint(fds[4], ==, added);
        g_assert_cmpint(fds[7], ==, late);
    }
    g_assert_cmpuint(fake.calls->len, ==, 0);
    loaded_free(loaded);
    close(dev);
    setup_clear(&s);
}

static uint64_t eventfd_counter(int fd)
{
    uint64_t n = 0;

    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

/* INTx masked by the application stays masked across the update; a line
 * it did not mask is unmasked once (it may have been auto-masked). */
static void test_intx_mask(void)
{
    struct setup s;
    cprkit_ctx *loaded;
    int dev, trig, unmask, fd;

    setup_init(&s, true);
    dev = device_setup(&s, 0);
    g_assert_cmpint(cprkit_vfio_intx_mask(s.ctx, dev, true), ==, -ENOENT);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(s.ctx, dev, VFIO_PCI_INTX_IRQ_INDEX, 1, &trig),
        ==, 0);
    unmask = cprkit_vfio_intx_unmask_fd(s.ctx, dev);
    g_assert_cmpint(unmask, >=, 0);
    g_assert_cmpint(cprkit_vfio_intx_is_masked(s.ctx, dev), ==, 0);

    /* Not masked: reclaim unmasks once, through the unmask eventfd. */
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(loaded, dev, VFIO_PCI_INTX_IRQ_INDEX, 1, &fd),
        ==, 0);
    g_assert_cmpuint(eventfd_counter(unmask), ==, 1);
    g_assert_cmpuint(fake.calls->len, ==, 0);
    loaded_free(loaded);

    g_assert_cmpint(cprkit_vfio_intx_mask(s.ctx, dev, true), ==, 0);
    g_assert_cmpuint(last_call()->flags, ==,
                     VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK);
    g_assert_cmpuint(last_call()->index, ==, VFIO_PCI_INTX_IRQ_INDEX);
    g_assert_cmpuint(last_call()->count, ==, 1);
    g_assert_cmpint(cprkit_vfio_intx_is_masked(s.ctx, dev), ==, 1);

    /* Masked: reclaim masks again, never unmasks. */
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_array_set_size(fake.calls, 0);
    g_assert_cmpint(
        cprkit_vfio_irq_enable(loaded, dev, VFIO_PCI_INTX_IRQ_INDEX, 1, &fd),
        ==, 0);
    g_assert_cmpint(fd, ==, trig);
    g_assert_cmpuint(eventfd_counter(unmask), ==, 0);
    g_assert_cmpuint(fake.calls->len, ==, 1);
    g_assert_cmpuint(last_call()->flags, ==,
                     VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK);
    g_assert_cmpint(cprkit_vfio_intx_is_masked(loaded, dev), ==, 1);
    /* Before commit the recorded state may not change. */
    g_assert_cmpint(cprkit_vfio_intx_mask(loaded, dev, false), ==, -EBUSY);
    g_assert_nonnull(strstr(cprkit_last_error(loaded), "preserved masked"));
    g_assert_cmpint(cprkit_vfio_intx_mask(loaded, dev, true), ==, 0);
    g_assert_cmpuint(fake.calls->len, ==, 1);
    loaded->incoming = false; /* committed */
    g_assert_cmpint(cprkit_vfio_intx_mask(loaded, dev, false), ==, 0);
    g_assert_cmpuint(last_call()->flags, ==,
                     VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK);
    g_assert_cmpint(cprkit_vfio_intx_is_masked(loaded, dev), ==, 0);
    loaded_free(loaded);
    close(dev);
    setup_clear(&s);
}

/* A device saved with bus mastering on and found with it off (reset,
 * disabled) is refused at load; a blob that does not say is not checked. */
static void test_bus_master(void)
{
    struct setup s;
    cprkit_ctx *loaded;
    int dev;

    setup_init(&s, true);
    fake.config_region = true;
    dev = device_setup(&s, 0x0006);
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_assert_cmpint(((struct vfio_device_rec *)g_ptr_array_index(
                         vfio_of(loaded)->devices, 0))
                        ->bus_master,
                    ==, 1);
    loaded_free(loaded);

    /* Saved with it on, then turned off. The check reads the device at
     * load, so the config changes between save and load. */
    {
        struct command_line rescue = {0};
        g_autofree uint8_t *buf = NULL;
        Cprkit__State *state;
        size_t size;

        for (guint i = 0; i < 3; i++)
            mapping(&s, i)->suspended = true;
        g_assert_cmpint(state_build(s.ctx, 1, &state), ==, 0);
        g_assert_cmpint(blob_encode(s.ctx, state, NULL, &buf, &size), ==, 0);
        state_build_free(state);
        device_set_command(dev, 0x0002);
        g_assert_cmpint(cprkit_new(&loaded), ==, 0);
        vfio_of(loaded)->ioctl_fn = fake_ioctl;
        g_assert_cmpint(blob_decode(loaded, buf, size, &rescue, &state), ==, 0);
        g_assert_cmpint(state_load(loaded, state), ==, -ESTALE);
        g_assert_nonnull(strstr(cprkit_last_error(loaded),
                                "preserved device " FAKE_BDF " had bus "
                                "mastering enabled"));
        cprkit__state__free_unpacked(state, NULL);
        command_line_clear(&rescue);
        cprkit_free(loaded);
    }

    /* Saved with it off: nothing to check. */
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    loaded_free(loaded);
    /* Unreadable at save (no config region): not recorded, not checked. */
    device_set_command(dev, 0x0006);
    fake.config_region = false;
    g_assert_cmpint(state_through_blob(&s, &loaded), ==, 0);
    g_assert_cmpint(((struct vfio_device_rec *)g_ptr_array_index(
                         vfio_of(loaded)->devices, 0))
                        ->bus_master,
                    ==, -1);
    loaded_free(loaded);
    close(dev);
    setup_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vfio/vma-backing", test_vma_backing);
    g_test_add_func("/vfio/vma-cache", test_vma_cache);
    g_test_add_func("/vfio/suspend-unmap-all", test_suspend_unmap_all);
    g_test_add_func("/vfio/suspend-fails-halfway", test_suspend_fails_halfway);
    g_test_add_func("/vfio/suspend-unmap-all-fails", test_suspend_unmap_all_fails);
    g_test_add_func("/vfio/rollback-suspends-only-remapped",
                    test_rollback_suspends_only_remapped);
    g_test_add_func("/vfio/blockers", test_blockers);
    g_test_add_func("/vfio/private-memory-blocker", test_private_memory_blocker);
    g_test_add_func("/vfio/records-roundtrip", test_records_roundtrip);
    g_test_add_func("/vfio/irq-err-req", test_irq_err_req);
    g_test_add_func("/vfio/irq-sparse", test_irq_sparse);
    g_test_add_func("/vfio/irq-grow", test_irq_grow);
    g_test_add_func("/vfio/intx-mask", test_intx_mask);
    g_test_add_func("/vfio/bus-master", test_bus_master);
    int r = g_test_run();
    if (fake.calls)
        g_array_unref(fake.calls);
    return r;
}
