/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cpr-exec: shared parts of the verbs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* Exit codes, documented in docs/operations.md and docs/cpr-exec.1. */
enum {
    EXIT_OK = 0,          /* committed; or the verb did what was asked */
    EXIT_FAILED = 1,      /* failed, nothing changed (incl. blockers) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_ROLLED_BACK = 3, /* new binary rolled back: old version serving */
    EXIT_TIMEOUT = 4,     /* no result within --timeout: outcome unknown */
    EXIT_COMM = 5,        /* cannot reach the process, or connection lost */
};

/* Logging to stderr: "<N>" syslog prefixes when stderr is the journal
 * (JOURNAL_STREAM), else "cpr-exec: ". */
void log_msg(int priority, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
extern bool arg_verbose;

/* Parses a verb's options; on error prints it and returns false. */
bool parse_verb_options(const char *verb, const char *param,
                        const char *summary, GOptionEntry *entries, int *argc,
                        char ***argv);

/* The socket path from --socket or $CPRKIT_CONTROL_SOCKET, or NULL. */
const char *socket_path_or_env(const char *arg);

/* A connection to a control endpoint. */
struct control_conn {
    int fd;
    GString *buf;
};
int conn_open(const char *path, struct control_conn *ret);
void conn_close(struct control_conn *c);
int conn_send(struct control_conn *c, JsonNode *request);
/* Reads one JSON line; deadline is a g_get_monotonic_time() value.
 * Returns 0, -ETIMEDOUT, -ECONNRESET (EOF) or -EBADMSG. */
int conn_read(struct control_conn *c, int64_t deadline, JsonNode **ret);
/* Sends {"cmd": cmd, ...extra} and reads the final reply. */
int conn_call(const char *path, JsonObject *request, int timeout_s,
              JsonNode **ret, const char **ret_error);

/* Members of a reply, type-checked: the process behind a socket may send
 * anything, and json-glib's own getters abort (fatal-warnings) or print
 * nonsense on a wrong type. NULL / fallback when absent or of another
 * type; o may be NULL. */
const char *json_get_string(JsonObject *o, const char *member);
gint64 json_get_int(JsonObject *o, const char *member, gint64 fallback);
gboolean json_get_bool(JsonObject *o, const char *member, gboolean fallback);
JsonObject *json_get_object(JsonObject *o, const char *member);
JsonArray *json_get_array(JsonObject *o, const char *member);
/* Element i of a as an object, or NULL. */
JsonObject *json_array_object(JsonArray *a, guint i);
void print_json(JsonNode *node, bool pretty);
/* The "error" of a reply, {"class": ..., "desc": ...}: its members, or NULL
 * when there is none or it is not of that shape. */
const char *reply_error_class(JsonObject *o);
const char *reply_error_desc(JsonObject *o);
/* Sets o's "error" to {"class": error_class, "desc": desc}. */
void set_reply_error(JsonObject *o, const char *error_class, const char *desc);
/* {"ok":false,"result":result,"error":{"class","desc":error}}: a result the
 * client made up (timeout, lost connection, a reply it cannot use); the
 * class follows from result: "timeout" Timeout, "connection-lost"
 * ConnectionLost, anything else BadReply. */
JsonNode *local_result(const char *result, const char *error);
/* A verb that got no usable answer: logs why and, with json, prints
 * local_result(result, message) with "exit_code" so that scripts reading
 * stdout see the failure too. Returns code. */
int report_failure(bool json, int code, const char *result, const char *fmt,
                   ...) G_GNUC_PRINTF(4, 5);
/* The same for a conn_call() that failed with r. */
int call_failed(bool json, const char *verb, const char *socket, int r,
                const char *error);

int verb_run(int argc, char **argv);
int verb_upgrade(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_inspect(int argc, char **argv);
int verb_check(int argc, char **argv);
