/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* State blob: framing, checksums, round trips, the golden file and every
 * way a blob can be bad. */
#include <sys/stat.h>

#include "cprkit-internal.h"
#include "decode-both.h"
#include "test-util.h"

static cprkit_ctx *new_ctx(void)
{
    cprkit_ctx *ctx;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    return ctx;
}

static void test_crc32c_vectors(void)
{
    static const char check[] = "123456789";
    /* RFC 3720 B.4: 32 bytes of zeros. */
    uint8_t zeros[32] = {0};

    g_assert_cmphex(crc32c(0, check, 9), ==, 0xE3069283);
    g_assert_cmphex(crc32c_portable(0, check, 9), ==, 0xE3069283);
    g_assert_cmphex(crc32c(0, zeros, 32), ==, 0x8A9136AA);
    g_assert_cmphex(crc32c_portable(0, zeros, 32), ==, 0x8A9136AA);
    g_assert_cmphex(crc32c(0, "", 0), ==, 0);
    /* Chunked equals whole, in both implementations. */
    g_assert_cmphex(crc32c(crc32c(0, check, 4), check + 4, 5), ==, 0xE3069283);
    g_assert_cmphex(crc32c_portable(crc32c_portable(0, check, 5), check + 5, 4),
                    ==, 0xE3069283);
}

/* A context with one entry of every kind the blob holds. Real fds where
 * the host can make them; VFIO ones by their recorded identity. */
struct sample {
    cprkit_ctx *ctx;
    int fds[8];
    int n_fds;
};

static void sample_init(struct sample *s)
{
    static const uint8_t binary[] = {0, 1, 2, 0xff, 0};
    const struct fd_identity vfio_container = {
        CPRKIT_FD_VFIO_CONTAINER, 5, 77, (10 << 8) | 196, S_IFCHR};
    const struct fd_identity vfio_device = {CPRKIT_FD_VFIO_DEVICE, 14, 9, 0, 0};
    int p[2], sv[2];

    s->ctx = new_ctx();
    s->n_fds = 0;
    s->fds[s->n_fds++] = make_memfd_with("ram", "guest memory");
    s->fds[s->n_fds++] = eventfd(0, EFD_CLOEXEC);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    s->fds[s->n_fds++] = p[0];
    s->fds[s->n_fds++] = p[1];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    s->fds[s->n_fds++] = sv[0];
    s->fds[s->n_fds++] = sv[1];
    s->fds[s->n_fds++] = open("/dev/null", O_RDWR | O_CLOEXEC);
    s->fds[s->n_fds++] = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    g_assert_cmpint(cprkit_fd_save(s->ctx, "ram", 0, s->fds[0]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "irq", 3, s->fds[1]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "pipe", 0, s->fds[2]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "pipe", 1, s->fds[3]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "sock", 0, s->fds[4]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "sock", -1, s->fds[5]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "null", 0, s->fds[6]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(s->ctx, "root dir", 0, s->fds[7]), ==, 0);
    g_assert_cmpint(fdreg_add(s->ctx, "vfio-container", 0, 900, &vfio_container,
                              true), ==, 0);
    g_assert_cmpint(fdreg_add(s->ctx, "vfio-device", 2, 901, &vfio_device, true),
                    ==, 0);

    g_assert_cmpint(cprkit_section_put(s->ctx, "model", "state v1", 8), ==, 0);
    g_assert_cmpint(cprkit_section_put(s->ctx, "binary", binary, sizeof(binary)),
                    ==, 0);
    g_assert_cmpint(cprkit_section_put(s->ctx, "empty", NULL, 0), ==, 0);
    timestamps_set(s->ctx->update_timestamps, "update-start", 111);
    timestamps_set(s->ctx->update_timestamps, "exec", 222);
}

static void sample_clear(struct sample *s)
{
    for (int i = 0; i < s->n_fds; i++)
        close(s->fds[i]);
    cprkit_free(s->ctx);
}

static char *rescue_argv[] = {"old-binary", "--flag", "", "two words", NULL};
static const struct command_line sample_rescue = {"/usr/bin/old-binary",
                                                  rescue_argv};

/* Encodes the sample into a malloc'd blob. */
static uint8_t *sample_blob(struct sample *s, uint64_t generation,
                            size_t *ret_size)
{
    Cprkit__State *state;
    uint8_t *buf;

    g_assert_cmpint(state_build(s->ctx, generation, &state), ==, 0);
    g_assert_cmpint(blob_encode(s->ctx, state, &sample_rescue, &buf, ret_size),
                    ==, 0);
    state_build_free(state);
    return buf;
}

static void test_roundtrip_every_kind(void)
{
    struct sample s;
    struct command_line rescue = {0};
    Cprkit__State *state;
    cprkit_ctx *loaded = new_ctx();
    size_t size;
    g_autofree uint8_t *buf = NULL;
    const void *data;
    size_t data_size;

    sample_init(&s);
    buf = sample_blob(&s, 5, &size);
    g_assert_cmpint(blob_decode(loaded, buf, size, &rescue, &state), ==, 0);
    g_assert_cmpint(state_load(loaded, state), ==, 0);
    cprkit__state__free_unpacked(state, NULL);

    g_assert_cmpuint(cprkit_generation(loaded), ==, 5);
    g_assert_cmpuint(loaded->fds->len, ==, s.ctx->fds->len);
    for (guint i = 0; i < s.ctx->fds->len; i++) {
        const struct fd_entry *a = g_ptr_array_index(s.ctx->fds, i);
        const struct fd_entry *b = g_ptr_array_index(loaded->fds, i);

        g_assert_cmpstr(a->name, ==, b->name);
        g_assert_cmpint(a->id, ==, b->id);
        g_assert_cmpint(a->fd, ==, b->fd);
        g_assert_true(fd_identity_equal(&a->identity, &b->identity));
        g_assert_false(b->claimed);
    }
    /* The kinds the host could make are what we think they are. */
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 0))
                        ->identity.type, ==, CPRKIT_FD_MEMFD);
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 1))
                        ->identity.type, ==, CPRKIT_FD_EVENTFD);
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 2))
                        ->identity.type, ==, CPRKIT_FD_PIPE);
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 4))
                        ->identity.type, ==, CPRKIT_FD_SOCKET);
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 6))
                        ->identity.type, ==, CPRKIT_FD_CHAR_DEVICE);
    g_assert_cmpint(((struct fd_entry *)g_ptr_array_index(loaded->fds, 7))
                        ->identity.type, ==, CPRKIT_FD_DIRECTORY);

    g_assert_cmpint(cprkit_section_get(loaded, "model", &data, &data_size), ==, 0);
    g_assert_cmpmem(data, data_size, "state v1", 8);
    g_assert_cmpint(cprkit_section_get(loaded, "binary", &data, &data_size), ==, 0);
    g_assert_cmpmem(data, data_size, "\0\1\2\xff\0", 5);
    g_assert_cmpint(cprkit_section_get(loaded, "empty", &data, &data_size), ==, 0);
    g_assert_cmpuint(data_size, ==, 0);

    g_assert_cmpuint(cprkit_timestamp(loaded, "update-start"), ==, 111);
    g_assert_cmpuint(cprkit_timestamp(loaded, "exec"), ==, 222);
    g_assert_cmpuint(cprkit_timestamp(loaded, "nonexistent"), ==, 0);

    g_assert_cmpstr(rescue.path, ==, sample_rescue.path);
    g_assert_cmpstrv(rescue.argv, sample_rescue.argv);

    command_line_clear(&rescue);
    cprkit_free(loaded);
    sample_clear(&s);
}

