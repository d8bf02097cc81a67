/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fd registry's index, (name, id) -> entry: open addressing with
 * linear probing in a power-of-two table at most half full, on the hash
 * each entry keeps (fd_entry_hash(), keyed: crafted names do not pile up
 * in one run).
 *
 * Why not GHashTable, which it replaces: a blob's n entries go in at once,
 * and this table is sized for them first (GHashTable cannot be: it grew
 * and moved every entry a dozen times for 32 000 of them), and one probe
 * both finds a duplicate and places the new entry (GHashTable: a lookup,
 * then an insert).
 */
#include <string.h>

#include "cprkit-internal.h"

#define MIN_SLOTS 16u

static bool entry_is(const struct fd_entry *e, guint hash, const char *name,
                     int id)
{
    return e->hash == hash && e->id == id && strcmp(e->name, name) == 0;
}

/* Rebuilds the table with n_slots slots (a power of two). Zeroed by
 * writing, not by calloc(): calloc() leaves a large table to the kernel's
 * zero pages, and each of its pages then faults twice, when a probe first
 * reads it and when an entry is written there (256 faults instead of 128
 * at 32 000 entries, a third more time in a fresh process). Written with
 * explicit_bzero(), which the compiler does not turn back into calloc()
 * as it does malloc() + memset(). */
static int resize(struct fd_index *x, size_t n_slots)
{
    struct fd_entry **entries = malloc(n_slots * sizeof(*entries));
    size_t mask = n_slots - 1;

    if (!entries)
        return -ENOMEM;
    explicit_bzero(entries, n_slots * sizeof(*entries));
    for (size_t i = 0; x->entries && i <= x->mask; i++) {
        struct fd_entry *e = x->entries[i];
        size_t j;

        if (!e)
            continue;
        for (j = e->hash & mask; entries[j]; j = (j + 1) & mask)
            ;
        entries[j] = e;
    }
    free(x->entries);
    x->entries = entries;
    x->mask = mask;
    return 0;
}

int fd_index_reserve(struct fd_index *x, size_t n)
{
    size_t n_slots = MIN_SLOTS;

    if (n > SIZE_MAX / 4 / sizeof(*x->entries))
        return -ENOMEM;
    while (n_slots < 2 * n)
        n_slots *= 2;
    if (x->entries && n_slots <= x->mask + 1)
        return 0;
    return resize(x, n_slots);
}

struct fd_entry *fd_index_lookup(const struct fd_index *x, guint hash,
                                 const char *name, int id)
{
    if (!x->entries)
        return NULL;
    for (size_t i = hash & x->mask; x->entries[i]; i = (i + 1) & x->mask)
        if (entry_is(x->entries[i], hash, name, id))
            return x->entries[i];
    return NULL;
}

int fd_index_add(struct fd_index *x, struct fd_entry *e)
{
    size_t i;
    int r;

    r = fd_index_reserve(x, x->count + 1);
    if (r < 0)
        return r;
    for (i = e->hash & x->mask; x->entries[i]; i = (i + 1) & x->mask)
        if (entry_is(x->entries[i], e->hash, e->name, e->id))
            return -EEXIST;
    x->entries[i] = e;
    x->count++;
    return 0;
}

/* Backward shift (Knuth, TAOCP 6.4, algorithm R): the entries after the
 * hole in its run that may fill it do, so no probe stops at the hole short
 * of its entry; no tombstones. */
void fd_index_remove(struct fd_index *x, const struct fd_entry *e)
{
    size_t i, j, home;

    if (!x->entries)
        return;
    for (i = e->hash & x->mask; x->entries[i] != e; i = (i + 1) & x->mask)
        if (!x->entries[i])
            return;
    x->count--;
    for (j = i;;) {
        x->entries[i] = NULL;
        /* The next entry of the run whose home slot is not in (i, j]
         * moves to i; one whose home is there must stay. */
        do {
            j = (j + 1) & x->mask;
            if (!x->entries[j])
                return;
            home = x->entries[j]->hash & x->mask;
        } while (i <= j ? (i < home && home <= j) : (i < home || home <= j));
        x->entries[i] = x->entries[j];
        i = j;
    }
}

void fd_index_clear(struct fd_index *x)
{
    free(x->entries);
    *x = (struct fd_index){0};
}
