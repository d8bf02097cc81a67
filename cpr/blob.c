/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state blob frame: a fixed header, a rescue block with the rollback
 * command line, then the protobuf payload. Layout and rules are in
 * docs/state-format.md; in short (all integers little-endian):
 *
 *   0  magic "\x89CPRKIT\n"        8 bytes
 *   8  format major                u32   payload schema generation
 *  12  format minor                u32   informational
 *  16  header size                 u32   >= 48; readers skip what they
 *                                        do not know
 *  20  rescue size                 u32
 *  24  payload size                u64
 *  32  rescue CRC32C               u32
 *  36  payload CRC32C              u32
 *  40  flags                       u32   0; nonzero is refused
 *  44  header CRC32C               u32   over bytes 0..43
 *  48  rescue block, then payload
 *
 * The frame layout never changes with the major version, so any cprkit can
 * read the rescue block of any blob and roll back to the binary that wrote
 * it, even when it cannot read the payload.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "cprkit-internal.h"

static const uint8_t blob_magic[8] = {0x89, 'C', 'P', 'R', 'K', 'I', 'T', '\n'};

/* In .rodata of every binary or library that can read blobs; `cpr-exec
 * check --to BINARY` looks for it (docs/operations.md). */
__attribute__((used)) const char blob_format_marker[] =
    CPRKIT_FORMAT_MARKER_PREFIX G_STRINGIFY(CPRKIT_BUILD_FORMAT_MAJOR) ";";

#define BLOB_HEADER_SIZE 48u
#define BLOB_FORMAT_MINOR 0u

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Rescue block: u32 number of strings, then that many NUL-terminated
 * strings: the path to exec, then argv[0..]. An empty block (0 strings)
 * means "no rollback target". */
static size_t rescue_encoded_size(const struct command_line *cmd)
{
    size_t size = 4;

    if (!cmd || !cmd->path)
        return size;
    size += strlen(cmd->path) + 1;
    for (char **a = cmd->argv; a && *a; a++)
        size += strlen(*a) + 1;
    return size;
}

static void rescue_encode(const struct command_line *cmd, uint8_t *p)
{
    uint32_t count = 0;
    uint8_t *q = p + 4;

    if (cmd && cmd->path) {
        size_t len = strlen(cmd->path) + 1;

        memcpy(q, cmd->path, len);
        q += len;
        count++;
        for (char **a = cmd->argv; a && *a; a++) {
            len = strlen(*a) + 1;
            memcpy(q, *a, len);
            q += len;
            count++;
        }
    }
    put_le32(p, count);
}

static void put_header(uint8_t *h, size_t rescue_size, uint32_t rescue_crc,
                       uint64_t payload_size, uint32_t payload_crc)
{
    memcpy(h, blob_magic, sizeof(blob_magic));
    put_le32(h + 8, CPRKIT_BUILD_FORMAT_MAJOR);
    put_le32(h + 12, BLOB_FORMAT_MINOR);
    put_le32(h + 16, BLOB_HEADER_SIZE);
    put_le32(h + 20, (uint32_t)rescue_size);
    put_le64(h + 24, payload_size);
    put_le32(h + 32, rescue_crc);
    put_le32(h + 36, payload_crc);
    put_le32(h + 40, 0);
    put_le32(h + 44, crc32c(0, h, 44));
}

static int check_sizes(cprkit_ctx *ctx, uint64_t payload_size,
                       size_t rescue_size)
{
    if (payload_size > CPRKIT_BLOB_MAX_PAYLOAD)
        return ctx_fail(ctx, -EFBIG,
                        "state is %" PRIu64 " bytes, more than the %u a blob "
                        "may hold",
                        payload_size, CPRKIT_BLOB_MAX_PAYLOAD);
    if (rescue_size > CPRKIT_BLOB_MAX_RESCUE)
        return ctx_fail(ctx, -E2BIG,
                        "rollback command line is %zu bytes, limit %u",
                        rescue_size, CPRKIT_BLOB_MAX_RESCUE);
    return 0;
}

/* The frame around a payload of payload_size bytes, which pack() writes
 * where it is told: the blob in one allocation, sized once. */
typedef int (*payload_pack_fn)(cprkit_ctx *ctx, const Cprkit__State *state,
                               uint8_t *out, size_t size);