/* decode(encode(x)) re-encodes to the same bytes. */
static void assert_recodes_identically(const uint8_t *buf, size_t size)
{
    cprkit_ctx *ctx = new_ctx();
    struct command_line rescue = {0};
    Cprkit__State *state;
    g_autofree uint8_t *again = NULL;
    size_t again_size;

    g_assert_cmpint(blob_decode(ctx, buf, size, &rescue, &state), ==, 0);
    g_assert_cmpint(blob_encode(ctx, state, &rescue, &again, &again_size), ==, 0);
    g_assert_cmpmem(again, again_size, buf, size);
    cprkit__state__free_unpacked(state, NULL);
    command_line_clear(&rescue);
    cprkit_free(ctx);
}

static void test_recode_identical(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    assert_recodes_identically(buf, size);
    sample_clear(&s);
}

static uint8_t *read_golden(const char *name, size_t *ret_size)
{
    g_autofree char *path = g_test_build_filename(G_TEST_DIST, "data", name, NULL);
    g_autoptr(GError) error = NULL;
    char *contents;
    gsize size;

    g_assert_true(g_file_get_contents(path, &contents, &size, &error));
    g_assert_no_error(error);
    *ret_size = size;
    return (uint8_t *)contents;
}

/* The committed golden blob of format version 1 must decode, with exactly
 * the values make-golden.c put there, for as long as cprkit exists. */
static void test_golden_v1(void)
{
    cprkit_ctx *ctx = new_ctx();
    struct command_line rescue = {0};
    Cprkit__State *state;
    size_t size;
    g_autofree uint8_t *buf = read_golden("state-v1.golden", &size);

    g_assert_cmpint(blob_decode(ctx, buf, size, &rescue, &state), ==, 0);
    g_assert_cmpstr(rescue.path, ==, "/usr/bin/example-vmm");
    g_assert_cmpuint(g_strv_length(rescue.argv), ==, 5);
    g_assert_cmpstr(rescue.argv[4], ==, "arg with spaces");
    g_assert_cmpuint(state->generation, ==, 3);
    g_assert_cmpuint(state->n_fds, ==, 11);
    g_assert_cmpstr(state->fds[3]->name, ==, "vfio-group");
    g_assert_cmpint(state->fds[3]->id, ==, 7);
    g_assert_cmpint(state->fds[3]->identity->type, ==,
                    CPRKIT__FD_TYPE__FD_TYPE_VFIO_GROUP);
    g_assert_cmpint(state->fds[10]->id, ==, -3);
    g_assert_cmpuint(state->n_sections, ==, 3);
    g_assert_cmpmem(state->sections[1]->data.data, state->sections[1]->data.len,
                    "\0\xff\x10\0\x7f", 5);
    g_assert_cmpuint(state->n_timestamps, ==, 2);
    g_assert_cmpuint(state->timestamps[1]->monotonic_ns, ==, 5000250000ull);
    g_assert_cmpuint(state->writer_pid, ==, 4242);
    g_assert_cmpuint(state->n_dma_mappings, ==, 1);
    g_assert_cmphex(state->dma_mappings[0]->iova, ==, 0x100000);
    g_assert_cmpstr(state->dma_mappings[0]->backing->name, ==, "ram");
    g_assert_true(state->dma_mappings[0]->vaddr_suspended);
    g_assert_cmpuint(state->n_irqs, ==, 1);
    g_assert_cmpint(state->irqs[0]->kind, ==, CPRKIT__IRQ_KIND__IRQ_KIND_MSI);
    g_assert_cmphex(state->irqs[0]->vectors[0]->msi_data, ==, 0x4021);
    g_assert_cmpstr(state->vfio_devices[0]->bdf, ==, "0000:00:03.0");
    g_assert_cmpstr(state->vfio_groups[0]->container->name, ==, "vfio-container");
    g_assert_cmpstr(state->ram_blocks[0]->fd->name, ==, "ram");

    /* The context accepts it too. */
    g_assert_cmpint(state_load(ctx, state), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 11);

    cprkit__state__free_unpacked(state, NULL);
    command_line_clear(&rescue);
    cprkit_free(ctx);
    assert_recodes_identically(buf, size);
}

