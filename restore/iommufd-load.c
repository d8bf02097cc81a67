/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufd records from the blob, and the one step an iommufd update needs
 * in the new binary: IOMMU_IOAS_CHANGE_PROCESS once per iommufd, which
 * moves the pinned-page accounting of all its mappings to this process
 * (there is no per-mapping vaddr remap). Every record comes back
 * "preserved"; the hooks reclaim them and commit refuses while any is
 * left (iommufd_list_unreclaimed).
 */
#include <inttypes.h>
#include <string.h>

#include "iommufd-internal.h"

/* An iommufd reference must name one of the blob's iommufds. */
static int resolve_iommufd(cprkit_ctx *ctx, const Cprkit__FdRef *ref,
                           const char *what, int *ret_fd)
{
    int r = state_fd_resolve(ctx, ref, CPRKIT_FD_CHAR_DEVICE, what, ret_fd);

    if (r < 0)
        return r;
    if (!iommufd_by_fd(ctx, *ret_fd))
        return ctx_fail(ctx, -EBADMSG,
                        "%s record names fd '%s'/%d, which is not one of the "
                        "blob's iommufds",
                        what, ref->name, ref->id);
    return 0;
}

static int load_iommufds(cprkit_ctx *ctx, const Cprkit__State *state)
{
    for (size_t i = 0; i < state->n_iommufds; i++) {
        g_autofree struct iommufd_rec *f = g_new0(struct iommufd_rec, 1);
        int r;

        r = state_fd_resolve(ctx, state->iommufds[i]->fd, CPRKIT_FD_CHAR_DEVICE,
                             "iommufd", &f->fd);
        if (r < 0)
            return r;
        if (strcmp(state->iommufds[i]->fd->name, IOMMUFD_FD_NAME) != 0)
            return ctx_fail(ctx, -EBADMSG,
                            "iommufd record names fd '%s'/%d, not an '%s'",
                            state->iommufds[i]->fd->name,
                            state->iommufds[i]->fd->id, IOMMUFD_FD_NAME);
        if (iommufd_by_fd(ctx, f->fd))
            return ctx_fail(ctx, -EBADMSG, "iommufd %d is in the blob twice",
                            state->iommufds[i]->fd->id);
        f->id = state->iommufds[i]->fd->id;
        f->preserved = true;
        g_ptr_array_add(iommufd_of(ctx)->iommufds, TAKE_PTR(f));
    }
    return 0;
}

static int load_ioases(cprkit_ctx *ctx, const Cprkit__State *state)
{
    for (size_t i = 0; i < state->n_iommufd_ioases; i++) {
        const Cprkit__IommufdIoas *m = state->iommufd_ioases[i];
        g_autofree struct iommufd_ioas_rec *a =
            g_new0(struct iommufd_ioas_rec, 1);
        GPtrArray *ioases = iommufd_of(ctx)->ioases;
        int r;

        r = resolve_iommufd(ctx, m->iommufd, "IOAS", &a->iommufd);
        if (r < 0)
            return r;
        if (!m->has_id || !m->has_ioas_id)
            return ctx_fail(ctx, -EBADMSG, "IOAS record without its ids");
        for (guint j = 0; j < ioases->len; j++) {
            const struct iommufd_ioas_rec *b = g_ptr_array_index(ioases, j);

            if (b->iommufd == a->iommufd &&
                (b->id == m->id || b->ioas_id == m->ioas_id))
                return ctx_fail(ctx, -EBADMSG,
                                "IOAS %d (IOAS id %" PRIu32 ") is in the blob "
                                "twice",
                                m->id, m->ioas_id);
        }
        a->id = m->id;
        a->ioas_id = m->ioas_id;
        a->preserved = true;
        g_ptr_array_add(ioases, TAKE_PTR(a));
    }
    return 0;
}

