/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The items of tests/data/preload-records-v1.golden: written by
 * tests/golden/make-preload-golden.c, expected by test-preload-util.c.
 * Never change them: the committed file must keep decoding to exactly
 * these.
 */
#pragma once

#include "preload-util.h"

#define GOLDEN_N_ITEMS 8

static const struct preload_item golden_items[GOLDEN_N_ITEMS] = {
    {.kind = PRELOAD_ITEM_CONTAINER, .a = 0},
    {.kind = PRELOAD_ITEM_CONTAINER, .a = 1},
    {.kind = PRELOAD_ITEM_GROUP, .a = 7, .b = 0},
    {.kind = PRELOAD_ITEM_GROUP, .a = 300, .b = 1},
    {.kind = PRELOAD_ITEM_DEVICE, .bdf = "0000:00:03.0"},
    {.kind = PRELOAD_ITEM_DMA, .a = 0, .b = 0x100000, .c = 0x200000},
    {.kind = PRELOAD_ITEM_DMA, .a = 1, .b = 0xfedcba9876543000, .c = 0x1000},
    {.kind = PRELOAD_ITEM_IRQ, .a = 2, .b = 64, .bdf = "0000:00:03.0"},
};