static int decode_expect_failure(const uint8_t *buf, size_t size, int expected)
{
    cprkit_ctx *ctx = new_ctx();
    struct command_line rescue = {0};
    Cprkit__State *state = NULL;
    int r = blob_decode(ctx, buf, size, &rescue, &state);

    g_assert_cmpint(r, <, 0);
    if (expected)
        g_assert_cmpint(r, ==, expected);
    g_assert_null(state);
    g_assert_null(rescue.path);
    g_assert_cmpstr(cprkit_last_error(ctx), !=, "");
    cprkit_free(ctx);
    return r;
}

static void test_truncated(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    /* Every possible truncation, each in its own exact-size buffer so ASan
     * sees any read past the end. */
    for (size_t len = 0; len < size; len++) {
        g_autofree uint8_t *cut = g_memdup2(buf, len ? len : 1);
        decode_expect_failure(cut, len, -EBADMSG);
    }
    sample_clear(&s);
}

static void test_bitflips(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    /* CRC32C catches every single-bit error; whichever check fires, a
     * flipped blob must never decode. */
    for (size_t byte = 0; byte < size; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[byte] ^= (uint8_t)(1u << bit);
            decode_expect_failure(buf, size, 0);
            buf[byte] ^= (uint8_t)(1u << bit);
        }
    }
    sample_clear(&s);
}

static void put_le32_at(uint8_t *buf, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        buf[off + i] = (uint8_t)(v >> (8 * i));
}

static void put_le64_at(uint8_t *buf, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        buf[off + i] = (uint8_t)(v >> (8 * i));
}

/* After editing header fields, make the header checksum right again so the
 * decoder gets past it to the check under test. */
static void fix_header_crc(uint8_t *buf)
{
    put_le32_at(buf, 44, crc32c(0, buf, 44));
}

static void test_wrong_magic(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;
    cprkit_ctx *ctx = new_ctx();
    struct blob_frame frame;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    memcpy(buf, "{\"json\"", 7);
    g_assert_cmpint(blob_parse_frame(ctx, buf, size, &frame), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "bad magic"));
    cprkit_free(ctx);
    sample_clear(&s);
}

/* A blob of a newer major version: the payload is refused with a clear
 * message, but the rescue block still reads, so the new binary can roll
 * back to the one that wrote it. */
static void test_future_version(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;
    cprkit_ctx *ctx = new_ctx();
    struct blob_frame frame;
    struct command_line rescue = {0};
    Cprkit__State *state = NULL;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    put_le32_at(buf, 8, CPRKIT_FORMAT_MAJOR + 1);
    fix_header_crc(buf);
    g_assert_cmpint(blob_parse_frame(ctx, buf, size, &frame), ==, 0);
    g_assert_cmpint(blob_parse_rescue(ctx, &frame, &rescue), ==, 0);
    g_assert_cmpstr(rescue.path, ==, sample_rescue.path);
    g_assert_cmpint(blob_unpack_payload(ctx, &frame, &state), ==,
                    -EPROTONOSUPPORT);
    g_assert_null(state);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "major version 2"));
    command_line_clear(&rescue);
    cprkit_free(ctx);
    decode_expect_failure(buf, size, -EPROTONOSUPPORT);
    sample_clear(&s);
}

static void test_oversized(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;
    cprkit_ctx *ctx = new_ctx();
    uint8_t *read_buf = NULL;
    size_t read_size;
    int fd, fds_before;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    /* A header claiming a huge payload is refused before anything is
     * allocated for it. */
    put_le64_at(buf, 24, (uint64_t)CPRKIT_BLOB_MAX_PAYLOAD + 1);
    fix_header_crc(buf);
    decode_expect_failure(buf, size, -EFBIG);
    put_le64_at(buf, 24, UINT64_MAX);
    fix_header_crc(buf);
    decode_expect_failure(buf, size, -EFBIG);

    /* A blob fd far bigger than any valid blob is refused by its size. */
    fds_before = count_open_fds();
    fd = memfd_create("huge", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(fd, 512 << 20), ==, 0);
    g_assert_cmpint(blob_read_fd(ctx, fd, &read_buf, &read_size), ==, -EFBIG);
    g_assert_null(read_buf);
    close(fd);
    g_assert_cmpint(count_open_fds(), ==, fds_before);

    /* Encoding refuses an oversized state as well. */
    g_assert_cmpint(cprkit_section_put(ctx, "too-big", "", 
                                       (size_t)CPRKIT_BLOB_MAX_PAYLOAD + 1),
                    ==, -EFBIG);
    cprkit_free(ctx);
    sample_clear(&s);
}

static void test_trailing_and_flags(void)
{
    struct sample s;
    size_t size;
    g_autofree uint8_t *buf = NULL;
    g_autofree uint8_t *longer = NULL;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    longer = g_malloc0(size + 3);
    memcpy(longer, buf, size);
    decode_expect_failure(longer, size + 3, -EBADMSG);

    put_le32_at(buf, 40, 1);
    fix_header_crc(buf);
    decode_expect_failure(buf, size, -EPROTONOSUPPORT);
    sample_clear(&s);
}

/* A well-framed blob whose payload is not a State message. */
static void test_garbage_payload(void)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    uint8_t buf[48 + 4 + sizeof(junk)] = {0};

    memcpy(buf, "\x89" "CPRKIT\n", 8);
    put_le32_at(buf, 8, CPRKIT_FORMAT_MAJOR);
    put_le32_at(buf, 16, 48);
    put_le32_at(buf, 20, 4);
    put_le64_at(buf, 24, sizeof(junk));
    memcpy(buf + 52, junk, sizeof(junk));
    put_le32_at(buf, 32, crc32c(0, buf + 48, 4));
    put_le32_at(buf, 36, crc32c(0, junk, sizeof(junk)));
    fix_header_crc(buf);
    decode_expect_failure(buf, sizeof(buf), -EBADMSG);
}

