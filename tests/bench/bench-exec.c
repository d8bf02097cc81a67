/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Benchmark (not a test): exec -> main() of a program on the host, by what
 * it links. Every new binary of a live update pays this inside the
 * blackout: the dynamic loader maps and relocates each shared object
 * before main() runs, so a library's dependencies cost time on every
 * update (docs/performance.md, "The control library's cost in the
 * blackout").
 *
 *   bench-exec [--runs N] [--list] NAME=PROGRAM...
 *
 * Each PROGRAM is a build of bench-exec-target.c; they are exec'd in turn
 * (round robin, so that load on the machine hits all alike), N times each
 * after a few warm-up runs. Prints the objects each loads and exec-to-main
 * as median (min-max) in microseconds, and the ratio of each median to the
 * one named "core" (libcprkit alone). --list also names the objects.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP_RUNS 10

struct target {
    const char *name;
    const char *path;
    uint64_t *samples;
    int objects;
};

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* One exec of t; its exec-to-main time in *ret_ns. */
static int run_once(struct target *t, bool list, uint64_t *ret_ns)
{
    char out[256];
    size_t len = 0;
    int pipefd[2], status;
    unsigned long long ns;
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        char stamp[32];

        /* dup2 leaves the copy without FD_CLOEXEC: the target's stdout. */
        if (dup2(pipefd[1], STDOUT_FILENO) < 0)
            _exit(127);
        snprintf(stamp, sizeof(stamp), "%" PRIu64, monotonic_ns());
        execl(t->path, t->path, stamp, list ? "list" : NULL, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    for (;;) {
        ssize_t n = read(pipefd[0], out + len, sizeof(out) - 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(pipefd[0]);
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(out, "%llu %d", &ns, &t->objects) != 2) {
        fprintf(stderr, "bench-exec: %s did not run (status 0x%x)\n", t->path,
                status);
        return -EIO;
    }
    *ret_ns = ns;
    return 0;
}

int main(int argc, char **argv)
{
    struct target targets[8];
    int n_targets = 0, runs = 301;
    bool list = false;
    double core_median = 0;

    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');

        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--list") == 0) {
            list = true;
        } else if (eq &&
                   n_targets < (int)(sizeof(targets) / sizeof(*targets))) {
            *eq = '\0';
            targets[n_targets++] = (struct target){argv[i], eq + 1, NULL, 0};
        } else {
            fprintf(stderr, "usage: bench-exec [--runs N] [--list] "
                            "NAME=PROGRAM...\n");
            return 2;
        }
    }
    if (runs < 1 || n_targets == 0) {
        fprintf(stderr, "bench-exec: need --runs >= 1 and a NAME=PROGRAM\n");
        return 2;
    }
    for (int t = 0; t < n_targets; t++) {
        targets[t].samples = calloc((size_t)runs, sizeof(uint64_t));
        if (!targets[t].samples)
            return 1;
        if (list) {
            uint64_t ns;

            fprintf(stderr, "%s (%s) loads:\n", targets[t].name,
                    targets[t].path);
            if (run_once(&targets[t], true, &ns) < 0)
                return 1;
        }
    }

    for (int i = -WARMUP_RUNS; i < runs; i++) {
        for (int t = 0; t < n_targets; t++) {
            uint64_t ns;

            if (run_once(&targets[t], false, &ns) < 0)
                return 1;
            if (i >= 0)
                targets[t].samples[i] = ns;
        }
    }

    printf("exec -> main() on the host, %d runs each, microseconds, "
           "median (min-max)\n",
           runs);
    printf("%-10s %8s %10s %22s %10s\n", "program", "objects", "median",
           "min-max", "/ core");
    for (int t = 0; t < n_targets; t++) {
        struct target *tg = &targets[t];

        qsort(tg->samples, (size_t)runs, sizeof(uint64_t), compare_u64);
        if (strcmp(tg->name, "core") == 0)
            core_median = (double)tg->samples[runs / 2];
    }
    for (int t = 0; t < n_targets; t++) {
        struct target *tg = &targets[t];
        double median = (double)tg->samples[runs / 2];
        char range[64], ratio[16] = "-";

        snprintf(range, sizeof(range), "%.1f-%.1f", tg->samples[0] / 1e3,
                 tg->samples[runs - 1] / 1e3);
        if (core_median > 0)
            snprintf(ratio, sizeof(ratio), "%.2fx", median / core_median);
        printf("%-10s %8d %10.1f %22s %10s\n", tg->name, tg->objects,
               median / 1e3, range, ratio);
        free(tg->samples);
    }
    return 0;
}
