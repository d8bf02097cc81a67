/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr/state-json.c from the inside (jansson, no json-glib in this file):
 * the members in the order json-glib wrote them, values that do not fit a
 * JSON int as hex strings, names that are not UTF-8 kept instead of
 * dropped, and the golden blob as JSON.
 */
#include <glib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cprkit-internal.h"
#include "state-json.h"

static void test_utf8_string(void)
{
    json_auto_t *null = json_utf8_string(NULL);
    json_auto_t *plain = json_utf8_string("vfio-device:0000:00:03.0");
    json_auto_t *broken = json_utf8_string("ram\xff\xfe-block");
    const char *v;

    g_assert_true(json_is_null(null));
    g_assert_cmpstr(json_string_value(plain), ==, "vfio-device:0000:00:03.0");
    /* jansson refuses invalid UTF-8 outright; the value must survive with
     * the bad bytes replaced. */
    g_assert_nonnull(broken);
    v = json_string_value(broken);
    g_assert_true(g_utf8_validate(v, -1, NULL));
    g_assert_true(g_str_has_prefix(v, "ram"));
    g_assert_true(g_str_has_suffix(v, "-block"));
    g_assert_nonnull(strstr(v, "\xef\xbf\xbd")); /* U+FFFD */
}

/* inspect shows an eventfd's eventfd-id (what tells eventfds apart),
 * and nothing of the kind for other fds. */
static void test_eventfd_id(void)
{
    _cleanup_free_ uint8_t *blob = NULL;
    json_auto_t *j = NULL;
    json_t *fds, *ev, *mem;
    cprkit_ctx *ctx;
    size_t size;
    int efd = eventfd(0, EFD_CLOEXEC);
    int mfd = memfd_create("m", MFD_CLOEXEC);

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 0, efd), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "ram", 0, mfd), ==, 0);
    g_assert_cmpint(cprkit_state_encode(ctx, &blob, &size), ==, 0);
    g_assert_cmpint(blob_to_json_tree(ctx, blob, size, &j), ==, 0);
    fds = json_object_get(json_object_get(j, "state"), "fds");
    ev = json_array_get(fds, 0);
    mem = json_array_get(fds, 1);
    g_assert_cmpstr(json_string_value(json_object_get(ev, "type")), ==,
                    "eventfd");
    g_assert_true(json_is_integer(json_object_get(ev, "eventfd_id")));
    g_assert_null(json_object_get(mem, "eventfd_id"));
    cprkit_free(ctx);
    close(efd);
    close(mfd);
}

static void test_state_order(void)
{
    struct fd_identity big = {CPRKIT_FD_EVENTFD, UINT64_MAX, 10000, 0, 0};
    struct fd_identity odd = {CPRKIT_FD_MEMFD, 1, 42, 0, 0x8000};
    _cleanup_free_ uint8_t *blob = NULL;
    json_auto_t *j = NULL;
    cprkit_ctx *ctx;
    size_t size;
    char *text;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(fdreg_add(ctx, "irq", 3, 100, &big, true), ==, 0);
    g_assert_cmpint(fdreg_add(ctx, "ram\x01\xff", 0, 101, &odd, true), ==, 0);
    /* What "inspect" does: encode, then decode through the public API. */
    ctx->generation = 6;
    g_assert_cmpint(cprkit_state_encode(ctx, &blob, &size), ==, 0);
    g_assert_cmpint(blob_to_json_tree(ctx, blob, size, &j), ==, 0);
    cprkit_free(ctx);

    text = json_dumps(json_object_get(j, "state"), JSON_COMPACT);
    g_test_message("%s", text);
    g_assert_true(g_str_has_prefix(text, "{\"generation\":7,"
                                         "\"created_realtime_ns\":"));
    /* Member order and types as json-glib wrote them; an identity above
     * INT64_MAX as a hex string; a control character escaped, a byte that
     * is not UTF-8 replaced. */
    g_assert_nonnull(strstr(
        text, "\"fds\":[{\"name\":\"irq\",\"id\":3,\"fd\":100,\"type\":"
              "\"eventfd\",\"st_dev\":\"0xffffffffffffffff\",\"st_ino\":10000,"
              "\"st_rdev\":0,\"st_mode_type\":\"0x0\"},{\"name\":\"ram\\u0001"
              "\xef\xbf\xbd\",\"id\":0,\"fd\":101,\"type\":\"memfd\","
              "\"st_dev\":1,\"st_ino\":42,\"st_rdev\":0,"
              "\"st_mode_type\":\"0x8000\"}],\"sections\":[],"
              "\"timestamps\":{},\"vfio\":{\"containers\":[],\"groups\":[],"
              "\"devices\":[],\"dma_mappings\":[],\"irqs\":[],"
              "\"ram_blocks\":[]},\"unknown_fields\":0}"));
    free(text);
}

/* The golden blob of format 1 (tests/data), as `cpr-exec inspect` gets
 * it. */
static void test_golden_blob(void)
{
    g_autofree char *path = g_test_build_filename(G_TEST_DIST, "..", "data",
                                                  "state-v1.golden", NULL);
    g_autofree char *data = NULL;
    _cleanup_free_ char *text = NULL;
    json_auto_t *j = NULL;
    json_t *argv;
    json_error_t error;
    cprkit_ctx *ctx;
    gsize size;

    g_assert_true(g_file_get_contents(path, &data, &size, NULL));
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(blob_to_json(ctx, (const uint8_t *)data, size, &text), ==,
                    0);
    cprkit_free(ctx);
    g_assert_true(g_str_has_prefix(text, "{\"frame\":{\"format_major\":1,"));
    j = json_loads(text, 0, &error);
    g_assert_nonnull(j);
    g_assert_cmpint(json_integer_value(json_object_get(
                        json_object_get(j, "state"), "generation")),
                    ==, 3);
    argv = json_object_get(json_object_get(j, "rollback"), "argv");
    g_assert_cmpuint(json_array_size(argv), ==, 5);
    g_assert_cmpstr(json_string_value(json_array_get(argv, 3)), ==, "");
    g_assert_cmpstr(json_string_value(json_array_get(argv, 4)), ==,
                    "arg with spaces");

    /* Not a blob: an error, no JSON. */
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(blob_to_json(ctx, (const uint8_t *)"junk", 4, &text), <, 0);
    cprkit_free(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/state-json/utf8-string", test_utf8_string);
    g_test_add_func("/state-json/state-order", test_state_order);
    g_test_add_func("/state-json/eventfd-id", test_eventfd_id);
    g_test_add_func("/state-json/golden-blob", test_golden_blob);
    return g_test_run();
}