static void test_sealed_memfd(void)
{
    struct sample s;
    size_t size, read_size;
    g_autofree uint8_t *buf = NULL;
    g_autofree uint8_t *read_buf = NULL;
    int fd, seals;

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    g_assert_cmpint(blob_write_sealed_memfd(s.ctx, buf, size, &fd), ==, 0);
    seals = fcntl(fd, F_GET_SEALS);
    g_assert_cmpint(seals & (F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW |
                             F_SEAL_SHRINK),
                    ==, F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
    g_assert_true(fd_has_cloexec(fd));
    g_assert_cmpint(pwrite(fd, "x", 1, 0), ==, -1);
    g_assert_cmpint(errno, ==, EPERM);
    g_assert_cmpint(ftruncate(fd, 0), ==, -1);
    g_assert_cmpint(blob_read_fd(s.ctx, fd, &read_buf, &read_size), ==, 0);
    g_assert_cmpmem(read_buf, read_size, buf, size);
    close(fd);
    sample_clear(&s);
}

/* Semantically bad content in a well-formed payload. */
/* Names made of the blocks "Ez" and "FY" all have one g_str_hash (djb2):
 * the crafted input that made loading quadratic. */
static char *colliding_name(unsigned i, unsigned blocks)
{
    GString *s = g_string_new(NULL);

    for (unsigned b = 0; b < blocks; b++)
        g_string_append(s, (i >> b) & 1 ? "FY" : "Ez");
    return g_string_free(s, false);
}

static void test_index_hash_crafted(void)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    g_autoptr(GHashTable) seen_entry = g_hash_table_new(NULL, NULL);
    const unsigned n = 1024;

    for (unsigned i = 0; i < n; i++) {
        g_autofree char *name = colliding_name(i, 10);
        g_autofree char *first = colliding_name(0, 10);
        struct fd_entry e = {.name = name, .id = 0};

        /* the input is adversarial for g_str_hash... */
        g_assert_cmpuint(g_str_hash(name), ==, g_str_hash(first));
        /* ...not for the indexes' hash */
        g_hash_table_add(seen, GUINT_TO_POINTER(keyed_str_hash(name)));
        g_hash_table_add(seen_entry, GUINT_TO_POINTER(fd_entry_hash(&e)));
    }
    /* 32-bit hashes of 1024 keys: a collision or two at most by chance. */
    g_assert_cmpuint(g_hash_table_size(seen), >=, n - 4);
    g_assert_cmpuint(g_hash_table_size(seen_entry), >=, n - 4);
}

/* A blob of 20 000 fds and 20 000 sections with colliding names loads,
 * each findable; and of thousands of timestamps only the first 64 stay. */
static void test_crafted_blob_loads(void)
{
    const unsigned n = 20000;
    cprkit_ctx *ctx = new_ctx();
    Cprkit__State state;
    Cprkit__FdEntry *fds = g_new0(Cprkit__FdEntry, n);
    Cprkit__FdEntry **fd_ptrs = g_new0(Cprkit__FdEntry *, n);
    Cprkit__AppSection *secs = g_new0(Cprkit__AppSection, n);
    Cprkit__AppSection **sec_ptrs = g_new0(Cprkit__AppSection *, n);
    Cprkit__Timestamp *ts = g_new0(Cprkit__Timestamp, 1000);
    Cprkit__Timestamp **ts_ptrs = g_new0(Cprkit__Timestamp *, 1000);
    char **names = g_new0(char *, n + 1);
    const void *data;
    size_t size;

    cprkit__state__init(&state);
    for (unsigned i = 0; i < n; i++) {
        names[i] = colliding_name(i, 15);
        cprkit__fd_entry__init(&fds[i]);
        fds[i].name = names[i];
        fds[i].has_fd = true;
        fds[i].fd = 1000 + (int)i;
        fd_ptrs[i] = &fds[i];
        cprkit__app_section__init(&secs[i]);
        secs[i].name = names[i];
        sec_ptrs[i] = &secs[i];
    }
    for (unsigned i = 0; i < 1000; i++) {
        cprkit__timestamp__init(&ts[i]);
        ts[i].phase = names[i];
        ts[i].has_monotonic_ns = true;
        ts[i].monotonic_ns = i;
        ts_ptrs[i] = &ts[i];
    }
    state.fds = fd_ptrs;
    state.n_fds = n;
    state.sections = sec_ptrs;
    state.n_sections = n;
    state.timestamps = ts_ptrs;
    state.n_timestamps = 1000;
    g_assert_cmpint(state_load(ctx, &state), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, n);
    g_assert_nonnull(fdreg_lookup(ctx, names[n - 1], 0));
    g_assert_cmpint(cprkit_section_get(ctx, names[n / 2], &data, &size), ==, 0);
    g_assert_cmpuint(ctx->timestamps->len, ==, STATE_MAX_TIMESTAMPS);
    cprkit_free(ctx);
    g_strfreev(names);
    g_free(fds);
    g_free(fd_ptrs);
    g_free(secs);
    g_free(sec_ptrs);
    g_free(ts);
    g_free(ts_ptrs);
}

static void test_state_validation(void)
{
    cprkit_ctx *ctx = new_ctx();
    Cprkit__State state;
    Cprkit__FdEntry a, b, *entries[2] = {&a, &b};

    cprkit__state__init(&state);
    cprkit__fd_entry__init(&a);
    cprkit__fd_entry__init(&b);
    a.name = b.name = "dup";
    a.has_fd = b.has_fd = true;
    a.fd = 3;
    b.fd = 4;
    state.fds = entries;
    state.n_fds = 2;
    g_assert_cmpint(state_load(ctx, &state), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "twice"));
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 0);

    b.name = "";
    g_assert_cmpint(state_load(ctx, &state), ==, -EBADMSG);
    b.name = "ok";
    b.has_fd = false;
    g_assert_cmpint(state_load(ctx, &state), ==, -EBADMSG);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "no fd number"));
    b.has_fd = true;
    g_assert_cmpint(state_load(ctx, &state), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 2);
    cprkit_free(ctx);
}

/* A visitor that writes the tree as "name{...}" / "name[...]" / name=value,
 * to check nesting and order without a JSON library. */
static void v_begin_object(void *ud, const char *name)
{
    g_string_append_printf(ud, "%s{", name ? name : "");
}

static void v_begin_array(void *ud, const char *name)
{
    g_string_append_printf(ud, "%s[", name ? name : "");
}

