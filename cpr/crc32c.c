/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC32C (Castagnoli), the checksum of the state blob frame.
 *
 * Uses the SSE4.2 crc32 instruction when the CPU has it (the blob is written
 * inside the blackout, so its cost counts), and a table otherwise. Both give
 * the same result: reflected polynomial 0x82F63B78, initial and final value
 * inverted, as in iSCSI / ext4.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "cprkit-internal.h"

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;

        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ ((crc & 1) ? CRC32C_POLY_REFLECTED : 0);
        crc32c_table[i] = crc;
    }
}

static uint32_t crc32c_software(uint32_t crc, const uint8_t *p, size_t size)
{
    pthread_once(&crc32c_table_once, crc32c_table_init);
    while (size--)
        crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const uint8_t *p, size_t size)
{
    uint64_t crc64 = crc;

    for (; size >= 8; size -= 8, p += 8) {
        uint64_t word;

        memcpy(&word, p, sizeof(word)); /* unaligned-safe */
        crc64 = __builtin_ia32_crc32di(crc64, word);
    }
    crc = (uint32_t)crc64;
    for (; size > 0; size--, p++)
        crc = __builtin_ia32_crc32qi(crc, *p);
    return crc;
}
#endif

/* The table version alone, so tests can check both give the same CRC. */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t size)
{
    return ~crc32c_software(~crc, buf, size);
}

/* crc: the value returned for the previous chunk, or 0 to start. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t size)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_sse42(crc, buf, size);
#endif
    return ~crc32c_software(crc, buf, size);
}
