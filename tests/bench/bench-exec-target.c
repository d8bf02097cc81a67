/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The program bench-exec execs, built three times: linking nothing of
 * cprkit (BENCH_LINK_NONE), libcprkit alone (BENCH_LINK_CORE), or
 * libcprkit-control too (BENCH_LINK_CONTROL), like a program that enables
 * the control endpoint. argv[1] is the CLOCK_MONOTONIC time (ns) taken just
 * before execve; main() prints "<exec-to-main ns> <shared objects>" on
 * stdout and, with a second argument "list", the objects' names on stderr.
 */
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(BENCH_LINK_CONTROL)
#include "cprkit/cprkit-control.h"
#elif defined(BENCH_LINK_CORE)
#include "cprkit/cprkit.h"
#endif

struct objects {
    bool list;
    int count;
};

/* Every object the dynamic loader mapped except the program itself, as
 * `ldd` lists them (the vDSO and ld.so included). */
static int count_object(struct dl_phdr_info *info, size_t size, void *data)
{
    struct objects *o = data;

    (void)size;
    if (!info->dlpi_name[0])
        return 0;
    o->count++;
    if (o->list)
        fprintf(stderr, "  %s\n", info->dlpi_name);
    return 0;
}

int main(int argc, char **argv)
{
    struct objects objs = {0};
    struct timespec ts;
    uint64_t now, then;

    /* First thing: execve -> main. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (argc < 2)
        return 2;
    then = strtoull(argv[1], NULL, 10);
    objs.list = argc > 2 && strcmp(argv[2], "list") == 0;
    dl_iterate_phdr(count_object, &objs);

#if defined(BENCH_LINK_CORE) || defined(BENCH_LINK_CONTROL)
    {
        cprkit_ctx *ctx;

        if (cprkit_new(&ctx) < 0)
            return 1;
#ifdef BENCH_LINK_CONTROL
        /* A call into libcprkit-control, so that the linker keeps it. */
        cprkit_control_free(NULL);
#endif
        cprkit_free(ctx);
    }
#endif
    printf("%llu %d\n", (unsigned long long)(now - then), objs.count);
    return 0;
}