static void v_end(void *ud)
{
    g_string_append(ud, "} ");
}

static void v_integer(void *ud, const char *name, int64_t value)
{
    g_string_append_printf(ud, "%s=%" PRId64 " ", name ? name : "", value);
}

static void v_string(void *ud, const char *name, const char *value)
{
    g_string_append_printf(ud, "%s=\"%s\" ", name ? name : "",
                           value ? value : "(null)");
}

static void v_boolean(void *ud, const char *name, bool value)
{
    g_string_append_printf(ud, "%s=%s ", name ? name : "",
                           value ? "true" : "false");
}

static const struct cprkit_blob_visitor test_visitor = {
    .size = sizeof(test_visitor),
    .begin_object = v_begin_object,
    .begin_array = v_begin_array,
    .end = v_end,
    .integer = v_integer,
    .string = v_string,
    .boolean = v_boolean,
};

/* cprkit_blob_visit() on the golden blob: frame, rollback, then the state
 * with its values; and cprkit_state_encode() reads back the same way. */
static void test_visit(void)
{
    g_autoptr(GString) s = g_string_new(NULL);
    g_autofree uint8_t *golden = NULL;
    _cleanup_free_ uint8_t *blob = NULL;
    cprkit_ctx *ctx = new_ctx();
    size_t size;

    golden = read_golden("state-v1.golden", &size);
    g_assert_cmpint(cprkit_blob_visit(ctx, golden, size, &test_visitor, s), ==,
                    0);
    g_test_message("%s", s->str);
    g_assert_true(g_str_has_prefix(s->str, "frame{format_major=1 "));
    g_assert_nonnull(strstr(s->str, "} rollback{path=\""));
    g_assert_nonnull(strstr(s->str, "} state{generation=3 "));
    g_assert_true(g_str_has_suffix(s->str, "unknown_fields=0 } "));

    g_string_truncate(s, 0);
    g_assert_cmpint(cprkit_state_encode(ctx, &blob, &size), ==, 0);
    g_assert_cmpint(cprkit_blob_visit(ctx, blob, size, &test_visitor, s), ==,
                    0);
    g_assert_nonnull(strstr(s->str, "} state{generation=1 "));

    /* Not a blob: an error, and nothing visited. */
    g_string_truncate(s, 0);
    g_assert_cmpint(cprkit_blob_visit(ctx, "junk", 4, &test_visitor, s), <, 0);
    g_assert_cmpstr(s->str, ==, "");
    g_assert_cmpstr(cprkit_last_error(ctx), !=, "");
    cprkit_clear_error(ctx);
    g_assert_cmpstr(cprkit_last_error(ctx), ==, "");
    cprkit_free(ctx);
}

/* --- fd-wire.c: the fd entries without protobuf-c ---------------------- */

/* What fd-wire.c writes and reads is FdEntry and FdIdentity as they are
 * now; a new field must be added there too (and here). */
static void test_wire_field_counts(void)
{
    const ProtobufCMessageDescriptor *state = &cprkit__state__descriptor;

    g_assert_cmpuint(cprkit__fd_entry__descriptor.n_fields, ==, 4);
    g_assert_cmpuint(cprkit__fd_identity__descriptor.n_fields, ==, 6);
    /* fd-wire.c writes the generation and the fds before the rest. */
    g_assert_cmpuint(state->fields[0].id, ==, 1);
    g_assert_cmpstr(state->fields[0].name, ==, "generation");
    g_assert_cmpuint(state->fields[1].id, ==, 2);
    g_assert_cmpstr(state->fields[1].name, ==, "fds");
    g_assert_true(state->fields[1].descriptor == &cprkit__fd_entry__descriptor);
}

/* blob_encode_with_registry() and blob_write_memfd_with_registry() write
 * what blob_encode() writes for the same State with the fds as messages,
 * for every kind of value. */
static void assert_wire_same_bytes(cprkit_ctx *ctx)
{
    const struct command_line *rescue = &sample_rescue;
    Cprkit__State *state, rest;
    g_autofree uint8_t *a = NULL, *b = NULL, *c = NULL;
    size_t a_size, b_size, c_size, written;
    int fd = -1;

    g_assert_cmpint(state_build(ctx, 7, &state), ==, 0);
    rest = *state;
    rest.n_fds = 0;
    rest.fds = NULL;
    g_assert_cmpint(blob_encode(ctx, state, rescue, &a, &a_size), ==, 0);
    g_assert_cmpint(blob_encode_with_registry(ctx, &rest, rescue, &b, &b_size),
                    ==, 0);
    g_assert_cmpmem(a, a_size, b, b_size);
    g_assert_cmpint(blob_write_memfd_with_registry(ctx, &rest, rescue, &fd,
                                                   &written),
                    ==, 0);
    g_assert_cmpuint(written, ==, a_size);
    g_assert_cmpint(fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE, ==, F_SEAL_WRITE);
    g_assert_cmpint(blob_read_fd(ctx, fd, &c, &c_size), ==, 0);
    g_assert_cmpmem(a, a_size, c, c_size);
    close(fd);
    /* A State with fds of its own is refused, not written twice. */
    if (state->n_fds > 0) {
        uint8_t *d = NULL;

        fd = -1;
        g_assert_cmpint(blob_encode_with_registry(ctx, state, rescue, &d,
                                                  &b_size),
                        ==, -EINVAL);
        g_assert_null(d);
        g_assert_cmpint(blob_write_memfd_with_registry(ctx, state, rescue, &fd,
                                                       NULL),
                        ==, -EINVAL);
        g_assert_cmpint(fd, ==, -1);
    }
    state_build_free(state);
}

