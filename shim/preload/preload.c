/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcprkit-preload.so: runs a VFIO program that does not link libcprkit
 * under cprkit (see shim/README.md and docs/operations.md,
 * "Programs that do not link libcprkit").
 *
 * It maps the program's raw VFIO calls onto libcprkit's find-or-create
 * hooks (linked in statically, hidden):
 *   open("/dev/vfio/vfio")            cprkit_vfio_container_open (n-th open = id n)
 *   open("/dev/vfio/N")               real open; reclaim on the incoming side
 *   VFIO_GROUP_SET_CONTAINER          cprkit_vfio_group_open (sets the IOMMU)
 *   VFIO_SET_IOMMU                    no-op (type1v2 was set by the library)
 *   VFIO_GROUP_GET_DEVICE_FD          cprkit_vfio_device_open
 *   VFIO_DEVICE_RESET                 cprkit_vfio_device_reset (no-op on reclaim)
 *   VFIO_IOMMU_MAP_DMA                anonymous memory is moved into a memfd
 *                                     (cprkit_ram_open) at the same address,
 *                                     then cprkit_vfio_dma_map
 *   VFIO_IOMMU_UNMAP_DMA              cprkit_vfio_dma_unmap
 *   VFIO_DEVICE_SET_IRQS (eventfds)   cprkit_vfio_irq_set_vectors (MSI,
 *                                     MSI-X: any start, gaps) or
 *                                     cprkit_vfio_irq_enable (INTx, ERR,
 *                                     REQ), the library's eventfds dup'ed
 *                                     over the program's
 *   execve by the program itself      an update (cprkit_exec)
 * A control thread serves the control socket ($CPRKIT_CONTROL_SOCKET); an
 * "upgrade" request execs the new binary from that thread.
 *
 * Every library call runs with preload_in_lib set: the library's own
 * open/ioctl/close/execve calls come back through the wrappers and must
 * pass straight to libc.
 *
 * Files: interpose.c (the exported libc functions), vfio-translate.c
 * (the program's VFIO fds and the ioctls on them), dma-memfd.c and
 * irq-eventfd.c (DMA mappings, interrupts), records.c (what is carried
 * across exec), incoming.c (claim, commit, rollback), control-thread.c
 * (the control socket and the update), exec-path.c (execvp's PATH
 * search). This file: start-up, logging, refusals, the fds the shim keeps.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "control-internal.h"
#include "keeper-proto.h"
#include "preload-internal.h"

cprkit_ctx *preload_ctx;
cprkit_control *preload_control;
static int log_max = LOG_INFO;

/* Why updates are refused, if the program did something the shim cannot
 * preserve (set once, never cleared). */
char preload_tainted[256];

/* fds the shim holds that the program never saw: not closed for it. */
static int private_fds[PRELOAD_MAX_FDS * 4];
static size_t n_private;

void preload_log(int prio, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (prio > log_max)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "<%d>cprkit-preload[%d]: %s\n", prio, (int)getpid(),
            buf);
}

static void lib_log(void *userdata, int priority, const char *msg)
{
    preload_log(priority, "%s", msg);
}

void preload_private_add(int fd)
{
    for (size_t i = 0; i < n_private; i++)
        if (private_fds[i] == fd)
            return;
    if (n_private == sizeof(private_fds) / sizeof(private_fds[0])) {
        /* The close() interposer could no longer keep the program from
         * closing this one, so an update could not trust it. */
        preload_taint("the shim holds more than %zu fds", n_private);
        return;
    }
    private_fds[n_private++] = fd;
}

bool preload_private_has(int fd)
{
    for (size_t i = 0; i < n_private; i++)
        if (private_fds[i] == fd)
            return true;
    return false;
}

void preload_taint(const char *fmt, ...)
{
    va_list ap;

    if (preload_tainted[0])
        return;
    va_start(ap, fmt);
    vsnprintf(preload_tainted, sizeof(preload_tainted), fmt, ap);
    va_end(ap);
    preload_log(LOG_WARNING, "updates are refused from now on: %s",
                preload_tainted);
    /* Also a blocker of the library's, so that `cpr-exec status` and
     * `check` show it before anyone asks for an upgrade. */
    if (preload_ctx) {
        preload_in_lib++;
        (void)cprkit_blocker_add(preload_ctx, "preload", preload_tainted);
        preload_in_lib--;
    }
}

/* The control socket's path, for removing it when the program ends. */
static char socket_path[108];

/* A normal exit of the program (exit(), return from main): its control
 * socket goes with it. Not run by an exec (an update keeps the socket) nor
 * by a crash (the next start takes the stale file over), nor in children. */
static void remove_socket_at_exit(void)
{
    if (preload_active && getpid() == preload_owner && socket_path[0])
        unlink(socket_path);
}

