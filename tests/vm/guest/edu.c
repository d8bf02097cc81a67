/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "edu.h"

#include <errno.h>
#include <time.h>

int edu_dma_start(const struct vfio_bar *bar, uint64_t src, uint64_t dst,
                  uint32_t count, uint32_t cmd)
{
    if (count == 0 || count > EDU_DMA_MAX)
        return -EINVAL;
    /* edu ignores register writes while a DMA runs. */
    if (bar_read32(bar, EDU_REG_DMA_CMD) & EDU_DMA_START)
        return -EBUSY;
    /* 32-bit writes suffice: addresses are below 256 MiB. */
    bar_write32(bar, EDU_REG_DMA_SRC, (uint32_t)src);
    bar_write32(bar, EDU_REG_DMA_DST, (uint32_t)dst);
    bar_write32(bar, EDU_REG_DMA_COUNT, count);
    bar_write32(bar, EDU_REG_DMA_CMD, cmd | EDU_DMA_START);
    return 0;
}

int edu_dma_wait(const struct vfio_bar *bar, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    const struct timespec tick = { .tv_nsec = 1000000 };

    /* edu runs the transfer from a 100 ms timer, then clears START. */
    while (bar_read32(bar, EDU_REG_DMA_CMD) & EDU_DMA_START) {
        if (now_ms() > deadline)
            return -ETIMEDOUT;
        nanosleep(&tick, NULL);
    }
    return 0;
}

int edu_dma_to_device(const struct vfio_bar *bar, uint64_t iova,
                      uint32_t buf_off, uint32_t count)
{
    int r;

    r = edu_dma_start(bar, iova, EDU_BUF_ADDR + buf_off, count, 0);
    if (r < 0)
        return r;
    return edu_dma_wait(bar, EVENT_TIMEOUT_MS);
}

int edu_dma_to_ram(const struct vfio_bar *bar, uint32_t buf_off,
                   uint64_t iova, uint32_t count)
{
    int r;

    r = edu_dma_start(bar, EDU_BUF_ADDR + buf_off, iova, count,
                      EDU_DMA_TO_RAM);
    if (r < 0)
        return r;
    return edu_dma_wait(bar, EVENT_TIMEOUT_MS);
}
