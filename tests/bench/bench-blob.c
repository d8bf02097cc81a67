/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Benchmark (not a test): encode and decode time and blob size of the state
 * blob for 1, 1 000 and 32 000 fd entries.
 *
 *   encode = state_build_without_fds + blob_write_memfd_with_registry
 *            (the blob written into a sealed memfd as it is encoded: what
 *            cprkit_exec does inside the blackout before execve)
 *   decode = map the memfd + frame/CRC checks + blob_unpack_for_load +
 *            state_load_decoded (what cprkit_load_incoming does, without
 *            the fd checks, which need real fds)
 *
 * Prints median and min/max over repeated runs, and the encode + decode
 * total of the largest size; then both again in fresh processes, as an
 * update runs them: the old binary encodes once, execs the new one, which
 * decodes; every page they touch is new. With --phases, also each step of
 * the largest size on its own (median, min-max, minor page faults): where
 * the time goes. Run with
 *   meson test -C build --benchmark --suite bench -v
 * or directly: build/tests/bench/bench-blob [--runs N] [--phases]
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

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

/* The steps of one run. Timed one by one only with --phases: the marks
 * (and getrusage for the page faults) cost time of their own. */
#define MAX_MARKS 16
struct marks {
    bool detailed;
    int n;
    const char *what[MAX_MARKS]; /* the step that ends at this mark */
    uint64_t ns[MAX_MARKS];
    long faults[MAX_MARKS];
};

static void mark(struct marks *m, const char *what, bool always)
{
    struct rusage ru;

    if (!always && !m->detailed)
        return;
    if (m->n == MAX_MARKS)
        abort();
    m->what[m->n] = what;
    m->ns[m->n] = monotonic_now_ns();
    if (m->detailed) {
        getrusage(RUSAGE_SELF, &ru);
        m->faults[m->n] = ru.ru_minflt;
    }
    m->n++;
}

struct result {
    uint64_t encode_ns[3]; /* median, min, max */
    uint64_t decode_ns[3];
    uint64_t total_ns[3];
    size_t blob_size;
    /* With --phases: per step, its name and median/min/max, and the
     * median of its minor page faults. */
    int n_steps;
    const char *step[MAX_MARKS];
    uint64_t step_ns[MAX_MARKS][3];
    uint64_t step_faults[MAX_MARKS];
};

static void stats(uint64_t *samples, int runs, uint64_t out[3])
{
    qsort(samples, (size_t)runs, sizeof(*samples), compare_u64);
    out[0] = samples[runs / 2];
    out[1] = samples[0];
    out[2] = samples[runs - 1];
}

/* What cprkit_exec() does before execve: the blob of ctx in a sealed
 * memfd, returned. */
static int encode_steps(cprkit_ctx *ctx, struct marks *m, size_t *ret_size)
{
    char *argv[] = {"/usr/bin/vmm", "-name", "bench", NULL};
    struct command_line rescue = {"/usr/bin/vmm", argv};
    Cprkit__State *state;
    int fd;

    if (state_build_without_fds(ctx, 1, &state) < 0)
        abort();
    mark(m, "state_build_without_fds", false);
    if (blob_write_memfd_with_registry(ctx, state, &rescue, &fd, ret_size) <
        0)
        abort();
    mark(m, "blob_write_memfd_with_registry", false);
    state_build_free(state);
    return fd;
}

/* What cprkit_load_incoming() does with the blob in fd, but the fd
 * checks. */
static void decode_steps(int fd, unsigned n_entries, struct marks *m)
{
    struct decoded_state decoded;
    struct command_line got = {0};
    struct blob_frame frame;
    struct blob_buffer buf;
    cprkit_ctx *loaded;

    if (cprkit_new(&loaded) < 0)
        abort();
    mark(m, "cprkit_new", false);
    if (blob_map_fd(loaded, fd, &buf) < 0)
        abort();
    mark(m, "blob_map_fd", false);
    if (blob_parse_frame(loaded, buf.data, buf.size, &frame) < 0 ||
        blob_parse_rescue(loaded, &frame, &got) < 0)
        abort();
    mark(m, "frame + rescue block", false);
    if (blob_unpack_for_load(loaded, &frame, buf.data, &decoded) < 0)
        abort();
    mark(m, "blob_unpack_for_load (CRC, read)", false);
    if (state_load_decoded(loaded, &decoded) < 0)
        abort();
    mark(m, "state_load_decoded (registry)", false);
    decoded_state_clear(&decoded);
    command_line_clear(&got);
    blob_buffer_release(&buf);
    mark(m, "decode", true);

    if (cprkit_fd_count(loaded) != n_entries)
        abort();
    cprkit_free(loaded);
}

/* One encode and decode; marks "encode" and "decode" end the two halves. */
static void run_once(cprkit_ctx *ctx, unsigned n_entries, struct marks *m,
                     size_t *ret_size)
{
    int fd;

    mark(m, "start", true);
    fd = encode_steps(ctx, m, ret_size);
    mark(m, "encode", true);
    decode_steps(fd, n_entries, m);
    close(fd);
}

