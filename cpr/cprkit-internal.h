/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal interfaces of the libcprkit core (cpr/), shared with the
 * participants (preserve/ and restore/: VFIO, see preserve/vfio-internal.h),
 * shim/ and the unit tests. Not installed. The core never includes a
 * participant's header: it reaches them through participant.h only. */
#pragma once

/* The control library is built and upgraded apart from libcprkit.so and
 * uses only its public API (docs/design.md, Layers). */
#ifdef CPRKIT_PUBLIC_API_ONLY
#error "the control library uses cprkit.h only, not cprkit-internal.h"
#endif

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include <glib.h>

#include "cprkit/cprkit.h"
#include "cprkit-state.pb-c.h"
#include "macros.h"
#include "participant.h"

/* Refuse blobs bigger than this: a corrupt length must not make us allocate
 * gigabytes. 64 MiB holds millions of fd entries. */
#define CPRKIT_BLOB_MAX_PAYLOAD (64u << 20)
/* The rescue block holds one command line; Linux caps argv+envp at a few MiB
 * (ARG_MAX-ish), 1 MiB is plenty for argv alone. */
#define CPRKIT_BLOB_MAX_RESCUE (1u << 20)
#define CPRKIT_NAME_MAX 255

/* The format major this build writes and reads. Tests build a variant of
 * the core with another value to play an incompatible newer version. */
#ifndef CPRKIT_BUILD_FORMAT_MAJOR
#define CPRKIT_BUILD_FORMAT_MAJOR CPRKIT_FORMAT_MAJOR
#endif

/* Embedded by the blob reader in every build (cpr/blob.c), so that
 * `cpr-exec check --to BINARY` can tell which state format a binary reads
 * without running it: "CPRKIT-FORMAT-READS=<major>;". */
#define CPRKIT_FORMAT_MARKER_PREFIX "CPRKIT-FORMAT-READS="

/* Preserved fd names of cprkit's own libraries (the control endpoint's
 * "cprkit-control", "cprkit-control-client"): the commit does not wait for
 * them, the library claims them when the application calls it. */
#define CPRKIT_LIBRARY_FD_PREFIX "cprkit-"

/* Environment variable set on a rollback exec, carrying the reason. */
#define CPRKIT_ROLLBACK_REASON_ENV "CPRKIT_ROLLBACK_REASON"
/* CLOCK_MONOTONIC ns at the execve call, for the phase breakdown. */
#define CPRKIT_EXECVE_NS_ENV "CPRKIT_EXECVE_NS"

struct fd_identity {
    enum cprkit_fd_type type;
    uint64_t dev;
    uint64_t ino;
    uint64_t rdev;
    uint32_t mode_type; /* st_mode & S_IFMT */
    /* Eventfds share one anonymous inode: the kernel's eventfd-id
     * (/proc/self/fdinfo) tells them apart. Compared when both sides
     * have one. */
    bool has_anon_id;
    uint64_t anon_id;
};

struct fd_entry {
    char *name;
    int id;
    int fd;
    struct fd_identity identity;
    /* Incoming side: the application asked for it (find or save). */
    bool claimed;
    /* Loaded from a blob: the entry and its name live in the registry's
     * arena (ctx->fd_arena), not in allocations of their own. */
    bool in_arena;
    /* keyed_hash() of (name, id), for the index. */
    guint hash;
};

struct app_section {
    char *name;
    uint8_t *data;
    size_t size;
};

struct phase_timestamp {
    char *phase;
    uint64_t monotonic_ns;
};

/* A command line: path to exec plus a NULL-terminated argv. */
struct command_line {
    char *path;
    char **argv;
};

/* The connection to the keeper (cpr-exec run's parent process, which
 * keeps dups of the preserved fds and the last state; keeper-link.c). */
struct keeper_link {
    int fd;              /* our end, or -EBADF when not under a keeper */
    int pid;
    unsigned restarts;   /* as the keeper told us at start */
    char *last_cause;
    uint64_t last_at_us; /* CLOCK_REALTIME */
    uint64_t synced_serial;
    bool synced;
    bool broken;         /* a send failed: the keeper is gone */
    uint32_t commit_timeout_ms;
    uint64_t died_ns;    /* when the keeper saw our predecessor die */
};

