/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Link-time interposer (ld --wrap): makes a new image of the reference
 * workload die or hang at a chosen point of an update, so that the keeper
 * of `cpr-exec run` has to start the old binary again (docs/keeper.md).
 * The workload links libcprkit statically in the ops test binaries, so an
 * LD_PRELOAD module cannot reach its cprkit_* calls; the binary that wants
 * these faults links this file with
 *   -Wl,--wrap=cprkit_load_incoming,--wrap=cprkit_vfio_dma_map,
 *   --wrap=cprkit_iommufd_map_file,--wrap=cprkit_commit
 * (tests/shim/meson.build, ops-keeper-faults).
 *
 * Dormant unless $CPRKIT_WORKLOAD_ACT (WL_ACT_ENV) is set at start-up; the
 * operator mode (control.c) sets it in the new image's environment only,
 * for the upgrade arguments --fail-crash-after-load, --fail-abort-mid-remap,
 * --fail-hang and --fail-exit-early:
 *   exit-early          exit(1) before cprkit_load_incoming(): the keeper
 *                       sees no "hello": "... without loading the state"
 *   crash-after-load    SIGSEGV as soon as cprkit_load_incoming() loaded
 *                       the state (nothing reclaimed: every vaddr is still
 *                       suspended)
 *   abort-mid-remap=N   abort() right after the Nth DMA remap of the
 *                       reclaim (cprkit_vfio_dma_map() of an incoming
 *                       state): N vaddrs valid in the dead address space,
 *                       the others suspended; on iommufd the Nth
 *                       reclaim of a mapping (cprkit_iommufd_map_file()),
 *                       after the load moved every mapping to this process
 *   hang                cprkit_commit() never returns: the keeper kills it
 *                       at the commit deadline
 * The variable is removed at once (no child or later image inherits it),
 * and core dumps are off in an acting image, so the keeper's cause reads
 * "killed by SIGSEGV", not "(core dumped)".
 *
 * In every image: a process the keeper restarted logs at LOG_INFO while it
 * loads the state, so its output shows what the VFIO participant found
 * ("took over 3 DMA mappings of the previous process (1 still had its
 * addresses)").
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "workload.h"

/* The acting faults are here (control.c checks this weak symbol). */
const char wl_act_hooks[] = "crash-after-load abort-mid-remap hang exit-early";

static char act[64];
static unsigned remap_limit, remapped;

int __real_cprkit_load_incoming(cprkit_ctx *ctx);
int __wrap_cprkit_load_incoming(cprkit_ctx *ctx);
int __real_cprkit_vfio_dma_map(cprkit_ctx *ctx, int container_fd,
                               uint64_t iova, uint64_t size, void *vaddr,
                               uint32_t flags);
int __wrap_cprkit_vfio_dma_map(cprkit_ctx *ctx, int container_fd,
                               uint64_t iova, uint64_t size, void *vaddr,
                               uint32_t flags);
int __real_cprkit_iommufd_map_file(cprkit_ctx *ctx, int iommufd,
                                   uint32_t ioas_id, int fd, uint64_t offset,
                                   uint64_t length, uint64_t iova,
                                   uint32_t prot);
int __wrap_cprkit_iommufd_map_file(cprkit_ctx *ctx, int iommufd,
                                   uint32_t ioas_id, int fd, uint64_t offset,
                                   uint64_t length, uint64_t iova,
                                   uint32_t prot);
int __real_cprkit_commit(cprkit_ctx *ctx);
int __wrap_cprkit_commit(cprkit_ctx *ctx);

static bool acting(const char *what)
{
    return !strcmp(act, what);
}

__attribute__((constructor)) static void act_init(void)
{
    const char *v = getenv(WL_ACT_ENV);
    char *eq;

    if (!v)
        return;
    snprintf(act, sizeof(act), "%s", v);
    unsetenv(WL_ACT_ENV);
    eq = strchr(act, '=');
    if (eq) {
        *eq = '\0';
        remap_limit = (unsigned)strtoul(eq + 1, NULL, 10);
    }
    if (acting("abort-mid-remap") && !remap_limit)
        remap_limit = 1;
    setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
    fprintf(stderr, "act-wrap: pid %d acts '%s'\n", (int)getpid(), v);
}

int __wrap_cprkit_load_incoming(cprkit_ctx *ctx)
{
    /* Set by the keeper for a process it starts after a death. */
    bool restarted = getenv("CPRKIT_RESTART_REASON") != NULL;
    int r;

    if (acting("exit-early")) {
        fprintf(stderr, "act-wrap: pid %d exits 1 before loading the "
                "state\n", (int)getpid());
        exit(1);
    }
    if (restarted)
        cprkit_set_log_priority(ctx, LOG_INFO);
    r = __real_cprkit_load_incoming(ctx);
    if (restarted)
        cprkit_set_log_priority(ctx, LOG_NOTICE);
    if (acting("crash-after-load") && r == 1) {
        fprintf(stderr, "act-wrap: pid %d loaded the state (generation "
                "%llu): SIGSEGV\n", (int)getpid(),
                (unsigned long long)cprkit_generation(ctx));
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    return r;
}

/* abort-mid-remap: after the Nth successful reclaim of a DMA mapping. */
static void count_reclaim(cprkit_ctx *ctx, int r, uint64_t iova)
{
    if (r == 0 && acting("abort-mid-remap") && cprkit_is_incoming(ctx) &&
        ++remapped == remap_limit) {
        fprintf(stderr, "act-wrap: pid %d remapped %u DMA mapping(s), the "
                "last at IOVA 0x%llx: abort()\n", (int)getpid(), remapped,
                (unsigned long long)iova);
        abort();
    }
}

int __wrap_cprkit_vfio_dma_map(cprkit_ctx *ctx, int container_fd,
                               uint64_t iova, uint64_t size, void *vaddr,
                               uint32_t flags)
{
    int r = __real_cprkit_vfio_dma_map(ctx, container_fd, iova, size, vaddr,
                                       flags);

    count_reclaim(ctx, r, iova);
    return r;
}

int __wrap_cprkit_iommufd_map_file(cprkit_ctx *ctx, int iommufd,
                                   uint32_t ioas_id, int fd, uint64_t offset,
                                   uint64_t length, uint64_t iova,
                                   uint32_t prot)
{
    int r = __real_cprkit_iommufd_map_file(ctx, iommufd, ioas_id, fd, offset,
                                           length, iova, prot);

    count_reclaim(ctx, r, iova);
    return r;
}

int __wrap_cprkit_commit(cprkit_ctx *ctx)
{
    if (acting("hang")) {
        fprintf(stderr, "act-wrap: pid %d hangs before commit\n",
                (int)getpid());
        for (;;)
            pause();
    }
    return __real_cprkit_commit(ctx);
}