static void bench(unsigned n_entries, int runs, bool phases,
                  struct result *res)
{
    cprkit_ctx *ctx = make_ctx(n_entries);
    uint64_t *enc = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *dec = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *tot = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *step = calloc((size_t)runs * MAX_MARKS, sizeof(uint64_t));
    uint64_t *faults = calloc((size_t)runs * MAX_MARKS, sizeof(uint64_t));
    struct marks m = {.detailed = phases};

    for (int r = 0; r < runs; r++) {
        int encode_end = -1;

        m.n = 0;
        run_once(ctx, n_entries, &m, &res->blob_size);
        for (int i = 1; i < m.n; i++) {
            step[(size_t)(i - 1) * (size_t)runs + (size_t)r] =
                m.ns[i] - m.ns[i - 1];
            faults[(size_t)(i - 1) * (size_t)runs + (size_t)r] =
                (uint64_t)(m.faults[i] - m.faults[i - 1]);
            if (strcmp(m.what[i], "encode") == 0)
                encode_end = i;
        }
        enc[r] = m.ns[encode_end] - m.ns[0];
        dec[r] = m.ns[m.n - 1] - m.ns[encode_end];
        tot[r] = enc[r] + dec[r];
    }
    stats(enc, runs, res->encode_ns);
    stats(dec, runs, res->decode_ns);
    stats(tot, runs, res->total_ns);
    res->n_steps = phases ? m.n - 1 : 0;
    for (int i = 0; i < res->n_steps; i++) {
        uint64_t f[3];

        res->step[i] = m.what[i + 1];
        stats(step + (size_t)i * (size_t)runs, runs, res->step_ns[i]);
        stats(faults + (size_t)i * (size_t)runs, runs, f);
        res->step_faults[i] = f[0];
    }
    free(enc);
    free(dec);
    free(tot);
    free(step);
    free(faults);
    cprkit_free(ctx);
}

/* In fresh processes, as an update runs: the old binary encodes once
 * (with the registry it made before), then execs the new one, which
 * decodes. Neither has memory of earlier runs to reuse: every page they
 * touch is new, and costs a fault. Each prints the nanoseconds and the
 * minor page faults of its half on a line of its own. */
static void print_half(const struct rusage *before, uint64_t start_ns)
{
    struct rusage after;
    uint64_t ns = monotonic_now_ns() - start_ns;

    getrusage(RUSAGE_SELF, &after);
    printf("%" PRIu64 " %ld\n", ns, after.ru_minflt - before->ru_minflt);
    fflush(stdout);
}

/* --decode-in-child FD N: the new binary. */
static int decode_in_child(int fd, unsigned n_entries)
{
    struct marks m = {0};
    struct rusage before;
    uint64_t start;

    getrusage(RUSAGE_SELF, &before);
    start = monotonic_now_ns();
    decode_steps(fd, n_entries, &m);
    print_half(&before, start);
    return 0;
}

/* --update-in-child N: the old binary, which execs the new one. */
static int update_in_child(unsigned n_entries)
{
    cprkit_ctx *ctx = make_ctx(n_entries);
    struct marks m = {0};
    char fd_arg[16], n_arg[16];
    struct rusage before;
    uint64_t start;
    size_t size;
    int fd;

    getrusage(RUSAGE_SELF, &before);
    start = monotonic_now_ns();
    fd = encode_steps(ctx, &m, &size);
    print_half(&before, start);
    if (fd_set_cloexec(fd, false) < 0)
        return 1;
    snprintf(fd_arg, sizeof(fd_arg), "%d", fd);
    snprintf(n_arg, sizeof(n_arg), "%u", n_entries);
    execl("/proc/self/exe", "bench-blob", "--decode-in-child", fd_arg, n_arg,
          (char *)NULL);
    return 1;
}

struct fresh_result {
    uint64_t encode_ns[3], decode_ns[3], total_ns[3];
    uint64_t encode_faults, decode_faults; /* medians */
};

static void bench_fresh_processes(unsigned n_entries, int runs,
                                  struct fresh_result *res)
{
    uint64_t *v = calloc((size_t)runs * 5, sizeof(uint64_t));
    uint64_t *enc = v, *dec = v + runs, *tot = v + 2 * runs;
    uint64_t *enc_f = v + 3 * runs, *dec_f = v + 4 * runs, f[3];

