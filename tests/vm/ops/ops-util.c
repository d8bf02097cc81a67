/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "ops-util.h"
#include "tap.h"

int ops_run(const char *dir, const char *const *argv, char **ret_out)
{
    g_auto(GStrv) env = g_get_environ();
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    g_autofree char *cpr_exec = g_strdup_printf("%s/cpr-exec", dir);
    int status;

    path = g_strdup_printf("%s:%s", dir,
                           g_environ_getenv(env, "PATH") ?: "/bin:/usr/bin");
    env = g_environ_setenv(env, "PATH", path, true);
    env = g_environ_setenv(env, "CPR_EXEC", cpr_exec, true);
    if (!g_spawn_sync(NULL, (char **)argv, env, G_SPAWN_SEARCH_PATH, NULL,
                      NULL, ret_out, NULL, &status, &error)) {
        tap_diag("spawn %s: %s", argv[0], error->message);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool ops_wait_for_socket(const char *path, pid_t pid, int seconds)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path))
        return false;
    memcpy(sa.sun_path, path, strlen(path));
    for (int i = 0; i < seconds * 50; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

        close(fd);
        if (ok)
            return true;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        usleep(20000);
    }
    return false;
}

JsonObject *ops_parse_json(JsonParser *p, const char *text, const char *path)
{
    bool ok = path ? json_parser_load_from_file(p, path, NULL)
                   : text && json_parser_load_from_data(p, text, -1, NULL);

    if (!ok || !json_parser_get_root(p) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
        return NULL;
    return json_node_get_object(json_parser_get_root(p));
}

pid_t ops_status_pid(const char *dir, const char *sock)
{
    g_autofree char *cpr_exec = g_strdup_printf("%s/cpr-exec", dir);
    const char *const argv[] = {cpr_exec, "status", "--json", "--socket",
                                sock, NULL};
    g_autoptr(JsonParser) p = json_parser_new();
    g_autofree char *out = NULL;
    JsonObject *o;

    if (ops_run(dir, argv, &out) != 0)
        return -1;
    o = ops_parse_json(p, out, NULL);
    return o ? (pid_t)json_object_get_int_member_with_default(o, "pid", -1)
             : -1;
}

int ops_link_self(const char *dir)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    const char *const links[] = {"cpr-exec", "cprkit-workload"};

    if (!self || (mkdir(dir, 0700) < 0 && errno != EEXIST))
        return -errno;
    for (size_t i = 0; i < G_N_ELEMENTS(links); i++) {
        g_autofree char *p = g_build_filename(dir, links[i], NULL);

        unlink(p);
        if (symlink(self, p) < 0)
            return -errno;
    }
    return 0;
}

const char *ops_json_str(JsonObject *o, const char *member)
{
    return o && json_object_has_member(o, member) &&
                   JSON_NODE_HOLDS_VALUE(json_object_get_member(o, member))
               ? json_object_get_string_member_with_default(o, member, "")
               : "";
}

gint64 ops_json_int(JsonObject *o, const char *member)
{
    return o ? json_object_get_int_member_with_default(o, member, -1) : -1;
}

const char *ops_json_error(JsonObject *o)
{
    JsonNode *e = o ? json_object_get_member(o, "error") : NULL;

    return e && JSON_NODE_HOLDS_OBJECT(e)
               ? ops_json_str(json_node_get_object(e), "desc")
               : "";
}

JsonObject *ops_json_obj(JsonObject *o, const char *member)
{
    return o && json_object_has_member(o, member) &&
                   JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, member))
               ? json_object_get_object_member(o, member)
               : NULL;
}
