/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* JSON (jansson) helpers of libcprkit-control: cpr/control*.c and
 * cpr/state-json.c only. Kept out of control-internal.h, which cpr-exec and
 * the tests include next to json-glib: both libraries declare
 * json_object_iter_next(), so one file cannot include both headers. */
#pragma once

#include <jansson.h>

#include "control-internal.h"

/* A JSON string of s, or null for NULL. jansson takes only valid UTF-8 and
 * names, paths and error messages need not be: invalid sequences become
 * U+FFFD rather than lose the whole value. */
json_t *json_utf8_string(const char *s);

/* The blob as a JSON object (new reference in *ret_json): what
 * cprkit_blob_visit() passes, members in its order, then "corrupt": whether
 * the payload or the rescue block is damaged (a checksum mismatch, a
 * payload that does not decode although this build reads its format).
 * Returns: 0, or < 0 when buf is not a blob (the reason in
 * cprkit_last_error()). */
int blob_to_json_tree(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                      json_t **ret_json);