static int load_devices(cprkit_ctx *ctx, const Cprkit__State *state)
{
    for (size_t i = 0; i < state->n_iommufd_devices; i++) {
        const Cprkit__IommufdDevice *m = state->iommufd_devices[i];
        g_autofree struct iommufd_device_rec *d =
            g_new0(struct iommufd_device_rec, 1);
        GPtrArray *devices = iommufd_of(ctx)->devices;
        int r;

        r = state_fd_resolve(ctx, m->device, CPRKIT_FD_VFIO_DEVICE,
                             "iommufd device", &d->fd);
        if (r < 0)
            return r;
        r = resolve_iommufd(ctx, m->iommufd, "iommufd device", &d->iommufd);
        if (r < 0)
            return r;
        if (!m->has_devid || !m->has_ioas_id)
            return ctx_fail(ctx, -EBADMSG,
                            "iommufd device '%s' record without its ids",
                            m->device->name);
        if (!iommufd_ioas_find(ctx, d->iommufd, m->ioas_id))
            return ctx_fail(ctx, -EBADMSG,
                            "iommufd device '%s' is attached to IOAS %" PRIu32
                            ", which the blob does not carry",
                            m->device->name, m->ioas_id);
        for (guint j = 0; j < devices->len; j++)
            if (((struct iommufd_device_rec *)g_ptr_array_index(devices, j))
                    ->fd == d->fd)
                return ctx_fail(ctx, -EBADMSG,
                                "iommufd device '%s' is in the blob twice",
                                m->device->name);
        d->devid = m->devid;
        d->pt_id = m->pt_id;
        d->ioas_id = m->ioas_id;
        d->preserved = true;
        g_ptr_array_add(devices, TAKE_PTR(d));
    }
    return 0;
}

static int load_mapping(cprkit_ctx *ctx, const Cprkit__IommufdMapping *m)
{
    const uint32_t prot_bits =
        IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    g_autofree struct iommufd_mapping_rec *map =
        g_new0(struct iommufd_mapping_rec, 1);
    GPtrArray *mappings = iommufd_of(ctx)->mappings;
    uint64_t last, file_last;
    int r;

    r = resolve_iommufd(ctx, m->iommufd, "iommufd mapping", &map->iommufd);
    if (r < 0)
        return r;
    if (!m->has_ioas_id || !m->has_iova || !m->length || !m->has_file_dev ||
        !m->has_file_ino)
        return ctx_fail(ctx, -EBADMSG,
                        "iommufd mapping without IOAS, iova, length or file");
    if (!iommufd_ioas_find(ctx, map->iommufd, m->ioas_id))
        return ctx_fail(ctx, -EBADMSG,
                        "iommufd mapping iova 0x%" PRIx64 " is in IOAS %" PRIu32
                        ", which the blob does not carry",
                        m->iova, m->ioas_id);
    if (__builtin_add_overflow(m->iova, m->length - 1, &last) ||
        __builtin_add_overflow(m->file_offset, m->length - 1, &file_last))
        return ctx_fail(ctx, -EBADMSG,
                        "iommufd mapping iova 0x%" PRIx64 " length 0x%" PRIx64
                        " offset 0x%" PRIx64 " overflows",
                        m->iova, m->length, m->file_offset);
    if (m->prot & ~prot_bits || !(m->prot & prot_bits))
        return ctx_fail(ctx, -EBADMSG,
                        "iommufd mapping iova 0x%" PRIx64 " with prot 0x%x",
                        m->iova, m->prot);
    /* Mappings of one IOAS cannot overlap: the kernel would not have made
     * them. */
    for (guint j = 0; j < mappings->len; j++) {
        const struct iommufd_mapping_rec *o = g_ptr_array_index(mappings, j);

        if (o->iommufd == map->iommufd && o->ioas_id == m->ioas_id &&
            o->iova <= last && m->iova <= o->iova + (o->length - 1))
            return ctx_fail(ctx, -EBADMSG,
                            "iommufd mappings iova 0x%" PRIx64 " and 0x%" PRIx64
                            " of IOAS %" PRIu32 " overlap",
                            o->iova, m->iova, m->ioas_id);
    }
    map->ioas_id = m->ioas_id;
    map->iova = m->iova;
    map->length = m->length;
    map->prot = m->prot;
    map->file_dev = m->file_dev;
    map->file_ino = m->file_ino;
    map->file_offset = m->file_offset;
    map->preserved = true;
    g_ptr_array_add(mappings, TAKE_PTR(map));
    return 0;
}