static int encode(cprkit_ctx *ctx, const Cprkit__State *state,
                  size_t payload_size, payload_pack_fn pack,
                  const struct command_line *rescue, uint8_t **ret_buf,
                  size_t *ret_size)
{
    size_t rescue_size = rescue_encoded_size(rescue);
    uint8_t *buf, *payload;
    size_t total;
    int r;

    r = check_sizes(ctx, payload_size, rescue_size);
    if (r < 0)
        return r;
    total = BLOB_HEADER_SIZE + rescue_size + payload_size;
    buf = malloc(total);
    if (!buf)
        return ctx_fail(ctx, -ENOMEM, "cannot allocate %zu byte blob", total);
    payload = buf + BLOB_HEADER_SIZE + rescue_size;
    rescue_encode(rescue, buf + BLOB_HEADER_SIZE);
    r = pack(ctx, state, payload, payload_size);
    if (r < 0) {
        free(buf);
        return ctx_fail(ctx, r, "packing the state: %s", strerror(-r));
    }
    put_header(buf, rescue_size, crc32c(0, buf + BLOB_HEADER_SIZE, rescue_size),
               payload_size, crc32c(0, payload, payload_size));
    *ret_buf = buf;
    *ret_size = total;
    return 0;
}

static int pack_state(cprkit_ctx *ctx, const Cprkit__State *state,
                      uint8_t *out, size_t size)
{
    return cprkit__state__pack(state, out) == size ? 0 : -EIO;
}

int blob_encode(cprkit_ctx *ctx, const Cprkit__State *state,
                const struct command_line *rescue, uint8_t **ret_buf,
                size_t *ret_size)
{
    return encode(ctx, state, cprkit__state__get_packed_size(state),
                  pack_state, rescue, ret_buf, ret_size);
}

/* fd-wire.c's pieces into the blob's buffer. */
struct buffer_sink {
    uint8_t *at, *end;
};

static int to_buffer(void *userdata, const uint8_t *data, size_t size)
{
    struct buffer_sink *b = userdata;

    if ((size_t)(b->end - b->at) < size)
        return -EIO;
    memcpy(b->at, data, size);
    b->at += size;
    return 0;
}

static int pack_with_registry(cprkit_ctx *ctx, const Cprkit__State *state,
                              uint8_t *out, size_t size)
{
    struct buffer_sink b = {out, out + size};
    int r = fd_wire_state_write(state, ctx->fds, to_buffer, &b);

    if (r == 0 && b.at != b.end)
        r = -EIO;
    return r;
}

static int check_without_fds(cprkit_ctx *ctx, const Cprkit__State *state)
{
    if (state->n_fds != 0)
        return ctx_fail(ctx, -EINVAL, "the state has fd entries of its own "
                                      "(state_build_without_fds() makes it)");
    return 0;
}

int blob_encode_with_registry(cprkit_ctx *ctx, const Cprkit__State *state,
                              const struct command_line *rescue,
                              uint8_t **ret_buf, size_t *ret_size)
{
    int r = check_without_fds(ctx, state);

    if (r < 0)
        return r;
    return encode(ctx, state, fd_wire_state_size(state, ctx->fds),
                  pack_with_registry, rescue, ret_buf, ret_size);
}

/* Checks everything up to the rescue block; the payload is checked by
 * blob_unpack_payload() so that the rescue block stays usable when only the
 * payload is bad or of an unknown major version. */
