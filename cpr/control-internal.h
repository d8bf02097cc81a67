/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal interfaces of the control endpoint, the state as JSON and the
 * lockdown, shared by cpr/control*.c, cpr/state-json.c, shim/ and the unit
 * tests. Not installed. */
#pragma once

#include "cprkit-internal.h"
#include "cprkit/cprkit-control.h"

/* Preserved fd names of the control endpoint. */
#define CONTROL_LISTEN_FD_NAME "cprkit-control"
#define CONTROL_CLIENT_FD_NAME "cprkit-control-client"

/* Longest request line a server accepts; longer ones get an error reply
 * and the connection is closed. */
#define CONTROL_MAX_REQUEST (64u * 1024u)

/* The format marker lives with the blob reader (cpr/blob.c). */
#define CONTROL_FORMAT_MARKER_PREFIX CPRKIT_FORMAT_MARKER_PREFIX

/* state-json.c: the whole blob as JSON text (compact, one line, to free()):
 * frame fields, rescue command line, and the decoded payload (or
 * "payload_error" when it cannot be decoded, e.g. a format major this build
 * does not read). Fails only if the frame itself is invalid. Text rather
 * than a JSON tree: the library writes JSON with jansson, cpr-exec and the
 * tests read it with json-glib (see state-json.h). */
int blob_to_json(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                 char **ret_text);

/* control.c: the blob this process would write now (for `inspect`). */
int control_build_blob(cprkit_ctx *ctx, uint8_t **ret_buf, size_t *ret_size);

/* control-lockdown.c: the ioctl requests the seccomp lockdown denies. */
extern const unsigned long lockdown_denied_ioctls[];
extern const char *const lockdown_denied_ioctl_names[];
extern const size_t lockdown_n_denied_ioctls;
