/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RAM for guests and DMA buffers, in memfds the new binary can map again:
 * anonymous memory cannot cross exec, a memfd can. */
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "vfio-internal.h"

CPRKIT_EXPORT int cprkit_ram_open(cprkit_ctx *ctx, const char *name,
                                  uint64_t size, bool *ret_reclaimed)
{
    g_autofree char *fd_name = NULL;
    _cleanup_close_ int fd = -EBADF;
    GPtrArray *blocks = vfio_of(ctx)->ram_blocks;
    struct ram_block_rec *ram;
    struct stat st;
    int r;

    if (!name_is_valid(name) || strlen(name) > CPRKIT_NAME_MAX - 4)
        return ctx_fail(ctx, -EINVAL, "invalid RAM block name");
    if (size == 0)
        return ctx_fail(ctx, -EINVAL, "RAM block '%s' of size 0", name);
    fd_name = g_strdup_printf("ram:%s", name);

    for (guint i = 0; i < blocks->len; i++) {
        ram = g_ptr_array_index(blocks, i);
        if (strcmp(ram->name, name) != 0)
            continue;
        if (!ram->preserved)
            return ctx_fail(ctx, -EEXIST, "RAM block '%s' is already open",
                            name);
        r = cprkit_fd_find(ctx, fd_name, 0, CPRKIT_FD_MEMFD);
        if (r < 0)
            return r;
        if (fstat(ram->fd, &st) < 0)
            return ctx_fail(ctx, -errno, "RAM block '%s': %m", name);
        if ((uint64_t)st.st_size != size)
            return ctx_fail(ctx, -EINVAL,
                            "RAM block '%s' was preserved with %jd bytes, "
                            "asked for %" PRIu64,
                            name, (intmax_t)st.st_size, size);
        ram->preserved = false;
        ram->reclaimed = true;
        if (ret_reclaimed)
            *ret_reclaimed = true;
        return ram->fd;
    }
    if (ctx->incoming)
        return ctx_fail(ctx, -EBUSY,
                        "RAM block '%s' was not preserved; new resources "
                        "must wait for cprkit_commit()",
                        name);

    fd = memfd_create(fd_name, MFD_CLOEXEC);
    if (fd < 0)
        return ctx_fail(ctx, -errno, "memfd_create for RAM '%s': %m", name);
    if (ftruncate(fd, (off_t)size) < 0)
        return ctx_fail(ctx, -errno, "sizing RAM '%s' to %" PRIu64 " bytes: %m",
                        name, size);
    r = cprkit_fd_save(ctx, fd_name, 0, fd);
    if (r < 0)
        return r;
    ram = g_new0(struct ram_block_rec, 1);
    ram->name = g_strdup(name);
    ram->fd = fd;
    ram->size = size;
    g_ptr_array_add(blocks, ram);
    if (ret_reclaimed)
        *ret_reclaimed = false;
    return TAKE_FD(fd);
}
