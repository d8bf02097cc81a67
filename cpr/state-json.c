/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state blob as JSON, for `cpr-exec inspect` and the control
 * endpoint's "inspect" request. libcprkit decodes the blob and passes its
 * fields by name (cprkit_blob_visit()); this file only writes them as
 * JSON, so that libcprkit needs no JSON library and this library never
 * reads libcprkit's structures.
 */
#include <stdio.h>
#include <string.h>

#include "state-json.h"

json_t *json_utf8_string(const char *s)
{
    g_autofree char *valid = NULL;

    if (!s)
        return json_null();
    if (g_utf8_validate(s, -1, NULL))
        return json_string(s);
    valid = g_utf8_make_valid(s, -1);
    return json_string(valid);
}

/* The containers being filled, innermost last; each entry holds a
 * reference. Members are added in the order they are visited, which is the
 * order they are written in (jansson keeps insertion order). */
struct json_builder {
    GPtrArray *open; /* json_t * */
};

/* Adds value (stolen) to the innermost container: appended to an array,
 * set as member name of an object. jansson takes only UTF-8 keys: a member
 * whose name is not (a timestamp's phase) is left out, like one that is
 * missing. */
static void builder_add(struct json_builder *b, const char *name, json_t *value)
{
    json_t *parent = g_ptr_array_index(b->open, b->open->len - 1);

    if (json_is_array(parent))
        json_array_append_new(parent, value);
    else if (name && g_utf8_validate(name, -1, NULL))
        json_object_set_new(parent, name, value);
    else
        json_decref(value);
}

static void builder_begin(struct json_builder *b, const char *name,
                          json_t *container)
{
    builder_add(b, name, json_incref(container));
    g_ptr_array_add(b->open, container);
}

static void visit_begin_object(void *userdata, const char *name)
{
    builder_begin(userdata, name, json_object());
}

static void visit_begin_array(void *userdata, const char *name)
{
    builder_begin(userdata, name, json_array());
}

static void visit_end(void *userdata)
{
    struct json_builder *b = userdata;

    /* The root stays open: it is the result. */
    if (b->open->len > 1)
        g_ptr_array_remove_index(b->open, b->open->len - 1);
}

static void visit_integer(void *userdata, const char *name, int64_t value)
{
    builder_add(userdata, name, json_integer((json_int_t)value));
}

static void visit_string(void *userdata, const char *name, const char *value)
{
    builder_add(userdata, name, json_utf8_string(value));
}

static void visit_boolean(void *userdata, const char *name, bool value)
{
    builder_add(userdata, name, json_boolean(value));
}

static const struct cprkit_blob_visitor json_visitor = {
    .size = sizeof(struct cprkit_blob_visitor),
    .begin_object = visit_begin_object,
    .begin_array = visit_begin_array,
    .end = visit_end,
    .integer = visit_integer,
    .string = visit_string,
    .boolean = visit_boolean,
};

/* Whether a blob whose frame is sound carries damage: the payload fails
 * its checksum or does not decode in the format this build reads, or the
 * rescue block is malformed. A payload of a format this build does not
 * read has a "payload_error" too, but is not damaged. */
static bool blob_tree_corrupt(const json_t *tree)
{
    const json_t *frame = json_object_get(tree, "frame");
    const json_t *rollback = json_object_get(tree, "rollback");

    if (json_is_object(rollback) && json_object_get(rollback, "error"))
        return true;
    return json_object_get(tree, "payload_error") &&
           json_integer_value(json_object_get(frame, "format_major")) ==
               CPRKIT_FORMAT_MAJOR;
}

int blob_to_json_tree(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                      json_t **ret_json)
{
    struct json_builder b = {
        .open = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref),
    };
    int r;

    g_ptr_array_add(b.open, json_object());
    r = cprkit_blob_visit(ctx, buf, size, &json_visitor, &b);
    if (r >= 0) {
        json_t *tree = g_ptr_array_index(b.open, 0);

        json_object_set_new(tree, "corrupt",
                            json_boolean(blob_tree_corrupt(tree)));
        *ret_json = json_incref(tree);
    }
    g_ptr_array_unref(b.open);
    return r;
}

int blob_to_json(cprkit_ctx *ctx, const uint8_t *buf, size_t size,
                 char **ret_text)
{
    json_auto_t *o = NULL;
    char *text;
    int r;

    r = blob_to_json_tree(ctx, buf, size, &o);
    if (r < 0)
        return r;
    text = json_dumps(o, JSON_COMPACT);
    if (!text)
        return control_fail(ctx, -ENOMEM, "cannot write the blob as JSON");
    *ret_text = text;
    return 0;
}
