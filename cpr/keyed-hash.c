/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A keyed hash for the indexes that names from a blob go into (the fd
 * registry, the sections). g_str_hash() is djb2: anyone can write a blob
 * of tens of thousands of names with one hash value ("Ez" and "FY" hash
 * alike, and so does every string made of them), and loading it turns
 * quadratic. SipHash-1-3 with a key drawn once per process makes such
 * collisions unpredictable. Not for anything that must be stable across
 * processes: the key differs in each.
 */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cprkit-internal.h"

static uint64_t key[2];

static void key_init(void)
{
    uint64_t k[2] = {0};
    size_t got = 0;

    /* getrandom() on a kernel whose pool is not ready yet, or blocked by
     * a seccomp filter: fall back to what varies per process; the point is
     * that a blob written in advance cannot know it. */
    while (got < sizeof(k)) {
        ssize_t n = getrandom((uint8_t *)k + got, sizeof(k) - got,
                              GRND_NONBLOCK);

        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof(k)) {
        k[0] ^= (uint64_t)(uintptr_t)&k ^ monotonic_now_ns();
        k[1] ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)key_init;
    }
    key[0] = k[0];
    key[1] = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = ROTL(v[1], 13);
    v[1] ^= v[0];
    v[0] = ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = ROTL(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = ROTL(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = ROTL(v[1], 17);
    v[1] ^= v[2];
    v[2] = ROTL(v[2], 32);
}

/* SipHash-1-3 of data, with extra (e.g. an fd id) as the first word. */
guint keyed_hash(const void *data, size_t len, uint64_t extra)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const uint8_t *p = data;
    uint64_t v[4], m, b = (uint64_t)(len + 8) << 56;

    pthread_once(&once, key_init);
    v[0] = key[0] ^ 0x736f6d6570736575ull;
    v[1] = key[1] ^ 0x646f72616e646f6dull;
    v[2] = key[0] ^ 0x6c7967656e657261ull;
    v[3] = key[1] ^ 0x7465646279746573ull;

    v[3] ^= extra;
    sip_round(v);
    v[0] ^= extra;
    for (; len >= 8; len -= 8, p += 8) {
        memcpy(&m, p, 8);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    for (size_t i = 0; i < len; i++)
        b |= (uint64_t)p[i] << (8 * i);
    v[3] ^= b;
    sip_round(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sip_round(v);
    sip_round(v);
    sip_round(v);
    return (guint)((v[0] ^ v[1] ^ v[2] ^ v[3]) ^
                   ((v[0] ^ v[1] ^ v[2] ^ v[3]) >> 32));
}

guint keyed_str_hash(gconstpointer s)
{
    return keyed_hash(s, strlen(s), 0);
}
