/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers the operator-path VM drivers (ops-vm.c, ops-wl.c, ops-keeper.c,
 * ops-keeper-faults.c) share. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include <json-glib/json-glib.h>

/* Runs argv with @dir first in PATH and CPR_EXEC=@dir/cpr-exec; stdout
 * captured if ret_out. Returns the exit code, or -1. */
int ops_run(const char *dir, const char *const *argv, char **ret_out);

/* True once the UNIX socket at @path accepts; false after ~@seconds, or
 * as soon as @pid (if > 0) has exited. */
bool ops_wait_for_socket(const char *path, pid_t pid, int seconds);

/* Parses @text, or the file @path when given, as one JSON object (owned by
 * @p); NULL if it is not one. */
JsonObject *ops_parse_json(JsonParser *p, const char *text, const char *path);

/* The program's pid from `@dir/cpr-exec status --json --socket @sock`
 * ("pid": under the keeper, a child of `cpr-exec run`, not its pid), or
 * -1. */
pid_t ops_status_pid(const char *dir, const char *sock);

/* @dir/cpr-exec and @dir/cprkit-workload as symlinks to this multi-call
 * binary. Returns 0 or a negative errno. */
int ops_link_self(const char *dir);

/* A member of @o (NULL-safe): a string ("" when absent or not a value),
 * an integer (-1 when absent), an object (NULL when absent or not one). */
const char *ops_json_str(JsonObject *o, const char *member);
gint64 ops_json_int(JsonObject *o, const char *member);
/* The "desc" of o's "error": {"class", "desc"} (the cause of a failure or
 * a rollback), or "". */
const char *ops_json_error(JsonObject *o);
JsonObject *ops_json_obj(JsonObject *o, const char *member);
