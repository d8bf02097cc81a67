/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data patterns unique per run (nonce), per generation and per use (tag),
 * so data left by an earlier run or update can never pass for new data.
 */
#include <stddef.h>
#include <stdint.h>

#include "workload.h"

static uint32_t pattern_seed(uint32_t nonce, uint64_t gen, uint32_t tag)
{
    uint32_t x = nonce ^ (uint32_t)(gen * 0x9e3779b9u) ^ (tag * 0x85ebca6bu);

    return x ? x : 1;
}

/* xorshift32: cheap and every byte depends on the seed. */
static uint8_t next_byte(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return (uint8_t)*x;
}

void pattern_fill(void *buf, size_t len, uint32_t nonce, uint64_t gen,
                  uint32_t tag)
{
    uint32_t x = pattern_seed(nonce, gen, tag);
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        p[i] = next_byte(&x);
}

long pattern_check(const void *buf, size_t len, uint32_t nonce, uint64_t gen,
                   uint32_t tag)
{
    uint32_t x = pattern_seed(nonce, gen, tag);
    const volatile uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        if (p[i] != next_byte(&x))
            return (long)i;
    return -1;
}

uint32_t edu_factorial(uint32_t n)
{
    uint32_t f = 1;

    while (n > 1)
        f *= n--;
    return f;
}
