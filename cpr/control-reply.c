/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint's replies: one compact JSON object per line, members
 * in the order they are set (what json-glib wrote before, byte for byte).
 * Protocol: docs/operations.md.
 */
#include <string.h>

#include "control-endpoint.h"

/* One reply: compact JSON on one line, members in the order they were
 * set (what json-glib wrote before, byte for byte). */
int control_write_json(int fd, const json_t *reply)
{
    _cleanup_free_ char *line = json_dumps(reply, JSON_COMPACT);

    if (!line)
        return -ENOMEM;
    return control_write_line(fd, line);
}

/* NULL is written as null. */
void control_set_str(json_t *o, const char *member, const char *value)
{
    json_object_set_new(o, member, json_utf8_string(value));
}

void control_set_int(json_t *o, const char *member, json_int_t value)
{
    json_object_set_new(o, member, json_integer(value));
}

void control_set_bool(json_t *o, const char *member, bool value)
{
    json_object_set_new(o, member, json_boolean(value));
}

/* {"ok":false,"result":"error","error":"..."} for requests that could not
 * be understood or are not allowed. */
int control_reply_error(int fd, const char *result, const char *fmt, ...)
{
    json_auto_t *o = json_object();
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    control_set_bool(o, "ok", false);
    control_set_str(o, "result", result);
    control_set_str(o, "error", msg);
    return control_write_json(fd, o);
}

int control_send_phase(int fd, const char *phase, const char *binary)
{
    json_auto_t *o = json_object();

    control_set_str(o, "event", "phase");
    control_set_str(o, "phase", phase);
    control_set_int(o, "pid", getpid());
    if (binary)
        control_set_str(o, "binary", binary);
    return control_write_json(fd, o);
}