static void test_wire_same_bytes(void)
{
    static const int ids[] = {0, 1, -1, 127, 128, INT32_MAX, INT32_MIN};
    static const uint64_t big[] = {0, 1, 127, 128, 16383, 16384,
                                   UINT32_MAX, (uint64_t)1 << 35, UINT64_MAX};
    cprkit_ctx *ctx = new_ctx();
    struct sample s;
    char name[300];

    /* Nothing at all, then the sample (real fds of every kind). */
    assert_wire_same_bytes(ctx);
    sample_init(&s);
    assert_wire_same_bytes(s.ctx);
    sample_clear(&s);

    for (unsigned i = 0; i < 200; i++) {
        struct fd_identity id = {
            .type = (enum cprkit_fd_type)(i % 13 == 12 ? -1 : (int)(i % 13)),
            .dev = big[i % ELEMENTSOF(big)],
            .ino = big[(i / 3) % ELEMENTSOF(big)],
            .rdev = big[(i / 7) % ELEMENTSOF(big)],
            .mode_type = (uint32_t)big[(i / 2) % 7],
            .has_anon_id = i % 2,
            .anon_id = big[(i / 5) % ELEMENTSOF(big)],
        };
        /* Distinct names of up to 255 bytes: 1- and 2-byte lengths. */
        size_t len = 1 + (i * 37) % 255;
        size_t n = (size_t)snprintf(name, sizeof(name), "%u-", i);

        memset(name + n, 'a' + (int)(i % 26), sizeof(name) - n);
        name[len > n ? len : n] = '\0';
        g_assert_cmpint(fdreg_add(ctx, name, ids[i % ELEMENTSOF(ids)],
                                  (int)(i % 2 ? -(int)i : INT32_MAX - (int)i),
                                  &id, true),
                        ==, 0);
    }
    g_assert_cmpint(cprkit_section_put(ctx, "model", "state", 5), ==, 0);
    timestamps_set(ctx->update_timestamps, "exec", 42);
    assert_wire_same_bytes(ctx);
    cprkit_free(ctx);

    /* More than the 64 KiB the memfd is written by, a section larger than
     * that, and an entry too (a name no API lets in, the writer takes it
     * as it is). */
    ctx = new_ctx();
    for (unsigned i = 0; i < 3000; i++) {
        struct fd_identity id = {CPRKIT_FD_EVENTFD, 14, i, 0, 0, true, i};

        snprintf(name, sizeof(name), "vfio-irq-eventfd-%u", i / 64);
        g_assert_cmpint(fdreg_add(ctx, name, (int)(i % 64), 100 + (int)i, &id,
                                  true),
                        ==, 0);
    }
    {
        g_autofree char *huge = g_malloc(70000);
        g_autofree uint8_t *section = g_malloc0(100000);
        struct fd_identity id = {CPRKIT_FD_MEMFD, 1, 2, 3, 4};

        memset(huge, 'h', 69999);
        huge[69999] = '\0';
        g_assert_cmpint(fdreg_add(ctx, huge, 0, 99, &id, true), ==, 0);
        g_assert_cmpint(cprkit_section_put(ctx, "big", section, 100000), ==,
                        0);
    }
    assert_wire_same_bytes(ctx);
    cprkit_free(ctx);
}

/* A tiny protobuf writer, for payloads no writer of ours makes. */
static void pb_varint(GByteArray *b, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        g_byte_array_append(b, (uint8_t[]){(uint8_t)(v | 0x80)}, 1);
    g_byte_array_append(b, (uint8_t[]){(uint8_t)v}, 1);
}