int blob_parse_frame(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                     struct blob_frame *ret)
{
    uint32_t header_size, rescue_size, flags;
    uint64_t payload_size, expected;

    if (size < BLOB_HEADER_SIZE)
        return ctx_fail(ctx, -EBADMSG,
                        "state blob truncated: %zu bytes, the header alone is "
                        "%u",
                        size, BLOB_HEADER_SIZE);
    if (memcmp(buf, blob_magic, sizeof(blob_magic)) != 0)
        return ctx_fail(ctx, -EBADMSG,
                        "not a cprkit state blob (bad magic)");
    if (get_le32(buf + 44) != crc32c(0, buf, 44))
        return ctx_fail(ctx, -EBADMSG, "state blob header checksum mismatch "
                                       "(corrupt blob)");

    header_size = get_le32(buf + 16);
    rescue_size = get_le32(buf + 20);
    payload_size = get_le64(buf + 24);
    flags = get_le32(buf + 40);
    if (header_size < BLOB_HEADER_SIZE || header_size > 4096)
        return ctx_fail(ctx, -EBADMSG, "state blob header size %u is invalid",
                        header_size);
    if (rescue_size < 4 || rescue_size > CPRKIT_BLOB_MAX_RESCUE)
        return ctx_fail(ctx, -EBADMSG,
                        "state blob rescue block size %u is invalid",
                        rescue_size);
    if (payload_size > CPRKIT_BLOB_MAX_PAYLOAD)
        return ctx_fail(ctx, -EFBIG,
                        "state blob payload of %" PRIu64
                        " bytes exceeds the %u byte limit",
                        payload_size, CPRKIT_BLOB_MAX_PAYLOAD);
    if (flags != 0)
        return ctx_fail(ctx, -EPROTONOSUPPORT,
                        "state blob uses frame flags 0x%x this cprkit does not "
                        "know",
                        flags);
    expected = (uint64_t)header_size + rescue_size + payload_size;
    if (size < expected)
        return ctx_fail(ctx, -EBADMSG,
                        "state blob truncated: %zu bytes, the header says %" PRIu64,
                        size, expected);
    if (size > expected)
        return ctx_fail(ctx, -EBADMSG,
                        "state blob has %" PRIu64 " trailing bytes",
                        (uint64_t)size - expected);
    if (get_le32(buf + 32) != crc32c(0, buf + header_size, rescue_size))
        return ctx_fail(ctx, -EBADMSG,
                        "state blob rescue block checksum mismatch");

    ret->major = get_le32(buf + 8);
    ret->minor = get_le32(buf + 12);
    ret->rescue = buf + header_size;
    ret->rescue_size = rescue_size;
    ret->payload = buf + header_size + rescue_size;
    ret->payload_size = payload_size;
    /* The payload CRC is in the header, which the frame does not keep. */
    ret->payload_crc = get_le32(buf + 36);
    return 0;
}

int blob_parse_rescue(cprkit_ctx *ctx, const struct blob_frame *frame,
                      struct command_line *ret)
{
    const uint8_t *p = frame->rescue + 4;
    const uint8_t *end = frame->rescue + frame->rescue_size;
    uint32_t count = get_le32(frame->rescue);
    g_autoptr(GPtrArray) strings = g_ptr_array_new_with_free_func(g_free);

    /* Every string needs at least its NUL byte. */
    if (count > frame->rescue_size - 4)
        return ctx_fail(ctx, -EBADMSG, "rescue block claims %u strings in %zu "
                                       "bytes",
                        count, frame->rescue_size);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));

        if (!nul)
            return ctx_fail(ctx, -EBADMSG,
                            "rescue block string %u is not terminated", i);
        g_ptr_array_add(strings, g_strndup((const char *)p, (gsize)(nul - p)));
        p = nul + 1;
    }
    if (p != end)
        return ctx_fail(ctx, -EBADMSG, "rescue block has trailing bytes");
    if (count == 1)
        return ctx_fail(ctx, -EBADMSG, "rescue block has a path but no argv");

    if (count == 0) {
        ret->path = NULL;
        ret->argv = NULL;
        return 0;
    }
    ret->path = g_ptr_array_steal_index(strings, 0);
    g_ptr_array_add(strings, NULL);
    ret->argv = (char **)g_ptr_array_free(TAKE_PTR(strings), false);
    return 0;
}

/* What a payload must be before anything reads it. */
static int check_payload(cprkit_ctx *ctx, const struct blob_frame *frame)
{
    if (frame->major != CPRKIT_BUILD_FORMAT_MAJOR)
        return ctx_fail(ctx, -EPROTONOSUPPORT,
                        "state blob format major version %u, this cprkit "
                        "(%s) reads version %u",
                        frame->major, PROJECT_VERSION,
                        CPRKIT_BUILD_FORMAT_MAJOR);
    if (frame->payload_crc != crc32c(0, frame->payload, frame->payload_size))
        return ctx_fail(ctx, -EBADMSG,
                        "state blob payload checksum mismatch (corrupt blob)");
    return 0;
}

int blob_unpack_payload(cprkit_ctx *ctx, const struct blob_frame *frame,
                        Cprkit__State **ret)
{
    Cprkit__State *state;
    int r;

    r = check_payload(ctx, frame);
    if (r < 0)
        return r;
    state = cprkit__state__unpack(NULL, frame->payload_size, frame->payload);
    if (!state)
        return ctx_fail(ctx, -EBADMSG,
                        "state blob payload is not a valid State message");
    *ret = state;
    return 0;
}

void decoded_state_clear(struct decoded_state *d)
{
    arena_clear(&d->arena);
    arena_clear(&d->fd_arena);
    *d = (struct decoded_state){0};
}