/*
 * The accounting of every mapping moves to this process: one
 * IOMMU_IOAS_CHANGE_PROCESS per iommufd covers all its IOAS. Done last in
 * this participant's load, once every record checked out, and only on an
 * iommufd that is still the object that was saved (the core checks the
 * whole registry after the participants' load; this ioctl must not reach
 * another file first).
 *
 * A later participant's load may still fail, and the application then
 * rolls back: that is consistent, because CHANGE_PROCESS is idempotent
 * and harmless to redo — the rollback binary's load calls it again and
 * the accounting moves to it (with the same mm it charges nothing).
 * Likewise after a keeper restart: the dead process's mm is only
 * mmdrop'ed, never needed alive, so adopt has nothing more to do
 * (per-user accounting; process-based accounting is refused by the
 * blockers).
 */
static int change_process_all(cprkit_ctx *ctx)
{
    GPtrArray *iommufds = iommufd_of(ctx)->iommufds;

    for (guint i = 0; i < iommufds->len; i++) {
        const struct iommufd_rec *f = g_ptr_array_index(iommufds, i);
        const struct fd_entry *e = fdreg_lookup_fd(ctx, f->fd);
        struct fd_identity now;
        int r;

        if (!e || fd_identify(f->fd, &now) < 0 ||
            !fd_identity_equal(&now, &e->identity))
            return ctx_fail(ctx, -ESTALE,
                            "iommufd %d (fd %d) is missing or another file "
                            "after exec",
                            f->id, f->fd);
        r = iommufd_change_process(ctx, f->fd);
        if (r < 0)
            return ctx_fail(ctx, r,
                            "iommufd %d (fd %d): IOMMU_IOAS_CHANGE_PROCESS: "
                            "%s: this binary cannot take over its DMA "
                            "mappings",
                            f->id, f->fd, strerror(-r));
    }
    if (iommufds->len)
        ctx_log(ctx, LOG_INFO,
                "took over the DMA accounting of %u iommufd%s (%u mapping%s)",
                iommufds->len, iommufds->len == 1 ? "" : "s",
                iommufd_of(ctx)->mappings->len,
                iommufd_of(ctx)->mappings->len == 1 ? "" : "s");
    return 0;
}

int iommufd_state_load(cprkit_ctx *ctx, const Cprkit__State *state)
{
    int r;

    r = load_iommufds(ctx, state);
    if (r < 0)
        return r;
    r = load_ioases(ctx, state);
    if (r < 0)
        return r;
    r = load_devices(ctx, state);
    if (r < 0)
        return r;
    for (size_t i = 0; i < state->n_iommufd_mappings; i++) {
        r = load_mapping(ctx, state->iommufd_mappings[i]);
        if (r < 0)
            return r;
    }
    return change_process_all(ctx);
}

/* Commit's clause for what the new binary did not reclaim: IOAS, devices
 * and mappings (the iommufds and device fds are also in the registry's
 * claim check, but a device fd claimed with cprkit_fd_find() is not a
 * device reclaimed with its binding checked). */
unsigned iommufd_list_unreclaimed(cprkit_ctx *ctx, GString *out)
{
    struct iommufd_state *s = iommufd_of(ctx);
    g_autoptr(GString) list = g_string_new(NULL);
    unsigned n = 0;

    for (guint i = 0; i < s->ioases->len; i++) {
        const struct iommufd_ioas_rec *a = g_ptr_array_index(s->ioases, i);

        if (!a->preserved)
            continue;
        g_string_append_printf(list, "%sIOAS %d", n ? ", " : "", a->id);
        n++;
    }
    for (guint i = 0; i < s->devices->len; i++) {
        const struct iommufd_device_rec *d = g_ptr_array_index(s->devices, i);
        const struct vfio_device_rec *v = vfio_device_by_fd(ctx, d->fd);

        if (!d->preserved)
            continue;
        g_string_append_printf(list, "%sdevice %s", n ? ", " : "",
                               v ? v->bdf : "?");
        n++;
    }
    for (guint i = 0; i < s->mappings->len; i++) {
        const struct iommufd_mapping_rec *m = g_ptr_array_index(s->mappings, i);

        if (!m->preserved)
            continue;
        g_string_append_printf(list, "%smapping iova 0x%" PRIx64 "+0x%" PRIx64,
                               n ? ", " : "", m->iova, m->length);
        n++;
    }
    if (n)
        g_string_append_printf(out,
                               "%u preserved iommufd resource%s not reclaimed "
                               "with the cprkit_iommufd_*() hooks: %s",
                               n, n == 1 ? " was" : "s were", list->str);
    return n;
}