static void after_fork_child(void)
{
    /* The child has copies of the fds, not the devices' future: it never
     * acts for the shim. The lock may have been held by another thread. */
    preload_active = false;
    pthread_mutex_init(&preload_lock, NULL);
}

__attribute__((constructor)) static void preload_init(void)
{
    const char *debug = getenv("CPRKIT_PRELOAD_DEBUG");
    struct cprkit_keeper_status keeper = {.size = sizeof(keeper)};
    int keeper_fd, r;

    preload_resolve();
    if (debug && *debug && strcmp(debug, "0") != 0)
        log_max = LOG_DEBUG;
    if (!getenv(CPRKIT_CONTROL_SOCKET_ENV))
        return; /* not under cpr-exec run (or a child of the program) */
    /* Before anything is opened here: what the process was started with. */
    preload_exec_fds_init();
    /* Any libcprkit in the program (the control library, or the core
     * alone): two cprkit contexts would both preserve its fds. */
    if (dlsym(RTLD_DEFAULT, "cprkit_control_listen") ||
        dlsym(RTLD_DEFAULT, "cprkit_new")) {
        preload_log(LOG_WARNING, "the program links libcprkit itself: the "
                                 "shim stays out of the way");
        return;
    }
    preload_in_lib = 1;
    r = cprkit_new(&preload_ctx);
    if (r < 0) {
        preload_log(LOG_ERR, "cannot create a cprkit context: %s",
                    strerror(-r));
        _exit(EXIT_FAILURE);
    }
    /* CPRKIT_LOG (read by cprkit_new()) sets the priority unless
     * CPRKIT_PRELOAD_DEBUG asks for debug. */
    if (log_max == LOG_DEBUG)
        cprkit_set_log_priority(preload_ctx, LOG_DEBUG);
    log_max = cprkit_get_log_priority(preload_ctx);
    cprkit_set_log_fn(preload_ctx, lib_log, NULL);
    /* The load takes the keeper's socket out of the environment; the
     * program must not close it (docs/keeper.md). */
    keeper_fd = getenv(CPRKIT_KEEPER_FD_ENV)
                    ? atoi(getenv(CPRKIT_KEEPER_FD_ENV))
                    : -1;
    r = cprkit_load_incoming(preload_ctx);
    if (r < 0) {
        preload_log(LOG_ERR,
                    "the state from the previous binary is "
                    "unusable: %s",
                    cprkit_last_error(preload_ctx));
        cprkit_rollback(preload_ctx, cprkit_last_error(preload_ctx));
        preload_log(LOG_ERR, "rollback failed: %s",
                    cprkit_last_error(preload_ctx));
        _exit(EXIT_FAILURE);
    }
    if (r == 1 && preload_incoming_start() < 0)
        _exit(EXIT_FAILURE);
    r = cprkit_control_listen(preload_ctx, NULL, &preload_control);
    if (r < 0) {
        preload_log(LOG_ERR, "control socket: %s",
                    cprkit_last_error(preload_ctx));
        if (preload_incoming) {
            cprkit_rollback(preload_ctx,
                            "the control socket cannot be taken over");
            _exit(EXIT_FAILURE);
        }
        cprkit_free(preload_ctx);
        preload_ctx = NULL;
        preload_in_lib = 0;
        return;
    }
    cprkit_control_set_upgrade_fn(preload_control, preload_upgrade,
                                  PRELOAD_UPGRADE_FROM_CONTROL);
    r = cprkit_fd_find(preload_ctx, CONTROL_LISTEN_FD_NAME, 0, CPRKIT_FD_ANY);
    if (r >= 0)
        preload_private_add(r);
    preload_private_add(cprkit_control_fd(preload_control));
    if (keeper_fd >= 0 && cprkit_keeper_status(preload_ctx, &keeper) == 0)
        preload_private_add(keeper_fd);
    preload_owner = getpid();
    preload_active = true;
    snprintf(socket_path, sizeof(socket_path), "%s",
             getenv(CPRKIT_CONTROL_SOCKET_ENV) ? getenv(CPRKIT_CONTROL_SOCKET_ENV)
                                               : "");
    atexit(remove_socket_at_exit);
    pthread_atfork(NULL, NULL, after_fork_child);
    if (!preload_incoming)
        cprkit_control_mark_serving(preload_control);
    else
        preload_maybe_commit(); /* nothing to re-create */

    r = preload_control_thread_start();
    preload_in_lib = 0;
    if (r < 0) {
        preload_log(LOG_ERR, "cannot start the control thread: %s",
                    strerror(-r));
        if (preload_incoming)
            preload_rollback("cannot start the control thread");
        preload_active = false;
    }
}
