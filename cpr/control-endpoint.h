/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The control endpoint's private parts, shared by its files (one per
 * concept): control.c (create, reclaim, free), control-takeover.c (the
 * socket file, stale ones replaced), control-socket.c (connections and
 * I/O), control-peer.c (who may connect), control-commands.c (requests
 * and their handlers), control-reply.c (JSON replies), control-upgrade.c
 * (the update's state machine). Not for shim/ or the tests: they use
 * control-internal.h. */
#pragma once

#include <sys/socket.h>

#include "state-json.h"

/* The phases of an update, one vocabulary for the events, the final
 * replies ("phase": where it ended or failed) and "status"
 * (docs/operations.md has the table). */
#define CONTROL_PHASE_REQUEST "request"   /* old binary: taking the request */
#define CONTROL_PHASE_BLOCKERS "blockers" /* old: cprkit_check_update() */
#define CONTROL_PHASE_PRESERVE "preserve" /* old: the connection is saved */
#define CONTROL_PHASE_EXEC "exec"         /* old: the upgrade function */
#define CONTROL_PHASE_RESTORING "restoring" /* new binary: reclaiming */
#define CONTROL_PHASE_ROLLING_BACK "rolling-back" /* old binary again */

/* The classes of "error": {"class": ..., "desc": ...}, QMP's convention: a
 * client decides on the class, never on the text. An enum, not strings,
 * so that a call that passes anything else does not build. Names in
 * control_error_class_name(); docs/operations.md has the table. */
enum control_error_class {
    CONTROL_ERROR_BAD_REQUEST,   /* malformed, or a member is wrong */
    CONTROL_ERROR_NOT_PERMITTED, /* SO_PEERCRED: another user */
    CONTROL_ERROR_BUSY,          /* an update under way, no free slot */
    CONTROL_ERROR_NOT_SUPPORTED, /* no upgrade function */
    CONTROL_ERROR_BLOCKED,       /* a blocker: nothing changed */
    CONTROL_ERROR_FAILED,        /* failed, nothing changed */
    CONTROL_ERROR_ROLLED_BACK,   /* the new binary handed back */
    CONTROL_ERROR_RESTARTED,     /* status: the keeper restarted it */
};

/* A client gets this long to take a reply off the socket. */
#define CONTROL_WRITE_TIMEOUT_MS 1000

struct control_client {
    int fd;
    GString *buf; /* bytes of an incomplete request line */
    uid_t uid;
    pid_t pid;
    uint64_t last_active_ns; /* accepted, or last bytes received */
    /* The "id" of the request being served, echoed in its replies and
     * events (borrowed from the request), or NULL. */
    const json_t *req_id;
};

struct cprkit_control {
    cprkit_ctx *ctx;
    char *path;
    int listen_fd;
    int epoll_fd;
    GPtrArray *clients; /* struct control_client * */

    cprkit_upgrade_fn upgrade_fn;
    void *upgrade_userdata;

    /* Started by an update that is not finished yet (not answered). */
    bool update_pending;
    /* The preserved connection of the client that asked for it, or -1,
     * and the "id" of its request (it crosses the exec in the
     * CONTROL_SECTION section), or NULL. */
    int pending_fd;
    json_t *pending_id;

    /* The updates this process and its predecessors know about, oldest
     * first, at most CONTROL_HISTORY_MAX, for "status" (array of entries,
     * docs/operations.md), and the one under way: {"binary", "phases"},
     * or NULL. Both cross the exec in CONTROL_SECTION. */
    json_t *history;
    json_t *current;
    uint64_t last_blackout_ns;
};

/* How many updates "status" remembers: enough to see what led to now, and
 * a bound on what every state blob carries. */
#define CONTROL_HISTORY_MAX 16

/* control.c: the running binary's path, or "" (to g_free()). */
char *control_self_exe(void);

/* control-takeover.c: a listening socket at path, mode 0600, replacing a
 * stale socket file. Returns: 0 or < 0 (-EADDRINUSE: a live socket). */
int control_bind_listen(cprkit_ctx *ctx, const char *path, int *ret_fd);

/* control-peer.c: whether the peer of fd may use the endpoint (root or
 * this process's user); a refused one is told why. Returns: 0 and the
 * credentials, or < 0 (-EPERM refused). */
int control_peer_authorize(cprkit_control *c, int fd, struct ucred *ret_cred);

/* control-socket.c */
void control_client_free(struct control_client *cl);
/* Answers every client but keep that an update is under way and ends
 * their connections (shutdown, not freed: the dispatch loop may still hold
 * them): the exec would close them without a word. */
void control_refuse_others(cprkit_control *c, struct control_client *keep,
                           const char *binary);
/* Writes one line; a client that does not read it within
 * CONTROL_WRITE_TIMEOUT_MS is given up (-ETIMEDOUT): the connection is
 * shut down, so later replies to it fail at once and it is dropped. */
int control_write_line(int fd, const char *line);

/* control-reply.c: replies, members in the order they are set. A NULL
 * string is written as null. */
int control_write_json(int fd, const json_t *reply);
/* A reply or event to a request: its "id" (QMP's convention: any JSON
 * value) is set as the last member unless id is NULL, and reply written. */
int control_write_reply(int fd, const json_t *id, json_t *reply);
/* CLOCK_REALTIME now, in ns. */
uint64_t control_realtime_ns(void);
void control_set_str(json_t *o, const char *member, const char *value);
void control_set_int(json_t *o, const char *member, json_int_t value);
void control_set_bool(json_t *o, const char *member, bool value);
/* "BadRequest", ...; NULL for a value out of range. */
const char *control_error_class_name(enum control_error_class error_class);
/* {"class": ..., "desc": desc}; desc NULL is "". */
json_t *control_error_new(enum control_error_class error_class,
                          const char *desc);
/* {"ok":false,"result":"error","error":{"class","desc"}}: a request
 * refused or not understood. */
int control_reply_error(int fd, const json_t *id,
                        enum control_error_class error_class, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
/* {"event":"phase","phase","pid","binary","monotonic_ns","realtime_ns"}:
 * progress of an upgrade, for its client (binary NULL: left out). */
int control_send_phase(int fd, const json_t *id, const char *phase,
                       const char *binary, uint64_t monotonic_ns,
                       uint64_t realtime_ns);

/* control-commands.c */
typedef void (*control_command_fn)(cprkit_control *c, struct control_client *cl,
                                   const json_t *req);
/* Serves one request line (without its newline). */
void control_handle_request(cprkit_control *c, struct control_client *cl,
                            const char *line, size_t len);
/* A string member, or NULL if absent; *ret_bad when present but not a
 * string. */
const char *control_get_string(const json_t *obj, const char *name,
                               bool *ret_bad);

/* control-upgrade.c: the "upgrade" command, and answering its client once
 * the program serves again (serving_ns: when, CLOCK_MONOTONIC). */
void control_cmd_upgrade(cprkit_control *c, struct control_client *cl,
                         const json_t *req);
void control_finish_update(cprkit_control *c, uint64_t serving_ns);
/* Sends a phase event to the client of an update (fd, with its request's
 * id) and records the phase in update ({"binary", "phases"}; NULL: not
 * recorded). */
void control_update_phase(json_t *update, int fd, const json_t *id,
                          const char *phase, const char *binary);
/* What the endpoint hands to the next binary in the state blob, in the
 * application section CONTROL_SECTION (JSON): the history, the update
 * under way and its request's id. Loaded by every binary started from a
 * state (update, rollback, keeper restart); anything unreadable is
 * ignored (it is informational). */
#define CONTROL_SECTION "cprkit-control"
void control_record_load(cprkit_control *c);
/* The phase of a binary started by an update or by the keeper:
 * "rolling-back" when the update is being undone (a rollback, or the
 * keeper restarted the program that took the request), else "restoring".
 * Valid once c->pending_fd is known. */
const char *control_incoming_phase(const cprkit_control *c);

/* control.c: hands the keeper what changed (cprkit_keeper_sync()); a
 * failure is the library's to log, the endpoint serves on. */
void control_keeper_sync(cprkit_control *c);
