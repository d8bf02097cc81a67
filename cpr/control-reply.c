/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint's replies: one compact JSON object per line, members
 * in the order they are set (what json-glib wrote before, byte for byte).
 * Protocol: docs/operations.md.
 */
#include <string.h>
#include <time.h>

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

int control_write_reply(int fd, const json_t *id, json_t *reply)
{
    if (id)
        json_object_set(reply, "id", (json_t *)id);
    return control_write_json(fd, reply);
}

uint64_t control_realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

const char *control_error_class_name(enum control_error_class error_class)
{
    static const char *const names[] = {
        [CONTROL_ERROR_BAD_REQUEST] = "BadRequest",
        [CONTROL_ERROR_NOT_PERMITTED] = "NotPermitted",
        [CONTROL_ERROR_BUSY] = "Busy",
        [CONTROL_ERROR_NOT_SUPPORTED] = "NotSupported",
        [CONTROL_ERROR_BLOCKED] = "Blocked",
        [CONTROL_ERROR_FAILED] = "Failed",
        [CONTROL_ERROR_ROLLED_BACK] = "RolledBack",
        [CONTROL_ERROR_RESTARTED] = "Restarted",
    };

    return (size_t)error_class < ELEMENTSOF(names) ? names[error_class] : NULL;
}

json_t *control_error_new(enum control_error_class error_class,
                          const char *desc)
{
    json_t *e = json_object();

    control_set_str(e, "class", control_error_class_name(error_class));
    control_set_str(e, "desc", desc ? desc : "");
    return e;
}

/* {"ok":false,"result":"error","error":{"class","desc"}} for requests that
 * could not be understood or are not allowed. */
int control_reply_error(int fd, const json_t *id,
                        enum control_error_class error_class, const char *fmt,
                        ...)
{
    json_auto_t *o = json_object();
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    control_set_bool(o, "ok", false);
    control_set_str(o, "result", "error");
    json_object_set_new(o, "error", control_error_new(error_class, msg));
    return control_write_reply(fd, id, o);
}

/* Both clocks: CLOCK_MONOTONIC compares with cprkit_timestamp() and across
 * the exec (one clock per boot), the wall clock is for people and logs. */
int control_send_phase(int fd, const json_t *id, const char *phase,
                       const char *binary, uint64_t monotonic_ns,
                       uint64_t realtime_ns)
{
    json_auto_t *o = json_object();

    control_set_str(o, "event", "phase");
    control_set_str(o, "phase", phase);
    control_set_int(o, "pid", getpid());
    if (binary)
        control_set_str(o, "binary", binary);
    control_set_int(o, "monotonic_ns", (json_int_t)monotonic_ns);
    control_set_int(o, "realtime_ns", (json_int_t)realtime_ns);
    return control_write_reply(fd, id, o);
}