/* arena.c: a bump allocator; everything it gave goes at once with
 * arena_clear(). A zeroed struct arena is an empty one. */
struct arena_chunk;
struct arena {
    struct arena_chunk *chunks; /* the one being cut first */
    size_t next_size;
};
/* NULL when out of memory. arena_alloc() aligns as malloc() does. */
void *arena_alloc(struct arena *a, size_t size);
void *arena_alloc_array(struct arena *a, size_t n, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t len);
void arena_clear(struct arena *a);
/* Clears *to, gives it what *from holds and empties *from. */
void arena_move(struct arena *to, struct arena *from);
/* For protobuf-c's unpack: allocations from a, frees do nothing. */
ProtobufCAllocator arena_protobuf_allocator(struct arena *a);

/* fd-index.c: the registry's index, (name, id) -> entry, on the hash the
 * entry keeps. Zeroed, an empty one. */
struct fd_index {
    struct fd_entry **entries; /* slots; NULL: free */
    size_t mask;               /* number of slots - 1 */
    size_t count;
};
/* Room for n entries in all, so that adding them moves nothing. */
int fd_index_reserve(struct fd_index *x, size_t n);
struct fd_entry *fd_index_lookup(const struct fd_index *x, guint hash,
                                 const char *name, int id);
/* -EEXIST when an entry of the same (name, id) is in, -ENOMEM. */
int fd_index_add(struct fd_index *x, struct fd_entry *e);
void fd_index_remove(struct fd_index *x, const struct fd_entry *e);
void fd_index_clear(struct fd_index *x);

struct cprkit_ctx {
    GPtrArray *fds;        /* struct fd_entry *, in save order */
    struct fd_index fd_index; /* the same entries, by (name, id) */
    /* The entries of the last blob loaded and their names (in_arena);
     * entries saved later are allocated one by one. */
    struct arena fd_arena;
    GPtrArray *sections;   /* struct app_section *, in put order */
    GHashTable *section_index; /* name -> struct app_section * (not owned) */
    /* struct phase_timestamp *: what the previous binary recorded (read
     * with cprkit_timestamp()), and what this one records for the next. */
    GPtrArray *timestamps;
    GPtrArray *update_timestamps;

    cprkit_log_fn log_fn;
    void *log_userdata;
    int log_max_priority;
    bool log_priority_from_env; /* CPRKIT_LOG: the API does not change it */
    char *last_error;

    uint64_t generation;
    /* cprkit_set_rollback_binary(): runs instead of /proc/self/exe on a
     * rollback or a keeper's restart; NULL: /proc/self/exe. */
    char *rollback_binary;

    /* Incoming side. */
    bool incoming;        /* loaded, not yet committed */
    bool rollback;        /* the loaded state came back from a rollback */
    char *rollback_reason;
    int blob_fd;          /* the incoming blob memfd, or -EBADF */
    /* Where to go back to; read from the frame even if the payload failed. */
    struct command_line rescue;
    bool have_rescue;

    /* struct update_blocker *: why no update may start now (check.c). */
    GPtrArray *blockers;
    /* Incoming: every fd number the blob lists, kept even when the load
     * failed and forgot them: a rollback hands them all back. */
    GArray *listed_fds; /* int */

    /* Bumped by every change to what a state would hold (fds, sections,
     * participant records), so the keeper is handed a new state only when
     * there is one (keeper-link.c). */
    uint64_t state_serial;
    /* Started by the keeper after the previous process died (the cause in
     * restart_reason): what that process left may be half-changed. */
    bool restarted;
    char *restart_reason;
    struct keeper_link keeper;

    /* Private state of every participant, in priority order
     * (cpr/participant.c). */
    struct participant_slot *participants;
    unsigned n_participants;
};

