/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal interfaces of the control endpoint, the state as JSON and the
 * lockdown, shared by cpr/control*.c, cpr/state-json.c, shim/ and the unit
 * tests. Not installed.
 *
 * libcprkit-control.so links libcprkit.so and must use nothing of it but
 * its public API (cprkit/cprkit.h): this header and the control sources
 * do not include cprkit-internal.h (CPRKIT_PUBLIC_API_ONLY makes that an
 * error; tests/check-control-so checks the built library). */
#pragma once

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include <glib.h>

#include "cprkit/cprkit-control.h"
#include "macros.h"

/* control-takeover.c: chmod of the socket file at path without following
 * a symlink: -ENOTSOCK for a symlink or anything but a socket. */
int control_chmod_socket(const char *path, unsigned mode);

/* Preserved fd names of the control endpoint. */
#define CONTROL_LISTEN_FD_NAME "cprkit-control"
#define CONTROL_CLIENT_FD_NAME "cprkit-control-client"

/* The new binary's time to commit when the request does not say
 * (cprkit_set_commit_timeout(); docs/keeper.md). */
#define CONTROL_DEFAULT_COMMIT_TIMEOUT_MS 30000u

/* At most this many connections at once; more are answered "busy"
 * (tests/shim/test-control.c uses these). */
#define CONTROL_MAX_CLIENTS 32
/* With every slot taken, a new client replaces the connection that has
 * been idle longest, if that is at least this long: idle connections
 * cannot lock the owner out. */
#define CONTROL_IDLE_EVICT_MS 3000

/* No state blob is larger: its frame, the rescue block (at most 1 MiB)
 * and the payload (at most 64 MiB). `cpr-exec inspect FILE` reads no more. */
#define CONTROL_BLOB_FILE_MAX ((64u + 2u) << 20)

/* Longest request line a server accepts; longer ones get an error reply
 * and the connection is closed. */
#define CONTROL_MAX_REQUEST (64u * 1024u)

/* cprkit_set_error() plus the debug log line the core writes for its own
 * failures. Returns: error. */
int control_fail(cprkit_ctx *ctx, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC now, in ns: comparable with cprkit_timestamp(). */
uint64_t control_now_ns(void);

/* state-json.c: the whole blob as JSON text (compact, one line, to free()):
 * frame fields, rescue command line, and the decoded payload (or
 * "payload_error" when it cannot be decoded, e.g. a format major this build
 * does not read), then "corrupt" (bool: a checksum mismatch or an
 * undecodable payload or rescue block in a format this build reads). Fails
 * only if the frame itself is invalid. Text rather
 * than a JSON tree: the library writes JSON with jansson, cpr-exec and the
 * tests read it with json-glib (see state-json.h). */
int blob_to_json(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                 char **ret_text);

/* control-lockdown.c: the ioctl requests the seccomp lockdown denies. */
extern const unsigned long lockdown_denied_ioctls[];
extern const char *const lockdown_denied_ioctl_names[];
extern const size_t lockdown_n_denied_ioctls;
