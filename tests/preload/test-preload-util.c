/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure parts of the LD_PRELOAD shim (shim/preload/preload-util.c). */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <glib.h>

#include "preload-golden.h"
#include "preload-util.h"

static const char maps[] =
    "555555554000-555555556000 r--p 00000000 fe:01 1234    /usr/bin/prog\n"
    "555555560000-555555581000 rw-p 00000000 00:00 0       [heap]\n"
    "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
    "7f0000100000-7f0000200000 rw-s 00000000 00:01 77      /memfd:buf (deleted)\n"
    "7f0000200000-7f0000300000 r--p 00000000 00:00 0 \n"
    "7f0000400000-7f0000600000 rw-s 00000000 00:0f 88      /anon_hugepage (deleted)\n"
    "7f0000600000-7f0000700000 rw-p 00000000 fe:01 99      /data/file\n"
    "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0       [stack]\n";

static void test_classify(void)
{
    char what[256];
    int prot = 0;

    g_assert_cmpint(preload_classify_range(maps, 0x7f0000000000, 0x100000,
                                           &prot, what, sizeof(what)),
                    ==, PRELOAD_BACKING_ANON);
    g_assert_cmpint(prot, ==, PROT_READ | PROT_WRITE);
    /* part of one mapping */
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000010000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_ANON);
    g_assert_cmpint(preload_classify_range(maps, 0x555555560000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_ANON);
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000100000, 0x100000,
                                           &prot, what, sizeof(what)),
                    ==, PRELOAD_BACKING_FILE_SHARED);
    /* anonymous then memfd: two kinds */
    g_assert_cmpint(preload_classify_range(maps, 0x7f00000f0000, 0x20000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_nonnull(strstr(what, "more than one mapping"));
    /* two anonymous mappings in a row, the lowest protection wins */
    prot = 0;
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000200000, 0x100000,
                                           &prot, what, sizeof(what)),
                    ==, PRELOAD_BACKING_ANON);
    g_assert_cmpint(prot, ==, PROT_READ);
    /* a hole */
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000200000, 0x200000,
                                           &prot, what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_nonnull(strstr(what, "hole"));
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000400000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_nonnull(strstr(what, "anon_hugepage"));
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000600000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_nonnull(strstr(what, "/data/file"));
    g_assert_cmpint(preload_classify_range(maps, 0x7ffffffde000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_cmpint(preload_classify_range(maps, 0x1000, 0x1000, &prot, what,
                                           sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_nonnull(strstr(what, "not mapped"));
    g_assert_cmpint(preload_classify_range(maps, 0x7f0000000000, 0, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
    g_assert_cmpint(preload_classify_range("garbage\n", 0x1000, 0x1000, &prot,
                                           what, sizeof(what)),
                    ==, PRELOAD_BACKING_OTHER);
}

static void test_vfio_path(void)
{
    bool c;

    g_assert_cmpint(preload_vfio_path("/dev/vfio/vfio", &c), ==, 0);
    g_assert_true(c);
    g_assert_cmpint(preload_vfio_path("/dev/vfio/12", &c), ==, 12);
    g_assert_false(c);
    g_assert_cmpint(preload_vfio_path("/dev/vfio/12x", &c), ==, -1);
    /* iommufd and device cdevs are not VFIO groups: the shim taints. */
    g_assert_cmpint(preload_vfio_path("/dev/vfio/devices/vfio0", &c), ==, -1);
    g_assert_true(preload_iommufd_path("/dev/iommu"));
    g_assert_true(preload_iommufd_path("/dev/vfio/devices/vfio0"));
    g_assert_false(preload_iommufd_path("/dev/vfio/vfio"));
    g_assert_false(preload_iommufd_path("/dev/vfio/12"));
    g_assert_false(preload_iommufd_path("/dev/iommu0"));
    g_assert_cmpint(preload_vfio_path("/dev/vfio/", &c), ==, -1);
    g_assert_cmpint(preload_vfio_path("/dev/vfio/noiommu-0", &c), ==, -1);
    g_assert_cmpint(preload_vfio_path("/dev/null", &c), ==, -1);
    g_assert_cmpint(preload_vfio_path(NULL, &c), ==, -1);
    g_assert_cmpint(preload_vfio_path("/dev/vfio/99999999999", &c), ==, -1);
}

static void test_env(void)
{
    char *envp[] = {"A=1", "CPRKIT_CONTROL_SOCKET=/x", "CPRKIT_STATE_FD=3",
                    "CPRKIT_CONTROL_SOCKETX=keep", "B=2", NULL};
    const char *const drop[] = {"CPRKIT_CONTROL_SOCKET", "CPRKIT_STATE_FD",
                                NULL};
    char **out = preload_env_without(envp, drop);

    g_assert_nonnull(out);
    g_assert_cmpstr(out[0], ==, "A=1");
    g_assert_cmpstr(out[1], ==, "CPRKIT_CONTROL_SOCKETX=keep");
    g_assert_cmpstr(out[2], ==, "B=2");
    g_assert_null(out[3]);
    free(out);
    out = preload_env_without(NULL, drop);
    g_assert_nonnull(out);
    g_assert_null(out[0]);
    free(out);
}

/* One item of every kind, used by the text format tests. */
static const struct preload_item sample_items[5] = {
    {.kind = PRELOAD_ITEM_CONTAINER, .a = 0},
    {.kind = PRELOAD_ITEM_GROUP, .a = 7, .b = 0},
    {.kind = PRELOAD_ITEM_DEVICE, .bdf = "0000:00:03.0"},
    {.kind = PRELOAD_ITEM_DMA, .a = 0, .b = 0x100000, .c = 0x200000},
    {.kind = PRELOAD_ITEM_IRQ, .a = 1, .b = 4, .bdf = "0000:00:03.0"},
};

static void test_items(void)
{
    const struct preload_item *in = sample_items;
    struct preload_item out[8];
    char buf[1024], small[10], desc[128];
    int len, n;

    len = preload_items_format(in, 5, buf, sizeof(buf));
    g_assert_cmpint(len, >, 0);
    g_assert_cmpint(len, ==, (int)strlen(buf));
    g_assert_nonnull(strstr(buf, "irq 0000:00:03.0 1 4\n"));
    n = preload_items_parse(buf, (size_t)len, out, 8);
    g_assert_cmpint(n, ==, 5);
    for (int i = 0; i < 5; i++)
        g_assert_cmpint(preload_items_find(in, 5, &out[i]), ==, i);
    g_assert_cmpint(preload_items_format(in, 5, small, sizeof(small)), ==,
                    -ENOBUFS);
    g_assert_cmpint(preload_items_parse(buf, (size_t)len, out, 3), ==, -E2BIG);
    g_assert_cmpint(preload_items_parse("bogus 1 2 3\n", 12, out, 8), ==,
                    -EBADMSG);
    g_assert_cmpint(preload_items_parse("dma 1\n", 6, out, 8), ==, -EBADMSG);
    g_assert_cmpint(preload_items_parse("", 0, out, 8), ==, 0);
    g_assert_cmpint(preload_items_parse("\n\n", 2, out, 8), ==, 0);
    /* not NUL-terminated: only len bytes are read */
    g_assert_cmpint(preload_items_parse("container 0 0 0XXX", 15, out, 8), ==, 1);
    preload_item_describe(&in[3], desc, sizeof(desc));
    g_assert_cmpstr(desc, ==,
                    "DMA mapping iova 0x100000 size 0x200000 (container 0)");
    struct preload_item missing = {.kind = PRELOAD_ITEM_DMA, .b = 1};
    g_assert_cmpint(preload_items_find(in, 5, &missing), ==, -1);
}

static void assert_items_equal(const struct preload_item *a,
                               const struct preload_item *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g_assert_cmpint(a[i].kind, ==, b[i].kind);
        g_assert_cmpuint(a[i].a, ==, b[i].a);
        g_assert_cmpuint(a[i].b, ==, b[i].b);
        g_assert_cmpuint(a[i].c, ==, b[i].c);
        g_assert_cmpstr(a[i].bdf, ==, b[i].bdf);
        g_assert_false(b[i].claimed);
    }
}

/* Decodes data, which must hold n items equal to want, and encodes them
 * again to the same bytes. */
static void assert_decodes_and_recodes(const void *data, size_t size,
                                       const struct preload_item *want,
                                       size_t n)
{
    struct preload_item out[PRELOAD_MAX_ITEMS];
    g_autofree uint8_t *again = NULL;
    char err[160] = "";
    size_t again_size;

    g_assert_cmpint(preload_items_decode(data, size, out, PRELOAD_MAX_ITEMS,
                                         err, sizeof(err)),
                    ==, (int)n);
    g_assert_cmpstr(err, ==, "");
    assert_items_equal(want, out, n);
    g_assert_cmpint(preload_items_encode(out, n, &again, &again_size), ==, 0);
    g_assert_cmpmem(again, again_size, data, size);
}

/* Every kind through the message and back; re-encoding is byte-identical. */
static void test_records_round_trip(void)
{
    g_autofree uint8_t *buf = NULL;
    size_t size;

    g_assert_cmpint(preload_items_encode(golden_items, GOLDEN_N_ITEMS, &buf,
                                         &size),
                    ==, 0);
    assert_decodes_and_recodes(buf, size, golden_items, GOLDEN_N_ITEMS);
    g_clear_pointer(&buf, g_free);
    /* nothing recorded: a version and no items */
    g_assert_cmpint(preload_items_encode(NULL, 0, &buf, &size), ==, 0);
    g_assert_cmpuint(size, ==, 2);
    assert_decodes_and_recodes(buf, size, NULL, 0);
    g_clear_pointer(&buf, g_free);
}

/* Since 0.5 an IRQ item carries the first vector of its SET_IRQS call
 * (MSI-X grown by a call at vector 4); vector 0 is not written, so the
 * golden record above is unchanged. */
static void test_records_irq_start(void)
{
    const struct preload_item items[] = {
        {.kind = PRELOAD_ITEM_IRQ, .a = 2, .b = 3, .bdf = "0000:01:00.0"},
        {.kind = PRELOAD_ITEM_IRQ, .a = 2, .b = 1, .c = 4,
         .bdf = "0000:01:00.0"},
    };
    struct preload_item out[PRELOAD_MAX_ITEMS];
    g_autofree uint8_t *one = NULL, *two = NULL;
    size_t one_size, two_size;
    char why[256];

    g_assert_cmpint(preload_items_encode(items, 1, &one, &one_size), ==, 0);
    g_assert_cmpint(preload_items_encode(items, 2, &two, &two_size), ==, 0);
    assert_decodes_and_recodes(two, two_size, items, 2);
    g_assert_cmpint(preload_items_decode(two, two_size, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, 2);
    g_assert_cmpuint(out[0].c, ==, 0);
    g_assert_cmpuint(out[1].c, ==, 4);
    /* Two items differing only in their start are two resources. */
    g_assert_cmpint(preload_items_find(out, 2, &items[1]), ==, 1);
    g_assert_cmpint(preload_items_find(out, 1, &items[1]), ==, -1);
}

/* The committed section of format version 1 must decode to exactly the
 * items make-preload-golden wrote, for as long as the shim exists. */
static void test_records_golden_v1(void)
{
    g_autofree char *path = g_test_build_filename(
        G_TEST_DIST, "data", "preload-records-v1.golden", NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *data = NULL;
    gsize size;

    g_assert_true(g_file_get_contents(path, &data, &size, &error));
    g_assert_no_error(error);
    assert_decodes_and_recodes(data, size, golden_items, GOLDEN_N_ITEMS);
}

/* What a shim before the message wrote (the legacy "cprkit-preload"
 * section, which records.c still reads). */
static void test_records_legacy_text(void)
{
    static const char text[] = "container 0 0 0\n"
                               "group 7 0 0\n"
                               "device 0000:00:03.0\n"
                               "dma 0 1048576 2097152\n"
                               "irq 0000:00:03.0 1 4\n";
    struct preload_item out[8];

    g_assert_cmpint(preload_items_parse(text, sizeof(text) - 1, out, 8), ==, 5);
    assert_items_equal(sample_items, out, 5);
}

/* Decoding must fail with r and a message containing what. */
static void assert_refused(const void *data, size_t size, size_t max, int r,
                           const char *what)
{
    struct preload_item out[PRELOAD_MAX_ITEMS];
    char err[160] = "";

    g_assert_cmpint(preload_items_decode(data, size, out, max, err,
                                         sizeof(err)),
                    ==, r);
    if (g_test_verbose())
        g_test_message("refused: %s", err);
    g_assert_nonnull(strstr(err, what));
}

#define REFUSED(bytes, r, what)                                              \
    assert_refused(bytes, sizeof(bytes) - 1, PRELOAD_MAX_ITEMS, r, what)

static void test_records_refused(void)
{
    g_autofree char *path = g_test_build_filename(
        G_TEST_DIST, "data", "preload-records-v1.golden", NULL);
    g_autofree char *golden = NULL;
    g_autofree uint8_t *many = NULL;
    struct preload_item out[PRELOAD_MAX_ITEMS], big[PRELOAD_MAX_ITEMS + 1];
    char long_bdf[8 + 32];
    char err[160];
    uint8_t *buf;
    size_t size, many_size;

    REFUSED("", -EBADMSG, "no format version");
    REFUSED("\xff\xff\xff", -EBADMSG, "not a PreloadRecords message");
    REFUSED("\x08\x02", -EPROTONOSUPPORT, "written by a newer shim");
    REFUSED("\x08\x00", -EPROTONOSUPPORT, "format version 0");
    REFUSED("\x12\x04\x08\x01\x10\x00", -EBADMSG, "no format version");
    REFUSED("\x08\x01\x12\x02\x08\x63", -EBADMSG, "kind 99, unknown");
    REFUSED("\x08\x01\x12\x02\x08\x00", -EBADMSG, "kind 0, unknown");
    REFUSED("\x08\x01\x12\x00", -EBADMSG, "item 0 has no kind");
    REFUSED("\x08\x01\x12\x06\x08\x04\x10\x00\x28\x00", -EBADMSG,
            "item 0 (kind 4) has no size");
    REFUSED("\x08\x01\x12\x02\x08\x03", -EBADMSG, "has no bdf");
    REFUSED("\x08\x01\x12\x04\x08\x03\x22\x00", -EBADMSG,
            "PCI address of 0 bytes");
    /* a PCI address longer than struct preload_item's buffer */
    memcpy(long_bdf, "\x08\x01\x12\x24\x08\x03\x22\x20", 8);
    memset(long_bdf + 8, 'x', 32);
    assert_refused(long_bdf, sizeof(long_bdf), PRELOAD_MAX_ITEMS, -EBADMSG,
                   "PCI address of 32 bytes");

    /* more items than the shim holds */
    many_size = 2 + 6 * (PRELOAD_MAX_ITEMS + 1);
    many = g_malloc(many_size);
    memcpy(many, "\x08\x01", 2);
    for (size_t i = 0; i <= PRELOAD_MAX_ITEMS; i++)
        memcpy(many + 2 + 6 * i, "\x12\x04\x08\x01\x10\x00", 6);
    assert_refused(many, many_size, PRELOAD_MAX_ITEMS, -E2BIG,
                   "65 items, this shim holds at most 64");
    /* ... or than the caller has room for */
    g_assert_true(g_file_get_contents(path, &golden, &size, NULL));
    assert_refused(golden, size, 3, -E2BIG, "8 items");

    /* Every truncation of the golden section is refused or, cut at an
     * item's end, holds fewer items; never more, never a crash. */
    for (size_t len = 0; len < size; len++) {
        int r;

        err[0] = '\0';
        r = preload_items_decode(golden, len, out, PRELOAD_MAX_ITEMS, err,
                                 sizeof(err));
        if (r < 0)
            g_assert_cmpstr(err, !=, "");
        else
            g_assert_cmpint(r, <, GOLDEN_N_ITEMS);
    }
    /* cut inside the last item */
    assert_refused(golden, size - 1, PRELOAD_MAX_ITEMS, -EBADMSG,
                   "not a PreloadRecords message");
    /* Every single-byte corruption: refused or decoded, never a crash;
     * what decodes has at most PRELOAD_MAX_ITEMS valid items. */
    for (size_t i = 0; i < size; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            int r;

            golden[i] ^= (char)(1u << bit);
            r = preload_items_decode(golden, size, out, PRELOAD_MAX_ITEMS,
                                     err, sizeof(err));
            g_assert_cmpint(r, <=, PRELOAD_MAX_ITEMS);
            for (int k = 0; k < r; k++)
                g_assert_cmpuint(strlen(out[k].bdf), <, sizeof(out[k].bdf));
            golden[i] ^= (char)(1u << bit);
        }
    }

    /* The encoder refuses what the decoder would. */
    for (size_t i = 0; i < G_N_ELEMENTS(big); i++)
        big[i] = (struct preload_item){.kind = PRELOAD_ITEM_CONTAINER,
                                       .a = i};
    g_assert_cmpint(preload_items_encode(big, G_N_ELEMENTS(big), &buf, &size),
                    ==, -E2BIG);
    big[0] = (struct preload_item){.kind = PRELOAD_ITEM_DEVICE};
    memset(big[0].bdf, 'x', sizeof(big[0].bdf));
    g_assert_cmpint(preload_items_encode(big, 1, &buf, &size), ==,
                    -ENAMETOOLONG);
    big[0] = (struct preload_item){.kind = (enum preload_item_kind)42};
    g_assert_cmpint(preload_items_encode(big, 1, &buf, &size), ==, -EINVAL);
}

/* The sections a fake state blob holds, for preload_records_read(). */
struct fake_sections {
    const char *pb, *legacy;
    size_t pb_size, legacy_size;
};

static int fake_get(void *data, const char *name, const void **ret,
                    size_t *ret_size)
{
    const struct fake_sections *f = data;

    if (strcmp(name, PRELOAD_SECTION) == 0 && f->pb) {
        *ret = f->pb;
        *ret_size = f->pb_size;
        return 0;
    }
    if (strcmp(name, PRELOAD_LEGACY_SECTION) == 0 && f->legacy) {
        *ret = f->legacy;
        *ret_size = f->legacy_size;
        return 0;
    }
    return -ENOENT;
}

/* Which section the shim reads: the message, else the legacy text (an
 * update from the previous shim), else nothing. */
static void test_records_read_sections(void)
{
    static const char legacy[] = "container 0 0 0\ngroup 7 0 0\n";
    g_autofree uint8_t *pb = NULL;
    struct preload_item out[PRELOAD_MAX_ITEMS];
    struct fake_sections f = {0};
    char why[256] = "";
    size_t size;

    g_assert_cmpint(preload_items_encode(golden_items, GOLDEN_N_ITEMS, &pb,
                                         &size),
                    ==, 0);
    /* nothing recorded */
    g_assert_cmpint(preload_records_read(fake_get, &f, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, 0);
    /* the previous shim's text */
    f.legacy = legacy;
    f.legacy_size = sizeof(legacy) - 1;
    g_assert_cmpint(preload_records_read(fake_get, &f, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, 2);
    g_assert_cmpint(out[1].kind, ==, PRELOAD_ITEM_GROUP);
    g_assert_cmpuint(out[1].a, ==, 7);
    /* the message wins over a (stale or emptied) legacy section */
    f.pb = (const char *)pb;
    f.pb_size = size;
    g_assert_cmpint(preload_records_read(fake_get, &f, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, GOLDEN_N_ITEMS);
    assert_items_equal(golden_items, out, GOLDEN_N_ITEMS);
    /* refusals name the section */
    f.pb = "\x08\x01\x12\x02\x08\x63";
    f.pb_size = 6;
    g_assert_cmpint(preload_records_read(fake_get, &f, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, -EBADMSG);
    g_assert_cmpstr(why, ==,
                    "section cprkit-preload.pb: item 0 has kind 99, unknown "
                    "to this shim");
    f.pb = NULL;
    f.legacy = "bogus 1 2 3\n";
    f.legacy_size = 12;
    g_assert_cmpint(preload_records_read(fake_get, &f, out, PRELOAD_MAX_ITEMS,
                                         why, sizeof(why)),
                    ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "section cprkit-preload: "));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/preload/classify-range", test_classify);
    g_test_add_func("/preload/vfio-path", test_vfio_path);
    g_test_add_func("/preload/env-without", test_env);
    g_test_add_func("/preload/items", test_items);
    g_test_add_func("/preload/records/round-trip", test_records_round_trip);
    g_test_add_func("/preload/records/golden-v1", test_records_golden_v1);
    g_test_add_func("/preload/records/irq-start", test_records_irq_start);
    g_test_add_func("/preload/records/legacy-text", test_records_legacy_text);
    g_test_add_func("/preload/records/refused", test_records_refused);
    g_test_add_func("/preload/records/read-sections",
                    test_records_read_sections);
    return g_test_run();
}