/* context.c */
int ctx_fail(cprkit_ctx *ctx, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A CPRKIT_LOG value as a syslog priority (0-7), or -EINVAL. */
int log_priority_parse(const char *s);
void ctx_log(cprkit_ctx *ctx, int priority, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ctx_clear_error(cprkit_ctx *ctx);
uint64_t monotonic_now_ns(void);

/* keyed-hash.c: hashes for indexes of names from a blob, keyed per process
 * so that a crafted blob cannot make them collide (SipHash-1-3). */
guint keyed_hash(const void *data, size_t len, uint64_t extra);
guint keyed_str_hash(gconstpointer s);
void timestamps_set(GPtrArray *timestamps, const char *phase, uint64_t ns);
void phase_timestamp_free(struct phase_timestamp *t);
void command_line_clear(struct command_line *cmd);
bool name_is_valid(const char *name);

/* crc32c.c */
uint32_t crc32c(uint32_t crc, const void *buf, size_t size);
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t size);

/* fdident.c */
int fd_identify(int fd, struct fd_identity *ret);
/* true when fd is known, cheaply, to still be the object saved as @saved
 * (see fdident.c); false means: run fd_identify() and compare. */
bool fd_unchanged_fast(int fd, const struct fd_identity *saved);
bool fd_identity_equal(const struct fd_identity *a, const struct fd_identity *b);
/* The value of a "<field>:" line of /proc/self/fdinfo/<fd> (leading blanks
 * dropped) into ret; -ENOENT when the kernel shows no such line. */
int fd_fdinfo_field(int fd, const char *field, char *ret, size_t size);
/* "eventfd (eventfd-id 4)", "memfd (ino 1234)": for messages. */
const char *fd_identity_describe(const struct fd_identity *id, char *buf,
                                 size_t size);
int fd_set_cloexec(int fd, bool cloexec);

/* fdreg.c */
struct fd_entry *fdreg_lookup(cprkit_ctx *ctx, const char *name, int id);
const struct fd_entry *fdreg_lookup_fd(cprkit_ctx *ctx, int fd);
const struct fd_entry *fdreg_lookup_backing(cprkit_ctx *ctx, uint64_t dev,
                                            uint64_t ino);
int fdreg_add(cprkit_ctx *ctx, const char *name, int id, int fd,
              const struct fd_identity *identity, bool claimed);
void fd_entry_free(struct fd_entry *e);
int fdreg_check_unchanged(cprkit_ctx *ctx);
int fdreg_set_cloexec_all(cprkit_ctx *ctx, bool cloexec);
void fdreg_clear(cprkit_ctx *ctx);
/* Loading a blob into the registry, emptied by fdreg_clear(): it takes
 * over arena, where the loaded entries and their names are, and makes
 * room for n entries (-ENOMEM); then fdreg_insert_loaded() adds each,
 * -EEXIST for a (name, id) it has already. */
int fdreg_adopt(cprkit_ctx *ctx, struct arena *arena, size_t n);
int fdreg_insert_loaded(cprkit_ctx *ctx, struct fd_entry *e);
/* keyed_hash() of an entry's (name, id). */
guint fd_entry_hash(gconstpointer entry);

/* sections.c */
void app_section_free(struct app_section *s);
struct app_section *section_lookup(cprkit_ctx *ctx, const char *name);
/* Forgets every section (the index first: it points into them). */
void sections_clear(cprkit_ctx *ctx);

/* blob.c: the frame around the payload. */
extern const char blob_format_marker[];
struct blob_frame {
    uint32_t major;
    uint32_t minor;
    const uint8_t *rescue;
    size_t rescue_size;
    const uint8_t *payload;
    size_t payload_size;
    uint32_t payload_crc;
};
int blob_encode(cprkit_ctx *ctx, const Cprkit__State *state,
                const struct command_line *rescue, uint8_t **ret_buf,
                size_t *ret_size);
int blob_parse_frame(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                     struct blob_frame *ret);
int blob_parse_rescue(cprkit_ctx *ctx, const struct blob_frame *frame,
                      struct command_line *ret);
int blob_unpack_payload(cprkit_ctx *ctx, const struct blob_frame *frame,
                        Cprkit__State **ret);
/* A payload decoded for state_load_decoded(): the fd entries read by
 * fd-wire.c, everything else unpacked by protobuf-c, all in two arenas.
 * Zeroed, an empty one; decoded_state_clear() frees what it holds. */
struct decoded_state {
    struct arena arena;    /* state, and the reading's own memory */
    Cprkit__State *state;  /* every field but fds (n_fds is 0) */
    struct arena fd_arena; /* fds and their names: the registry keeps it */
    struct fd_entry *fds;  /* as read; not checked yet */
    size_t n_fds;
};
/* blob_unpack_payload() for loading, at a fraction of the time and memory
 * for many fds. blob is the buffer frame was parsed from: the payload's
 * bytes are overwritten. */
int blob_unpack_for_load(cprkit_ctx *ctx, const struct blob_frame *frame,
                         uint8_t *blob, struct decoded_state *ret);
void decoded_state_clear(struct decoded_state *d);
/* blob_encode() of state (without fd entries: state_build_without_fds())
 * with the registry's entries as its fds. The same bytes. */
int blob_encode_with_registry(cprkit_ctx *ctx, const Cprkit__State *state,
                              const struct command_line *rescue,
                              uint8_t **ret_buf, size_t *ret_size);
/* blob_encode_with_registry() then blob_write_sealed_memfd(), written into
 * the memfd as it is encoded, without the blob in a buffer. ret_size (may
 * be NULL): the blob's size. */
int blob_write_memfd_with_registry(cprkit_ctx *ctx,
                                   const Cprkit__State *state,
                                   const struct command_line *rescue,
                                   int *ret_fd, size_t *ret_size);
int blob_write_sealed_memfd(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                            int *ret_fd);
int blob_read_fd(cprkit_ctx *ctx, int fd, uint8_t **ret_buf, size_t *ret_size);
/* blob_read_fd() of a memfd sealed against shrinking, into a writable
 * buffer: a large blob is mapped (privately) instead of copied. */
struct blob_buffer {
    uint8_t *data;
    size_t size;
    bool mapped;
};
int blob_map_fd(cprkit_ctx *ctx, int fd, struct blob_buffer *ret);
void blob_buffer_release(struct blob_buffer *b);
/* Full decode: frame, rescue block and payload. */
int blob_decode(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                struct command_line *ret_rescue, Cprkit__State **ret_state);

/* fd-wire.c: State.fds written and read without protobuf-c's generic
 * code. The payload of state (n_fds 0) with fds (struct fd_entry *) as its
 * fd entries: its size, and its bytes handed to sink in pieces (of at most
 * 64 KiB, but for a larger application section); a negative errno of the
 * sink stops the writing and is returned. And the reverse: the entries of
 * a payload into d->fds, the other fields moved together in place (in
 * *ret_rest, for protobuf-c); -EBADMSG where protobuf-c would refuse the
 * payload, -ENOMEM. */
typedef int (*fd_wire_sink_fn)(void *userdata, const uint8_t *data,
                               size_t size);
size_t fd_wire_state_size(const Cprkit__State *state, const GPtrArray *fds);
int fd_wire_state_write(const Cprkit__State *state, const GPtrArray *fds,
                        fd_wire_sink_fn sink, void *userdata);
int fd_wire_state_split(uint8_t *payload, size_t size, struct decoded_state *d,
                        uint8_t **ret_rest, size_t *ret_rest_size);

/* state.c: between the context and the protobuf message. */
int state_build(cprkit_ctx *ctx, uint64_t generation, Cprkit__State **ret);
/* state_build() without the fd entries, which blob_encode_with_registry()
 * and blob_write_memfd_with_registry() write from the registry. */
int state_build_without_fds(cprkit_ctx *ctx, uint64_t generation,
                            Cprkit__State **ret);
void state_build_free(Cprkit__State *state);
int state_load(cprkit_ctx *ctx, const Cprkit__State *state);
/* state_load() of a decoded payload; d->fd_arena goes to the registry. */
int state_load_decoded(cprkit_ctx *ctx, struct decoded_state *d);
/* An entry's id, fd and identity as a blob's FdEntry gives them (the name
 * aside): fd -1 when it has none; without an identity, or with an fd type
 * this build does not know, CPRKIT_FD_OTHER (fd_type_from_blob()). */
void fd_entry_fill(struct fd_entry *e, const Cprkit__FdEntry *m);
enum cprkit_fd_type fd_type_from_blob(bool has_identity, bool has_type,
                                      int32_t type);
/* How many timestamps of a blob a load keeps. */
#define STATE_MAX_TIMESTAMPS 64

/* state.c: memory owned by a built State, freed by state_build_free(). */
void *state_alloc(Cprkit__State *state, size_t size);
/* For the participants' save: an array of n pointers to zeroed messages of
 * msg_size bytes, and the (name, id) reference of a registered fd (-ENOENT
 * with a message naming @what when fd is not preserved), both owned by
 * the State. */
void **state_message_array(Cprkit__State *state, size_t n, size_t msg_size);
int state_fd_ref(cprkit_ctx *ctx, Cprkit__State *state, int fd,
                 const char *what, Cprkit__FdRef **ret);
/* For the participants' load, after the registry was loaded: the fd a
 * record's reference names, of the given type (CPRKIT_FD_ANY: any);
 * -EBADMSG with a message naming @what for a reference the blob does not
 * carry or of another type. */
int state_fd_resolve(cprkit_ctx *ctx, const Cprkit__FdRef *ref,
                     enum cprkit_fd_type type, const char *what, int *ret_fd);

/* exec.c. restart: the command line the keeper runs if what execve
 * starts dies before it commits (the rollback target). */
int exec_with_blob(cprkit_ctx *ctx, const char *path, char *const argv[],
                   char *const envp[], int blob_fd, const char *rollback_reason,
                   bool skip_missing_fds, const struct command_line *restart);
int command_line_of_self(cprkit_ctx *ctx, struct command_line *ret);
int exec_check_target(cprkit_ctx *ctx, const char *path);
/* cprkit_check_update() for cprkit_exec(): with own_rollback false, the
 * caller names its rollback command line, so this binary's file on disk
 * does not matter. */
int check_update(cprkit_ctx *ctx, const char *path, bool own_rollback);
int check_rollback_target(cprkit_ctx *ctx);

/* binary-probe.c: the state formats a binary reads once exec'd, found by
 * reading it and the objects ld.so would load with it, never running
 * them. */
struct binary_probe {
    char *reader;     /* the file the format markers are in, or NULL */
    GArray *formats;  /* int64_t majors, empty when reader is NULL */
    bool is_script;   /* "#!": what it runs is unknown */
};
int binary_probe(const char *path, struct binary_probe *ret, char **error);
/* binary_probe() and the verdict: 0 when path reads the format this
 * build writes, else a negative errno and a message naming path. ret is
 * filled either way, for display; clear it. */
int binary_probe_check(const char *path, struct binary_probe *ret,
                       char **error);
void binary_probe_clear(struct binary_probe *p);

/* keeper-link.c */
#define KEEPER_DEFAULT_COMMIT_TIMEOUT_MS 30000u
static inline void ctx_state_changed(cprkit_ctx *ctx)
{
    ctx->state_serial++;
}
void keeper_link_init(struct keeper_link *k);
void keeper_link_clear(struct keeper_link *k);
/* Reads the keeper's variables (and the restart cause) and unsets them. */
void keeper_attach(cprkit_ctx *ctx);
/* "hello": this binary started, and whether it loaded a state. */
void keeper_hello(cprkit_ctx *ctx, bool loaded);
/* Around execve: the keeper gets the exec's blob and fds and the restart
 * command line; env gets our variables (g_strdup'ed "NAME=value"). */
void keeper_handoff(cprkit_ctx *ctx, int blob_fd,
                    const struct command_line *restart, GPtrArray *env);
void keeper_handoff_failed(cprkit_ctx *ctx);
bool keeper_env_is_ours(const char *entry);

/* check.c: the pre-flight (cprkit_check_update()). */
char *proc_status_field(const char *field);
/* Registered blockers, as QEMU's migrate_add_blocker(): a part of the
 * program that knows, when it sets something up, that this cannot cross an
 * update says so with why; every check and update is refused, listing
 * them, until it is removed. */
struct update_blocker {
    char *owner;  /* who registered it, e.g. a participant's name */
    char *reason; /* for the operator: what, and what to do about it */
};
void update_blocker_free(struct update_blocker *b);
int ctx_add_blocker(cprkit_ctx *ctx, const char *owner, const char *reason);
int ctx_remove_blocker(cprkit_ctx *ctx, const char *owner, const char *reason);