static void pb_key(GByteArray *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_bytes(GByteArray *b, const void *data, size_t len)
{
    g_byte_array_append(b, data, (guint)len);
}

static void pb_len_field(GByteArray *b, unsigned field, const void *data,
                         size_t len)
{
    pb_key(b, field, 2);
    pb_varint(b, len);
    pb_bytes(b, data, len);
}

/* FdEntry bodies protobuf-c reads one way or another: every rule of
 * fd-wire.c's reader, in a payload with a generation, a section and a
 * timestamp around the entry. */
struct raw_entry {
    const char *what;
    size_t len;
    const uint8_t *bytes;
    int expected; /* the load's verdict */
};

#define RAW(what, expected, ...)                                               \
    {what, sizeof((const uint8_t[]){__VA_ARGS__}),                            \
     (const uint8_t[]){__VA_ARGS__}, expected}
/* name "a", id 1, fd 10 */
#define E_BASE 0x0a, 0x01, 'a', 0x10, 0x01, 0x18, 0x0a
/* identity: eventfd, dev 14, ino 99 */
#define E_ID 0x22, 0x06, 0x08, 0x02, 0x10, 0x0e, 0x18, 0x63

static const struct raw_entry raw_entries[] = {
    RAW("canonical", 0, E_BASE, E_ID),
    RAW("no identity", 0, E_BASE),
    RAW("empty identity", 0, E_BASE, 0x22, 0x00),
    RAW("identity twice, merged", 0, E_BASE, E_ID, 0x22, 0x04, 0x18, 0x07,
        0x30, 0x05),
    RAW("name twice, last wins", 0, 0x0a, 0x01, 'x', E_BASE, 0x0a, 0x02, 'b',
        'c'),
    RAW("name with a NUL", 0, 0x0a, 0x03, 'a', 0, 'z', 0x18, 0x0a),
    RAW("empty name", -EBADMSG, 0x0a, 0x00, 0x18, 0x0a),
    RAW("no name", -EBADMSG, 0x10, 0x01, 0x18, 0x0a),
    RAW("no fd", -EBADMSG, 0x0a, 0x01, 'a', 0x10, 0x01),
    RAW("negative fd", -EBADMSG, 0x0a, 0x01, 'a', 0x18, 0xfb, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    RAW("stdout", -EBADMSG, 0x0a, 0x01, 'a', 0x18, 0x01),
    RAW("negative id", 0, 0x0a, 0x01, 'a', 0x10, 0xfe, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x18, 0x0a),
    RAW("id beyond 32 bits", 0, 0x0a, 0x01, 'a', 0x10, 0x85, 0x80, 0x80,
        0x80, 0x70, 0x18, 0x0a),
    RAW("fd in 10 bytes", 0, 0x0a, 0x01, 'a', 0x18, 0x8a, 0x80, 0x80, 0x80,
        0x80, 0x80, 0x80, 0x80, 0x80, 0x00),
    RAW("varint of 11 bytes", -EBADMSG, 0x0a, 0x01, 'a', 0x18, 0x8a, 0x80,
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00),
    RAW("unknown type", 0, E_BASE, 0x22, 0x02, 0x08, 0x63),
    RAW("negative type", 0, E_BASE, 0x22, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    RAW("type beyond 32 bits", 0, E_BASE, 0x22, 0x06, 0x08, 0x82, 0x80, 0x80,
        0x80, 0x10),
    RAW("mode type beyond 32 bits", 0, E_BASE, 0x22, 0x06, 0x28, 0x80, 0x80,
        0x80, 0x80, 0x11),
    RAW("anon id of 64 bits", 0, E_BASE, 0x22, 0x0b, 0x30, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    RAW("unknown fields of every wire type", 0, E_BASE, 0x48, 0x05, 0x51, 1,
        2, 3, 4, 5, 6, 7, 8, 0x5a, 0x02, 'h', 'i', 0x65, 1, 2, 3, 4),
    RAW("unknown fields in the identity", 0, E_BASE, 0x22, 0x0b, 0x08, 0x02,
        0x5a, 0x02, 'h', 'i', 0x65, 1, 2, 3, 4),
    RAW("unknown field 0 (2-byte key)", 0, E_BASE, 0x80, 0x00, 0x05),
    RAW("known field, 2-byte key", 0, 0x8a, 0x00, 0x01, 'q', 0x18, 0x0a),
    RAW("5-byte key of a large field", 0, E_BASE, 0x88, 0x80, 0x80, 0x80,
        0x10, 0x05),
    RAW("6-byte key", -EBADMSG, E_BASE, 0x88, 0x80, 0x80, 0x80, 0x80, 0x01,
        0x05),
    RAW("1-byte key of field 0", -EBADMSG, E_BASE, 0x00, 0x05),
    RAW("group wire types", -EBADMSG, E_BASE, 0x4b, 0x4c),
    RAW("wire type 6", -EBADMSG, E_BASE, 0x4e),
    RAW("name as a varint", -EBADMSG, 0x08, 0x01, 0x18, 0x0a),
    RAW("id as bytes", -EBADMSG, 0x0a, 0x01, 'a', 0x12, 0x00, 0x18, 0x0a),
    RAW("fd as 32 bits", -EBADMSG, 0x0a, 0x01, 'a', 0x1d, 1, 0, 0, 0),
    RAW("identity as a varint", -EBADMSG, E_BASE, 0x20, 0x01),
    RAW("type as bytes", -EBADMSG, E_BASE, 0x22, 0x02, 0x0a, 0x00),
    RAW("dev as 64 bits", -EBADMSG, E_BASE, 0x22, 0x09, 0x11, 1, 2, 3, 4, 5,
        6, 7, 8),
    RAW("length in 5 bytes", 0, 0x0a, 0x81, 0x80, 0x80, 0x80, 0x00, 'a',
        0x18, 0x0a),
    RAW("length in 6 bytes", -EBADMSG, 0x0a, 0x81, 0x80, 0x80, 0x80, 0x80,
        0x00, 'a', 0x18, 0x0a),
    RAW("length past the end", -EBADMSG, 0x0a, 0x05, 'a', 0x18),
    RAW("length above INT_MAX", -EBADMSG, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f),
    RAW("identity past the entry", -EBADMSG, E_BASE, 0x22, 0x07, 0x08, 0x02),
    RAW("truncated varint", -EBADMSG, E_BASE, 0x10, 0x80),
    RAW("truncated 64 bits", -EBADMSG, E_BASE, 0x51, 1, 2, 3),
    RAW("truncated 32 bits", -EBADMSG, E_BASE, 0x65, 1, 2),
};

static GByteArray *payload_around(const uint8_t *entry, size_t len)
{
    GByteArray *b = g_byte_array_new();

    pb_key(b, 1, 0);
    pb_varint(b, 3);
    pb_len_field(b, 2, entry, len);
    {
        GByteArray *sec = g_byte_array_new();

        pb_len_field(sec, 1, "model", 5);
        pb_len_field(sec, 2, "\0\1\2", 3);
        pb_len_field(b, 3, sec->data, sec->len);
        g_byte_array_unref(sec);
    }
    {
        GByteArray *ts = g_byte_array_new();

        pb_len_field(ts, 1, "exec", 4);
        pb_key(ts, 2, 0);
        pb_varint(ts, 12345);
        pb_len_field(b, 4, ts->data, ts->len);
        g_byte_array_unref(ts);
    }
    return b;
}

static void test_wire_entries(void)
{
    for (size_t i = 0; i < ELEMENTSOF(raw_entries); i++) {
        const struct raw_entry *e = &raw_entries[i];
        g_autoptr(GByteArray) b = payload_around(e->bytes, e->len);

        g_test_message("%s", e->what);
        g_assert_cmpint(decode_both_payload(b->data, b->len), ==, e->expected);
    }
}

/* Payloads whose fd entries are not all together: other fields before,
 * between and after them, and the generation last. The decoder moves the
 * other fields together over the entries it read. */
static GByteArray *interleaved_payload(unsigned n)
{
    GByteArray *b = g_byte_array_new();

    for (unsigned i = 0; i < n; i++) {
        GByteArray *e = g_byte_array_new();
        char name[32];

        snprintf(name, sizeof(name), "fd-%u", i);
        pb_len_field(e, 1, name, strlen(name));
        pb_key(e, 3, 0);
        pb_varint(e, 10 + i);
        if (i % 3 == 0) {
            GByteArray *sec = g_byte_array_new();

            snprintf(name, sizeof(name), "section-%u", i);
            pb_len_field(sec, 1, name, strlen(name));
            pb_len_field(sec, 2, name, strlen(name));
            pb_len_field(b, 3, sec->data, sec->len);
            g_byte_array_unref(sec);
        }
        if (i % 4 == 1) { /* an unknown top-level field */
            pb_key(b, 14, 0);
            pb_varint(b, i);
        }
        pb_len_field(b, 2, e->data, e->len);
        g_byte_array_unref(e);
    }
    pb_key(b, 5, 0);
    pb_varint(b, 999);
    pb_key(b, 1, 0);
    pb_varint(b, 8);
    return b;
}

static void test_wire_interleaved(void)
{
    g_autoptr(GByteArray) b = interleaved_payload(50);
    size_t size;
    g_autofree uint8_t *blob = decode_both_frame(b->data, b->len, &size);
    struct decoded_state decoded;
    struct blob_frame frame;
    cprkit_ctx *ctx = new_ctx();
    const void *data;
    size_t data_size;

    g_assert_cmpint(decode_both(blob, size), ==, 0);
    g_assert_cmpint(blob_parse_frame(ctx, blob, size, &frame), ==, 0);
    g_assert_cmpint(blob_unpack_for_load(ctx, &frame, blob, &decoded), ==, 0);
    g_assert_cmpuint(decoded.n_fds, ==, 50);
    g_assert_cmpuint(decoded.state->n_fds, ==, 0);
    g_assert_cmpuint(decoded.state->n_sections, ==, 17);
    g_assert_cmpuint(decoded.state->generation, ==, 8);
    g_assert_cmpint(state_load_decoded(ctx, &decoded), ==, 0);
    decoded_state_clear(&decoded);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 50);
    g_assert_cmpint(cprkit_fd_find(ctx, "fd-49", 0, CPRKIT_FD_OTHER), ==, 59);
    g_assert_cmpint(cprkit_section_get(ctx, "section-48", &data, &data_size),
                    ==, 0);
    g_assert_cmpmem(data, data_size, "section-48", 10);
    g_assert_cmpuint(cprkit_generation(ctx), ==, 8);
    cprkit_free(ctx);
}

/* A small deterministic generator for the mutations. */
static uint64_t xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Every cut, bytes changed to values that change a key, a wire type or a
 * varint's end at every place, and random mutations: both decoders agree
 * on each (decode_both() aborts if not). */
static void mutate_and_compare(const uint8_t *payload, size_t len,
                               unsigned n_random)
{
    static const uint8_t values[] = {0x00, 0x80, 0xff};
    g_autofree uint8_t *m = g_malloc(len ? len : 1);
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ len;

    for (size_t cut = 0; cut < len; cut++)
        decode_both_payload(payload, cut);
    for (size_t at = 0; at < len; at++) {
        for (size_t v = 0; v < ELEMENTSOF(values) + 2; v++) {
            memcpy(m, payload, len);
            if (v < ELEMENTSOF(values))
                m[at] = values[v];
            else
                m[at] ^= v == ELEMENTSOF(values) ? 0x07 : 0x08;
            decode_both_payload(m, len);
        }
    }
    for (unsigned i = 0; i < n_random && len > 0; i++) {
        unsigned changes = 1 + (unsigned)(xorshift(&seed) % 4);

        memcpy(m, payload, len);
        while (changes--)
            m[xorshift(&seed) % len] = (uint8_t)xorshift(&seed);
        decode_both_payload(m, len);
    }
}

static void test_wire_decoders_agree(void)
{
    struct sample s;
    size_t size, golden_size;
    g_autofree uint8_t *buf = NULL;
    g_autofree uint8_t *golden = read_golden("state-v1.golden", &golden_size);
    g_autoptr(GByteArray) interleaved = interleaved_payload(6);
    g_autoptr(GByteArray) raw = NULL;
    struct blob_frame frame;
    cprkit_ctx *ctx = new_ctx();

    sample_init(&s);
    buf = sample_blob(&s, 1, &size);
    g_assert_cmpint(decode_both(buf, size), ==, 0);
    g_assert_cmpint(blob_parse_frame(ctx, buf, size, &frame), ==, 0);
    mutate_and_compare(frame.payload, frame.payload_size, 1000);

    g_assert_cmpint(decode_both(golden, golden_size), ==, 0);
    g_assert_cmpint(blob_parse_frame(ctx, golden, golden_size, &frame), ==, 0);
    mutate_and_compare(frame.payload, frame.payload_size, 1000);

    mutate_and_compare(interleaved->data, interleaved->len, 1000);
    raw = payload_around(raw_entries[3].bytes, raw_entries[3].len);
    mutate_and_compare(raw->data, raw->len, 1000);
    cprkit_free(ctx);
    sample_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/crc32c/vectors", test_crc32c_vectors);
    g_test_add_func("/blob/roundtrip-every-kind", test_roundtrip_every_kind);
    g_test_add_func("/blob/recode-identical", test_recode_identical);
    g_test_add_func("/blob/golden-v1", test_golden_v1);
    g_test_add_func("/blob/visit", test_visit);
    g_test_add_func("/blob/truncated", test_truncated);
    g_test_add_func("/blob/bitflips", test_bitflips);
    g_test_add_func("/blob/wrong-magic", test_wrong_magic);
    g_test_add_func("/blob/future-version", test_future_version);
    g_test_add_func("/blob/oversized", test_oversized);
    g_test_add_func("/blob/trailing-and-flags", test_trailing_and_flags);
    g_test_add_func("/blob/garbage-payload", test_garbage_payload);
    g_test_add_func("/blob/sealed-memfd", test_sealed_memfd);
    g_test_add_func("/blob/state-validation", test_state_validation);
    g_test_add_func("/blob/index-hash-crafted", test_index_hash_crafted);
    g_test_add_func("/blob/crafted-blob-loads", test_crafted_blob_loads);
    g_test_add_func("/blob/wire-field-counts", test_wire_field_counts);
    g_test_add_func("/blob/wire-same-bytes", test_wire_same_bytes);
    g_test_add_func("/blob/wire-entries", test_wire_entries);
    g_test_add_func("/blob/wire-interleaved", test_wire_interleaved);
    g_test_add_func("/blob/wire-decoders-agree", test_wire_decoders_agree);
    return g_test_run();
}