    for (int r = 0; r < runs; r++) {
        char n_arg[16], out[128] = "";
        size_t got = 0;
        int p[2], status;
        long faults[2];
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
            abort();
        pid = fork();
        if (pid < 0)
            abort();
        if (pid == 0) {
            snprintf(n_arg, sizeof(n_arg), "%u", n_entries);
            if (dup2(p[1], STDOUT_FILENO) < 0)
                _exit(126);
            execl("/proc/self/exe", "bench-blob", "--update-in-child", n_arg,
                  (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        for (ssize_t n; (n = read(p[0], out + got, sizeof(out) - 1 - got)) > 0;)
            got += (size_t)n;
        close(p[0]);
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0 ||
            sscanf(out, "%" SCNu64 " %ld %" SCNu64 " %ld", &enc[r], &faults[0],
                   &dec[r], &faults[1]) != 4)
            abort();
        tot[r] = enc[r] + dec[r];
        enc_f[r] = (uint64_t)faults[0];
        dec_f[r] = (uint64_t)faults[1];
    }
    stats(enc, runs, res->encode_ns);
    stats(dec, runs, res->decode_ns);
    stats(tot, runs, res->total_ns);
    stats(enc_f, runs, f);
    res->encode_faults = f[0];
    stats(dec_f, runs, f);
    res->decode_faults = f[0];
    free(v);
}

static void print_us(const uint64_t v[3])
{
    printf(" %10.1f %9.1f-%-9.1f", v[0] / 1e3, v[1] / 1e3, v[2] / 1e3);
}

/* The same at the end of a line, without the padding. */
static void print_us_line(const uint64_t v[3])
{
    printf(" %10.1f %9.1f-%.1f\n", v[0] / 1e3, v[1] / 1e3, v[2] / 1e3);
}

int main(int argc, char **argv)
{
    static const unsigned sizes[] = {1, 1000, 32000};
    const size_t last = ELEMENTSOF(sizes) - 1;
    struct result results[ELEMENTSOF(sizes)] = {0};
    struct fresh_result fresh;
    bool phases = false;
    int runs = 51;

    if (argc == 4 && strcmp(argv[1], "--decode-in-child") == 0)
        return decode_in_child(atoi(argv[2]), (unsigned)atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "--update-in-child") == 0)
        return update_in_child((unsigned)atoi(argv[2]));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]) > 0 ? atoi(argv[i]) : runs;
        } else if (strcmp(argv[i], "--phases") == 0) {
            phases = true;
        } else {
            fprintf(stderr, "usage: %s [--runs N] [--phases]\n", argv[0]);
            return 2;
        }
    }

    printf("cprkit state blob benchmark, %d runs each, times in microseconds "
           "(median, min-max)\n",
           runs);
    printf("%8s %12s %10s %-19s %10s %-19s %9s\n", "entries", "blob bytes",
           "encode", "", "decode", "", "ns/entry");
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        bench(sizes[i], runs, phases && i == last, &results[i]);
        printf("%8u %12zu", sizes[i], results[i].blob_size);
        print_us(results[i].encode_ns);
        print_us(results[i].decode_ns);
        printf(" %9.0f\n",
               (double)(results[i].encode_ns[0] + results[i].decode_ns[0]) /
                   sizes[i]);
    }
    printf("ratio %u/1 entries: encode %.0fx, decode %.0fx\n", sizes[last],
           (double)results[last].encode_ns[0] / (double)results[0].encode_ns[0],
           (double)results[last].decode_ns[0] / (double)results[0].decode_ns[0]);
    printf("%u entries, encode + decode (per run):", sizes[last]);
    print_us_line(results[last].total_ns);

    /* The loop above reuses the memory of its previous runs; an update
     * does not. */
    printf("\nin fresh processes, as an update runs them (the old binary's "
           "encode, then the\nnew binary's decode after exec, exec not "
           "counted), microseconds (median, min-max),\nminor page faults:\n");
    printf("%8s %10s %-19s %6s %10s %-19s %6s\n", "entries", "encode", "",
           "faults", "decode", "", "faults");
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        bench_fresh_processes(sizes[i], runs, &fresh);
        printf("%8u", sizes[i]);
        print_us(fresh.encode_ns);
        printf(" %6" PRIu64, fresh.encode_faults);
        print_us(fresh.decode_ns);
        printf(" %6" PRIu64 "\n", fresh.decode_faults);
    }
    printf("%u entries, encode + decode in fresh processes (per run):",
           sizes[last]);
    print_us_line(fresh.total_ns);

    if (!phases)
        return 0;
    /* Timed with a mark between steps, so the sum is a little above the
     * totals of the table. Faults: minor page faults of the step (fresh
     * memory touched), median. */
    printf("\nsteps at %u entries, microseconds (median, min-max), minor "
           "faults:\n",
           sizes[last]);
    for (int i = 0; i < results[last].n_steps; i++) {
        const char *what = results[last].step[i];

        if (strcmp(what, "encode") == 0)
            what = "encode: free";
        else if (strcmp(what, "decode") == 0)
            what = "decode: free";
        printf("  %-40s", what);
        print_us(results[last].step_ns[i]);
        printf(" %6" PRIu64 "\n", results[last].step_faults[i]);
    }
    return 0;
}
