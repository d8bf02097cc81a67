/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QEMU's "edu" teaching device (docs/specs/edu.rst in QEMU): BAR0 registers,
 * a 4 KiB internal buffer that DMA moves data to and from, and an interrupt
 * that software raises and acknowledges through registers.
 */
#pragma once

#include <stdint.h>

#include "vfio-util.h"

#define EDU_REG_ID 0x00         /* reads 0x010000ed: major 1, minor 0 */
#define EDU_REG_LIVENESS 0x04   /* reads back the inverse of the write */
#define EDU_REG_IRQ_STATUS 0x24
#define EDU_REG_IRQ_RAISE 0x60  /* ORs the value into IRQ_STATUS, raises */
#define EDU_REG_IRQ_ACK 0x64    /* clears bits; line drops at 0 (INTx) */
#define EDU_REG_DMA_SRC 0x80
#define EDU_REG_DMA_DST 0x88
#define EDU_REG_DMA_COUNT 0x90
#define EDU_REG_DMA_CMD 0x98

#define EDU_ID 0x010000edu
#define EDU_DMA_START 0x1
#define EDU_DMA_TO_RAM 0x2      /* device buffer -> RAM; clear: RAM -> device */
#define EDU_DMA_RAISE_IRQ 0x4   /* IRQ_STATUS |= 0x100 when the DMA is done */
#define EDU_DMA_IRQ_VALUE 0x100

/* The device buffer as seen in DMA addresses. */
#define EDU_BUF_ADDR 0x40000
/*
 * Transfers must stay below 4096 bytes: QEMU 7.2 rejects (and aborts on) one
 * covering the whole buffer. DMA addresses are masked to 28 bits.
 */
#define EDU_DMA_MAX 2048
#define EDU_IOVA_LIMIT (1ull << 28)

/* Start a DMA; -EBUSY if one is still running. */
int edu_dma_start(const struct vfio_bar *bar, uint64_t src, uint64_t dst,
                  uint32_t count, uint32_t cmd);
/* Wait until the running DMA (if any) has completed. */
int edu_dma_wait(const struct vfio_bar *bar, int timeout_ms);
/* Synchronous copies RAM (IOVA) <-> device buffer (offset into it). */
int edu_dma_to_device(const struct vfio_bar *bar, uint64_t iova,
                      uint32_t buf_off, uint32_t count);
int edu_dma_to_ram(const struct vfio_bar *bar, uint32_t buf_off,
                   uint64_t iova, uint32_t count);