/* The fd entries by fd-wire.c, the rest by protobuf-c into an arena: no
 * allocation per entry or per message, and the whole freed at once. */
int blob_unpack_for_load(cprkit_ctx *ctx, const struct blob_frame *frame,
                         uint8_t *blob, struct decoded_state *ret)
{
    struct decoded_state d = {0};
    uint8_t *payload = blob + (frame->payload - blob);
    ProtobufCAllocator allocator = arena_protobuf_allocator(&d.arena);
    uint8_t *rest;
    size_t rest_size;
    int r;

    r = check_payload(ctx, frame);
    if (r < 0)
        return r;
    r = fd_wire_state_split(payload, frame->payload_size, &d, &rest,
                            &rest_size);
    if (r == 0) {
        d.state = cprkit__state__unpack(&allocator, rest_size, rest);
        if (!d.state)
            r = -EBADMSG;
    }
    if (r < 0) {
        decoded_state_clear(&d);
        if (r == -ENOMEM)
            return ctx_fail(ctx, r, "reading the state blob payload: out of "
                                    "memory");
        return ctx_fail(ctx, -EBADMSG,
                        "state blob payload is not a valid State message");
    }
    *ret = d;
    return 0;
}

int blob_decode(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                struct command_line *ret_rescue, Cprkit__State **ret_state)
{
    struct command_line rescue = {0};
    struct blob_frame frame;
    int r;

    r = blob_parse_frame(ctx, buf, size, &frame);
    if (r < 0)
        return r;
    r = blob_parse_rescue(ctx, &frame, &rescue);
    if (r < 0)
        return r;
    r = blob_unpack_payload(ctx, &frame, ret_state);
    if (r < 0) {
        command_line_clear(&rescue);
        return r;
    }
    if (ret_rescue)
        *ret_rescue = rescue;
    else
        command_line_clear(&rescue);
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, buf, size);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        size -= (size_t)n;
    }
    return 0;
}

static int new_memfd(cprkit_ctx *ctx, int *ret_fd)
{
    int fd = memfd_create("cprkit-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return ctx_fail(ctx, -errno, "memfd_create for the state blob: %m");
    *ret_fd = fd;
    return 0;
}

static int seal_memfd(cprkit_ctx *ctx, int fd)
{
    if (fcntl(fd, F_ADD_SEALS,
              F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK) < 0)
        return ctx_fail(ctx, -errno, "sealing the state blob memfd: %m");
    return 0;
}

/* The blob goes into a memfd sealed against any change, so neither the new
 * binary nor anything else holding the fd can alter the state in flight.
 * MFD_CLOEXEC: it loses CLOEXEC only inside the exec path. */
int blob_write_sealed_memfd(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                            int *ret_fd)
{
    _cleanup_close_ int fd = -EBADF;
    int r;

    r = new_memfd(ctx, &fd);
    if (r < 0)
        return r;
    r = write_all(fd, buf, size);
    if (r < 0)
        return ctx_fail(ctx, r, "writing the state blob: %s", strerror(-r));
    r = seal_memfd(ctx, fd);
    if (r < 0)
        return r;
    *ret_fd = TAKE_FD(fd);
    return 0;
}

/* fd-wire.c's pieces into the memfd, after the header's place, summed up
 * for the header that is written last. */
struct memfd_sink {
    int fd;
    uint64_t size;
    uint32_t crc;
};

static int to_memfd(void *userdata, const uint8_t *data, size_t size)
{
    struct memfd_sink *m = userdata;

    if (m->size + size > CPRKIT_BLOB_MAX_PAYLOAD)
        return -EFBIG;
    m->size += size;
    m->crc = crc32c(m->crc, data, size);
    return write_all(m->fd, data, size);
}

int blob_write_memfd_with_registry(cprkit_ctx *ctx,
                                   const Cprkit__State *state,
                                   const struct command_line *rescue,
                                   int *ret_fd, size_t *ret_size)
{
    size_t rescue_size = rescue_encoded_size(rescue);
    _cleanup_free_ uint8_t *block = NULL;
    _cleanup_close_ int fd = -EBADF;
    struct memfd_sink m = {0};
    ssize_t n;
    int r;

    r = check_without_fds(ctx, state);
    if (r < 0)
        return r;
    r = check_sizes(ctx, 0, rescue_size);
    if (r < 0)
        return r;
    /* The header's place, then the rescue block. */
    block = calloc(1, BLOB_HEADER_SIZE + rescue_size);
    if (!block)
        return ctx_fail(ctx, -ENOMEM, "cannot allocate the rescue block");
    rescue_encode(rescue, block + BLOB_HEADER_SIZE);
    r = new_memfd(ctx, &fd);
    if (r < 0)
        return r;
    m.fd = fd;
    r = write_all(fd, block, BLOB_HEADER_SIZE + rescue_size);
    if (r == 0)
        r = fd_wire_state_write(state, ctx->fds, to_memfd, &m);
    if (r == -EFBIG)
        return ctx_fail(ctx, r, "state is more than the %u bytes a blob may "
                                "hold",
                        CPRKIT_BLOB_MAX_PAYLOAD);
    if (r < 0)
        return ctx_fail(ctx, r, "writing the state blob: %s", strerror(-r));
    put_header(block, rescue_size,
               crc32c(0, block + BLOB_HEADER_SIZE, rescue_size), m.size,
               m.crc);
    n = pwrite(fd, block, BLOB_HEADER_SIZE, 0);
    if (n != BLOB_HEADER_SIZE)
        return ctx_fail(ctx, n < 0 ? -errno : -EIO,
                        "writing the state blob header: %s",
                        n < 0 ? strerror(errno) : "short write");
    r = seal_memfd(ctx, fd);
    if (r < 0)
        return r;
    *ret_fd = TAKE_FD(fd);
    if (ret_size)
        *ret_size = BLOB_HEADER_SIZE + rescue_size + m.size;
    return 0;
}

/* The size of the blob in fd, refusing what cannot be one. */
static int blob_fd_size(cprkit_ctx *ctx, int fd, size_t *ret)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return ctx_fail(ctx, -errno, "state blob fd %d: %m", fd);
    if (!S_ISREG(st.st_mode))
        return ctx_fail(ctx, -EBADF,
                        "state blob fd %d is not a memfd or regular file", fd);
    if ((uint64_t)st.st_size >
        (uint64_t)BLOB_HEADER_SIZE + CPRKIT_BLOB_MAX_RESCUE +
            CPRKIT_BLOB_MAX_PAYLOAD)
        return ctx_fail(ctx, -EFBIG,
                        "state blob is %jd bytes, larger than any valid blob",
                        (intmax_t)st.st_size);
    *ret = (size_t)st.st_size;
    return 0;
}

