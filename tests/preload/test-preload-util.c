/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure parts of the LD_PRELOAD shim (shim/preload/preload-util.c). */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <glib.h>

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

static void test_items(void)
{
    struct preload_item in[5] = {
        {.kind = PRELOAD_ITEM_CONTAINER, .a = 0},
        {.kind = PRELOAD_ITEM_GROUP, .a = 7, .b = 0},
        {.kind = PRELOAD_ITEM_DEVICE, .bdf = "0000:00:03.0"},
        {.kind = PRELOAD_ITEM_DMA, .a = 0, .b = 0x100000, .c = 0x200000},
        {.kind = PRELOAD_ITEM_IRQ, .a = 1, .b = 4, .bdf = "0000:00:03.0"},
    };
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/preload/classify-range", test_classify);
    g_test_add_func("/preload/vfio-path", test_vfio_path);
    g_test_add_func("/preload/env-without", test_env);
    g_test_add_func("/preload/items", test_items);
    return g_test_run();
}
