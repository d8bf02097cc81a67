/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opaque application sections: named byte strings the application hands to
 * its next version (a VMM's device model state, queue indexes, ...). */
#include <string.h>

#include "cprkit-internal.h"

void app_section_free(struct app_section *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->data);
    free(s);
}

/* By name through the keyed index: a blob of many sections loads in
 * linear time whatever their names. */
struct app_section *section_lookup(cprkit_ctx *ctx, const char *name)
{
    return g_hash_table_lookup(ctx->section_index, name);
}

void sections_clear(cprkit_ctx *ctx)
{
    g_hash_table_remove_all(ctx->section_index);
    g_ptr_array_set_size(ctx->sections, 0);
}

CPRKIT_EXPORT int cprkit_section_put(cprkit_ctx *ctx, const char *name,
                                     const void *data, size_t size)
{
    struct app_section *s;
    uint8_t *copy;

    if (!name_is_valid(name))
        return ctx_fail(ctx, -EINVAL, "invalid section name");
    if (size > CPRKIT_BLOB_MAX_PAYLOAD)
        return ctx_fail(ctx, -EFBIG,
                        "section '%s' is %zu bytes, more than a state blob "
                        "can hold (%u)",
                        name, size, CPRKIT_BLOB_MAX_PAYLOAD);
    if (size > 0 && !data)
        return ctx_fail(ctx, -EINVAL, "section '%s': data is NULL", name);
    /* malloc(0) may return NULL; keep one byte so NULL means failure. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return ctx_fail(ctx, -ENOMEM, "section '%s': out of memory", name);
    if (size)
        memcpy(copy, data, size);

    s = section_lookup(ctx, name);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s || !(s->name = strdup(name))) {
            free(s);
            free(copy);
            return ctx_fail(ctx, -ENOMEM, "section '%s': out of memory", name);
        }
        g_ptr_array_add(ctx->sections, s);
        g_hash_table_insert(ctx->section_index, s->name, s);
    }
    free(s->data);
    s->data = copy;
    s->size = size;
    ctx_state_changed(ctx);
    return 0;
}

CPRKIT_EXPORT int cprkit_section_get(cprkit_ctx *ctx, const char *name,
                                     const void **ret_data, size_t *ret_size)
{
    struct app_section *s = name_is_valid(name) ? section_lookup(ctx, name)
                                                : NULL;

    if (!s)
        return ctx_fail(ctx, -ENOENT, "no application section '%s'",
                        name ? name : "(null)");
    *ret_data = s->data;
    *ret_size = s->size;
    return 0;
}

/* Sections are carried from one generation to the next until removed: the
 * loaded ones are the context's until the application says otherwise. */
CPRKIT_EXPORT int cprkit_section_remove(cprkit_ctx *ctx, const char *name)
{
    struct app_section *s =
        name_is_valid(name) ? section_lookup(ctx, name) : NULL;

    if (!s)
        return ctx_fail(ctx, -ENOENT, "no application section '%s'",
                        name ? name : "(null)");
    g_hash_table_remove(ctx->section_index, s->name);
    /* Frees s: the array owns the sections. */
    g_ptr_array_remove(ctx->sections, s);
    ctx_state_changed(ctx);
    return 0;
}