int blob_read_fd(cprkit_ctx *ctx, int fd, uint8_t **ret_buf, size_t *ret_size)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t size, done = 0;
    int r;

    r = blob_fd_size(ctx, fd, &size);
    if (r < 0)
        return r;
    buf = malloc(size ? size : 1);
    if (!buf)
        return ctx_fail(ctx, -ENOMEM, "cannot allocate %zu bytes", size);
    while (done < size) {
        ssize_t n = pread(fd, buf + done, size - done, (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ctx_fail(ctx, -errno, "reading the state blob: %m");
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *ret_buf = TAKE_PTR(buf);
    *ret_size = done;
    return 0;
}

/* A large blob is mapped rather than read: its pages are in memory
 * already, and a copy would add 1.3 MiB of fresh pages to the new binary's
 * blackout at 32 000 fds (1.5-4 us each on the VM of docs/performance.md).
 * A small one is read: a mapping and its undoing cost some 10 us, more
 * than copying 64 KiB. */
#define BLOB_MAP_MIN_SIZE (64u << 10)

/* Private and writable: blob_unpack_for_load() rearranges the payload in
 * place, which copies only the pages it writes. Mapped only from a memfd
 * sealed against shrinking (incoming.c checks), so that no access within
 * its size can fault; read where mapping fails. */
int blob_map_fd(cprkit_ctx *ctx, int fd, struct blob_buffer *ret)
{
    size_t size;
    void *p;
    int r;

    r = blob_fd_size(ctx, fd, &size);
    if (r < 0)
        return r;
    if (size >= BLOB_MAP_MIN_SIZE) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            *ret = (struct blob_buffer){p, size, true};
            return 0;
        }
        ctx_log(ctx, LOG_DEBUG, "cannot map the state blob (%s), reading it",
                strerror(errno));
    }
    r = blob_read_fd(ctx, fd, &ret->data, &ret->size);
    ret->mapped = false;
    return r;
}

void blob_buffer_release(struct blob_buffer *b)
{
    if (b->mapped)
        munmap(b->data, b->size);
    else
        free(b->data);
    *b = (struct blob_buffer){0};
}
