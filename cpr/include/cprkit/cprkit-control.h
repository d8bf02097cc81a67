/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit-control — the control endpoint and the lockdown, in their own
 * library (libcprkit-control.so, pkg-config cprkit-control), which links
 * libcprkit.so and uses only its public API (cprkit.h).
 *
 * A UNIX socket speaking JSON lines (docs/operations.md has the protocol).
 * The listening socket is a preserved fd ("cprkit-control"/0), so its path
 * stays valid across updates; a client that asked for an upgrade has its
 * connection preserved too ("cprkit-control-client"/0), and the new binary
 * answers it after cprkit_commit() — or, after a rollback, the old binary
 * does. Every call here follows the conventions at the top of cprkit.h.
 */
#ifndef CPRKIT_CONTROL_H
#define CPRKIT_CONTROL_H

#include <cprkit/cprkit.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Environment variable with the socket path; `cpr-exec run` sets it. */
#define CPRKIT_CONTROL_SOCKET_ENV "CPRKIT_CONTROL_SOCKET"

typedef struct cprkit_control cprkit_control;

/*
 * cprkit_control_listen:
 * Creates the control socket at socket_path (NULL: $CPRKIT_CONTROL_SOCKET)
 * and registers it as a preserved fd; or, in a process started by an update
 * (call it after cprkit_load_incoming() and before cprkit_commit()),
 * reclaims the preserved socket and the connection of the client that asked
 * for the update. A stale socket file (nobody accepting) is replaced; a
 * live one is refused with -EADDRINUSE. The control must not outlive ctx.
 * Returns: 0 on success or < 0 (-EINVAL no path, -ENAMETOOLONG).
 * Since: 0.2
 */
int cprkit_control_listen(cprkit_ctx *ctx, const char *socket_path,
                          cprkit_control **ret_control);

/* An fd to poll for POLLIN (an epoll fd over the socket and its clients);
 * call cprkit_control_dispatch() when it is readable. Since: 0.2 */
int cprkit_control_fd(const cprkit_control *control);

/*
 * cprkit_upgrade_fn:
 * Called from cprkit_control_dispatch() for an "upgrade" request, after the
 * blockers passed. The application quiesces and calls
 * cprkit_exec(ctx, binary, argv, ...); argv[0] is binary. It returns only
 * if the update did not happen: return the negative errno (cprkit_exec's
 * result) after resuming service; the client is told "failed" with
 * cprkit_last_error().
 */
typedef int (*cprkit_upgrade_fn)(void *userdata, cprkit_ctx *ctx,
                                 const char *binary, char *const argv[]);

/* Without an upgrade function, "upgrade" requests are refused. Since: 0.2 */
void cprkit_control_set_upgrade_fn(cprkit_control *control,
                                   cprkit_upgrade_fn fn, void *userdata);

/*
 * cprkit_control_dispatch:
 * Accepts pending connections and serves complete requests without
 * blocking (replies are small; a client that does not read them within a
 * second is dropped). After a committed update it also answers the
 * preserved client, if cprkit_control_mark_serving() has not done so.
 * Returns: 0 or < 0 on a failure of the endpoint itself (a bad request is
 * answered with an error reply and is not a failure here).
 * Since: 0.2
 */
int cprkit_control_dispatch(cprkit_control *control);

/*
 * cprkit_control_mark_serving:
 * Tells the endpoint the application serves again after cprkit_commit().
 * The blackout of the update is measured from the previous binary's
 * "suspend" timestamp to now, and the client that asked for the update is
 * answered: "committed", or "rolled-back" with the reason when this binary
 * was started by a rollback. Call it on a normal start too: under systemd
 * (NOTIFY_SOCKET set) it sends READY=1 in every case.
 * Returns: 0, or -EBUSY before cprkit_commit().
 * Since: 0.2
 */
int cprkit_control_mark_serving(cprkit_control *control);

/* Blackout of the last update measured by this process in ns, or 0.
 * Since: 0.2 */
uint64_t cprkit_control_last_blackout_ns(const cprkit_control *control);

/* Closes the socket and its clients, removes the socket file and forgets
 * the preserved fd. Call before exiting, not before an update.
 * Since: 0.2 */
void cprkit_control_free(cprkit_control *control);

/* ---- lockdown ------------------------------------------------------------
 *
 * After start-up (or after cprkit_commit()) the program needs no privilege
 * to keep serving or to update: the next binary reclaims fds instead of
 * opening devices.
 */
/* Drop every capability except those in keep_caps (bit n = capability n,
 * e.g. 1ull << CAP_IPC_LOCK), from the bounding set too, so the next
 * binary starts with no more than that. */
#define CPRKIT_LOCKDOWN_CAPS (1u << 0)
/* A seccomp filter failing with EPERM the VFIO ioctls that attach groups,
 * set the IOMMU, get new device fds or reset devices
 * (VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_SET_IOMMU,
 * VFIO_GROUP_GET_DEVICE_FD, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_RESET),
 * by request number on every fd. Not VFIO_DEVICE_PCI_HOT_RESET: it has
 * the number of VFIO_IOMMU_MAP_DMA, which updates need. execve stays
 * allowed; the filter and no_new_privs are inherited by every later
 * binary. */
#define CPRKIT_LOCKDOWN_SECCOMP (1u << 1)
/* Also fail VFIO_DEVICE_FEATURE with EPERM, so the program cannot put a
 * device in low power (LOW_POWER_ENTRY blocks its mmap'd BARs until
 * LOW_POWER_EXIT). seccomp cannot read which feature is asked for, so this
 * denies every feature (migration, dirty-page logging, the VF token...)
 * and type1's VFIO_IOMMU_DIRTY_PAGES, which has the same number: only for
 * programs that use none of them. Adds to the CPRKIT_LOCKDOWN_SECCOMP
 * filter; alone, loads a filter with this rule only. Since
 * libcprkit-control 0.2.1 (pkg-config --atleast-version=0.2.1
 * cprkit-control); 0.2.0 fails with -EINVAL (unknown flags) and applies
 * nothing. */
#define CPRKIT_LOCKDOWN_DEVICE_FEATURE (1u << 2)

/* Returns: 0 or < 0 (-EINVAL unknown flags). Since: 0.2 */
int cprkit_lockdown(cprkit_ctx *ctx, unsigned flags, uint64_t keep_caps);

#ifdef __cplusplus
}
#endif

#endif /* CPRKIT_CONTROL_H */
