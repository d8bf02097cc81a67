/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Benchmark (not a test): encode and decode time and blob size of the state
 * blob for 1, 1 000 and 32 000 fd entries.
 *
 *   encode = state_build + blob_encode + write into a sealed memfd
 *            (what cprkit_exec does inside the blackout before execve)
 *   decode = read the memfd + frame/CRC checks + protobuf unpack +
 *            state_load (what cprkit_load_incoming does, without the fd
 *            checks, which need real fds)
 *
 * Prints median and min/max over repeated runs. Run with
 *   meson test -C build --benchmark --suite bench -v
 * or directly: build/tests/bench/bench-blob [--runs N]
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cprkit-internal.h"

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static cprkit_ctx *make_ctx(unsigned n_entries)
{
    cprkit_ctx *ctx;

    if (cprkit_new(&ctx) < 0)
        abort();
    for (unsigned i = 0; i < n_entries; i++) {
        /* Names like a VMM's: "vfio-irq-eventfd" with vector ids. Entries
         * are synthetic: encode/decode do not touch the fds. */
        struct fd_identity id = {CPRKIT_FD_EVENTFD, 14, 10000 + i, 0, 0};
        char name[64];

        snprintf(name, sizeof(name), "vfio-irq-eventfd-%u", i / 64);
        if (fdreg_add(ctx, name, (int)(i % 64), (int)(100 + i), &id, true) < 0)
            abort();
    }
    return ctx;
}

struct result {
    uint64_t encode_ns[3]; /* median, min, max */
    uint64_t decode_ns[3];
    size_t blob_size;
};

static void stats(uint64_t *samples, int runs, uint64_t out[3])
{
    qsort(samples, (size_t)runs, sizeof(*samples), compare_u64);
    out[0] = samples[runs / 2];
    out[1] = samples[0];
    out[2] = samples[runs - 1];
}

static void bench(unsigned n_entries, int runs, struct result *res)
{
    cprkit_ctx *ctx = make_ctx(n_entries);
    char *argv[] = {"/usr/bin/vmm", "-name", "bench", NULL};
    struct command_line rescue = {"/usr/bin/vmm", argv};
    uint64_t *enc = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *dec = calloc((size_t)runs, sizeof(uint64_t));

    for (int r = 0; r < runs; r++) {
        Cprkit__State *state, *decoded;
        struct command_line got = {0};
        cprkit_ctx *loaded;
        uint8_t *blob, *read_back;
        size_t size, read_size;
        uint64_t t0, t1, t2;
        int fd;

        t0 = monotonic_now_ns();
        if (state_build(ctx, 1, &state) < 0 ||
            blob_encode(ctx, state, &rescue, &blob, &size) < 0 ||
            blob_write_sealed_memfd(ctx, blob, size, &fd) < 0)
            abort();
        state_build_free(state);
        free(blob);
        t1 = monotonic_now_ns();

        if (cprkit_new(&loaded) < 0 ||
            blob_read_fd(loaded, fd, &read_back, &read_size) < 0 ||
            blob_decode(loaded, read_back, read_size, &got, &decoded) < 0 ||
            state_load(loaded, decoded) < 0)
            abort();
        cprkit__state__free_unpacked(decoded, NULL);
        command_line_clear(&got);
        free(read_back);
        t2 = monotonic_now_ns();

        if (cprkit_fd_count(loaded) != n_entries)
            abort();
        cprkit_free(loaded);
        close(fd);
        enc[r] = t1 - t0;
        dec[r] = t2 - t1;
        res->blob_size = size;
    }
    stats(enc, runs, res->encode_ns);
    stats(dec, runs, res->decode_ns);
    free(enc);
    free(dec);
    cprkit_free(ctx);
}

static void print_us(uint64_t v[3])
{
    printf(" %10.1f %9.1f-%-9.1f", v[0] / 1e3, v[1] / 1e3, v[2] / 1e3);
}

int main(int argc, char **argv)
{
    static const unsigned sizes[] = {1, 1000, 32000};
    int runs = 51;
    struct result results[ELEMENTSOF(sizes)];

    if (argc == 3 && strcmp(argv[1], "--runs") == 0)
        runs = atoi(argv[2]) > 0 ? atoi(argv[2]) : runs;

    printf("cprkit state blob benchmark, %d runs each, times in microseconds "
           "(median, min-max)\n",
           runs);
    printf("%8s %12s %10s %-19s %10s %-19s %9s\n", "entries", "blob bytes",
           "encode", "", "decode", "", "ns/entry");
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        bench(sizes[i], runs, &results[i]);
        printf("%8u %12zu", sizes[i], results[i].blob_size);
        print_us(results[i].encode_ns);
        print_us(results[i].decode_ns);
        printf(" %9.0f\n",
               (double)(results[i].encode_ns[0] + results[i].decode_ns[0]) /
                   sizes[i]);
    }
    printf("ratio 32000/1 entries: encode %.0fx, decode %.0fx\n",
           (double)results[2].encode_ns[0] / (double)results[0].encode_ns[0],
           (double)results[2].decode_ns[0] / (double)results[0].decode_ns[0]);
    return 0;
}
