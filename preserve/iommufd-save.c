/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* iommufd records into the State message (tags 32..47). Records refer to
 * fds by number; the blob refers to them by (name, id). There is nothing
 * to suspend first: a mapping holds its file, not a virtual address. */
#include "iommufd-internal.h"

int iommufd_state_build(cprkit_ctx *ctx, Cprkit__State *state)
{
    struct iommufd_state *s = iommufd_of(ctx);
    int r;

    state->n_iommufds = s->iommufds->len;
    state->iommufds = (Cprkit__Iommufd **)state_message_array(
        state, s->iommufds->len, sizeof(Cprkit__Iommufd));
    for (guint i = 0; i < s->iommufds->len; i++) {
        const struct iommufd_rec *f = g_ptr_array_index(s->iommufds, i);
        Cprkit__Iommufd *m = state->iommufds[i];

        cprkit__iommufd__init(m);
        r = state_fd_ref(ctx, state, f->fd, "iommufd", &m->fd);
        if (r < 0)
            return r;
    }

    state->n_iommufd_ioases = s->ioases->len;
    state->iommufd_ioases = (Cprkit__IommufdIoas **)state_message_array(
        state, s->ioases->len, sizeof(Cprkit__IommufdIoas));
    for (guint i = 0; i < s->ioases->len; i++) {
        const struct iommufd_ioas_rec *a = g_ptr_array_index(s->ioases, i);
        Cprkit__IommufdIoas *m = state->iommufd_ioases[i];

        cprkit__iommufd_ioas__init(m);
        r = state_fd_ref(ctx, state, a->iommufd, "IOAS iommufd", &m->iommufd);
        if (r < 0)
            return r;
        m->has_id = m->has_ioas_id = true;
        m->id = a->id;
        m->ioas_id = a->ioas_id;
    }

    state->n_iommufd_devices = s->devices->len;
    state->iommufd_devices = (Cprkit__IommufdDevice **)state_message_array(
        state, s->devices->len, sizeof(Cprkit__IommufdDevice));
    for (guint i = 0; i < s->devices->len; i++) {
        const struct iommufd_device_rec *d = g_ptr_array_index(s->devices, i);
        Cprkit__IommufdDevice *m = state->iommufd_devices[i];

        cprkit__iommufd_device__init(m);
        r = state_fd_ref(ctx, state, d->fd, "device cdev", &m->device);
        if (r < 0)
            return r;
        r = state_fd_ref(ctx, state, d->iommufd, "device iommufd", &m->iommufd);
        if (r < 0)
            return r;
        m->has_devid = m->has_pt_id = m->has_ioas_id = true;
        m->devid = d->devid;
        m->pt_id = d->pt_id;
        m->ioas_id = d->ioas_id;
    }

    state->n_iommufd_mappings = s->mappings->len;
    state->iommufd_mappings = (Cprkit__IommufdMapping **)state_message_array(
        state, s->mappings->len, sizeof(Cprkit__IommufdMapping));
    for (guint i = 0; i < s->mappings->len; i++) {
        const struct iommufd_mapping_rec *map =
            g_ptr_array_index(s->mappings, i);
        Cprkit__IommufdMapping *m = state->iommufd_mappings[i];

        cprkit__iommufd_mapping__init(m);
        r = state_fd_ref(ctx, state, map->iommufd, "mapping iommufd",
                         &m->iommufd);
        if (r < 0)
            return r;
        m->has_ioas_id = m->has_iova = m->has_length = m->has_prot =
            m->has_file_dev = m->has_file_ino = m->has_file_offset = true;
        m->ioas_id = map->ioas_id;
        m->iova = map->iova;
        m->length = map->length;
        m->prot = map->prot;
        m->file_dev = map->file_dev;
        m->file_ino = map->file_ino;
        m->file_offset = map->file_offset;
    }
    return 0;
}
