/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr-exec inspect FILE | --socket S [--dump-blob OUT]
 *
 * A state blob as JSON, like CRIU's crit: from a file (the frame, the
 * rollback command line, every payload field), or the state a running
 * process would hand over now. --dump-blob writes that state as a blob file
 * that `inspect FILE` (and tests) can read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "control-internal.h"
#include "cpr-exec.h"

/* At most CONTROL_BLOB_FILE_MAX bytes of path: a larger file (or an
 * endless one such as /dev/zero) is not a blob, and is refused before it
 * is read into memory. */
static int read_blob_file(const char *path, char **ret, size_t *ret_size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_autofree char *data = NULL;
    size_t size = 0, cap = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n;

        if (size == cap) {
            if (cap > CONTROL_BLOB_FILE_MAX)
                return -EFBIG;
            cap = cap ? cap * 2 : 65536;
            data = g_realloc(data, cap + 1);
        }
        n = read(fd, data + size, cap - size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        size += (size_t)n;
        if (size > CONTROL_BLOB_FILE_MAX)
            return -EFBIG;
    }
    *ret = g_steal_pointer(&data);
    *ret_size = size;
    return 0;
}

static int inspect_file(const char *path, bool pretty)
{
    g_autofree char *data = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) json = NULL;
    _cleanup_free_ char *text = NULL;
    const char *payload_error, *rollback_error;
    cprkit_ctx *ctx;
    JsonObject *o;
    size_t size = 0;
    int r;

    r = read_blob_file(path, &data, &size);
    if (r == -EFBIG) {
        log_msg(LOG_ERR,
                "inspect: %s is larger than any state blob (%u MiB): not a "
                "blob", path, CONTROL_BLOB_FILE_MAX >> 20);
        return EXIT_FAILED;
    }
    if (r < 0) {
        log_msg(LOG_ERR, "inspect: %s: %s", path, strerror(-r));
        return EXIT_FAILED;
    }
    if (cprkit_new(&ctx) < 0)
        return EXIT_FAILED;
    r = blob_to_json(ctx, (const uint8_t *)data, size, &text);
    if (r < 0) {
        log_msg(LOG_ERR, "inspect: %s is not a cprkit state blob: %s", path,
                cprkit_last_error(ctx));
        cprkit_free(ctx);
        return EXIT_FAILED;
    }
    cprkit_free(ctx);
    /* The library writes compact JSON; read back, it is printed like every
     * other answer of cpr-exec. */
    json = json_from_string(text, &error);
    if (!json || !JSON_NODE_HOLDS_OBJECT(json)) {
        log_msg(LOG_ERR, "inspect: %s",
                error ? error->message : "the blob is not a JSON object");
        return EXIT_FAILED;
    }
    /* What can be read is printed either way; a blob that cannot be read
     * whole is a failure, not a result (exit 1). */
    print_json(json, pretty);
    o = json_node_get_object(json);
    rollback_error = json_get_string(json_get_object(o, "rollback"), "error");
    payload_error = json_get_string(o, "payload_error");
    if (json_get_bool(o, "corrupt", false)) {
        log_msg(LOG_ERR, "inspect: %s is a corrupt state blob: %s", path,
                payload_error ? payload_error : rollback_error);
        return EXIT_FAILED;
    }
    if (payload_error || rollback_error) {
        log_msg(LOG_ERR, "inspect: %s: cannot decode the payload: %s", path,
                payload_error ? payload_error : rollback_error);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

int verb_inspect(int argc, char **argv)
{
    g_autofree char *arg_socket = NULL;
    g_autofree char *arg_dump = NULL;
    gboolean arg_json = false;
    int arg_timeout = 10;
    GOptionEntry entries[] = {
        {"socket", 'S', 0, G_OPTION_ARG_FILENAME, &arg_socket,
         "Inspect the running process behind this control socket", "PATH"},
        {"dump-blob", 'o', 0, G_OPTION_ARG_FILENAME, &arg_dump,
         "With --socket: also write the process's state blob to FILE", "FILE"},
        {"timeout", 'T', 0, G_OPTION_ARG_INT, &arg_timeout,
         "Seconds to wait (default 10)", "SECONDS"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &arg_json,
         "Compact JSON on one line (default: indented)", NULL},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &arg_verbose, "Debug output",
         NULL},
        {NULL},
    };
    g_autoptr(JsonNode) reply = NULL;
    const char *error = NULL;
    JsonObject *req, *o;
    int r;

    if (!parse_verb_options("inspect", "[FILE]",
                            "Decodes a state blob FILE, or the state of the "
                            "process behind --socket,\ninto JSON.",
                            entries, &argc, &argv))
        return EXIT_USAGE;
    if ((argc == 2) == (arg_socket != NULL) || argc > 2 ||
        (arg_dump && !arg_socket)) {
        log_msg(LOG_ERR, "inspect: give either FILE or --socket PATH "
                         "(--dump-blob needs --socket)");
        return EXIT_USAGE;
    }
    if (argc == 2)
        return inspect_file(argv[1], !arg_json);

    req = json_object_new();
    json_object_set_string_member(req, "cmd", "inspect");
    if (arg_dump)
        json_object_set_boolean_member(req, "blob", true);
    r = conn_call(arg_socket, req, arg_timeout, &reply, &error);
    json_object_unref(req);
    if (r < 0)
        return call_failed(arg_json, "inspect", arg_socket, r, error);
    o = json_node_get_object(reply);
    if (!json_get_bool(o, "ok", false)) {
        log_msg(LOG_ERR, "inspect: %s",
                reply_error_desc(o) ? reply_error_desc(o)
                                    : "the process said no");
        return EXIT_FAILED;
    }
    if (arg_dump) {
        const char *b64 = json_get_string(o, "blob_base64");
        g_autofree guchar *blob = NULL;
        g_autoptr(GError) gerror = NULL;
        gsize size = 0;

        if (!b64) {
            log_msg(LOG_ERR, "inspect: the process sent no blob");
            return EXIT_FAILED;
        }
        blob = g_base64_decode(b64, &size);
        if (!g_file_set_contents_full(arg_dump, (const char *)blob,
                                      (gssize)size,
                                      G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                      &gerror)) {
            log_msg(LOG_ERR, "inspect: %s", gerror->message);
            return EXIT_FAILED;
        }
        json_object_remove_member(o, "blob_base64");
        log_msg(LOG_INFO, "wrote %zu byte state blob to %s", (size_t)size,
                arg_dump);
    }
    if (!json_get_object(o, "state"))
        return report_failure(arg_json, EXIT_COMM, "error",
                              "inspect: the reply has no \"state\" object: "
                              "not a cprkit process?");
    /* The decoded blob, as `inspect FILE` prints one: the reply without
     * the protocol's own members. */
    json_object_remove_member(o, "ok");
    json_object_remove_member(o, "result");
    json_object_remove_member(o, "id");
    print_json(reply, !arg_json);
    return EXIT_OK;
}
